"""``Launched``: what starting one job's execution gave, and how its record says so."""

from __future__ import annotations

import dataclasses
from typing import Any

from jobmagic.backends.base import Execution
from jobmagic.core.state import JobState


@dataclasses.dataclass(frozen=True)
class Launched:
    """A job's launch: its execution, or why there is none.

    Attributes
    ----------
    execution:
        What runs the job; None when it could not start.
    started_at:
        When it started, or failed to (epoch seconds).
    failure:
        Why it could not start (one line), when ``execution`` is None.
    """

    execution: Execution | None
    started_at: float
    failure: str | None = None

    def columns(self) -> dict[str, Any]:
        """The job record's columns that say so: RUNNING with its execution, or FAILED."""
        execution = self.execution
        if execution is None:
            return {"state": JobState.FAILED, "error": self.failure, "ended_at": self.started_at}
        return {
            "state": JobState.RUNNING,
            "pid": execution.pid,
            "started_at": self.started_at,
            "backend_ref": execution.ref,
            "containment": execution.containment,
        }
