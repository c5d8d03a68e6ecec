"""How a job's execution ended, as the backend that ran it tells it."""

from __future__ import annotations

import dataclasses

from .limits import Usage


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The end of an execution.

    Attributes
    ----------
    exit_code:
        ``Popen.returncode`` style (negative N: killed by signal N); None when the backend
        cannot tell.
    ended_at:
        When it ended, in epoch seconds; None when only "by now" is known.
    reason:
        The backend's one-line explanation of a failure a person can act on ("command not
        found: pyhton", "out of memory (limit 512 MiB)"), or None.
    usage:
        What the job used in all (peak memory, CPU time), where the backend knows.
    note:
        A fact about the end worth telling whatever the state, added to the job's
        ``error`` ("killed 2 processes that had left its process group"), or None.
    """

    exit_code: int | None
    ended_at: float | None = None
    reason: str | None = None
    usage: Usage | None = None
    note: str | None = None
