"""How a job reads to a person: the one place that words states, exits, runtimes, labels.

Every view uses these: the ``%job`` tables, the panel, the server's JSON (``exit_text``),
the command line. They take anything with a job's attributes (a ``Worker``, a
``JobRecord``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from jobmagic.core.state import JobState, describe_exit, signal_name

#: One colour per state, readable as text on light and dark backgrounds and as a badge
#: behind white text.
STATE_COLORS = {
    JobState.QUEUED: "#6a737d",
    JobState.RUNNING: "#0969da",
    JobState.PAUSED: "#8250df",
    JobState.SUCCEEDED: "#1a7f37",
    JobState.FAILED: "#cf222e",
    JobState.STOPPED: "#9a6700",
}

#: Text cells longer than this are cut with an ellipsis.
COMMAND_WIDTH = 60
_MINUTE = 60
_HOUR = 3600


class DescribedJob(Protocol):
    """What describing a job reads of it."""

    @property
    def id(self) -> int | None:
        """The job's id (None before it has one)."""
        ...

    @property
    def name(self) -> str | None:
        """Its alias, or None."""
        ...

    @property
    def command(self) -> str:
        """The shell command line."""
        ...

    @property
    def state(self) -> JobState:
        """Where it is in its life."""
        ...

    @property
    def exit_code(self) -> int | None:
        """Its exit code, or None."""
        ...

    @property
    def error(self) -> str | None:
        """What went wrong, in one line, or None."""
        ...

    @property
    def orphaned(self) -> bool:
        """True while it runs with its kernel gone."""
        ...


def format_runtime(seconds: float | None) -> str:
    """A duration for people: ``0.4s``, ``59.9s``, ``3m04s``, ``2h05m``; ``-`` for None.

    Parameters
    ----------
    seconds:
        The duration in seconds; None (the job has not started) gives ``"-"``.
    """
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < _MINUTE:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < _HOUR:
        return f"{whole // _MINUTE}m{whole % _MINUTE:02d}s"
    return f"{whole // _HOUR}h{whole % _HOUR // _MINUTE:02d}m"


def exit_text(exit_code: int | None) -> str | None:
    """``"exit code 3"``, ``"killed by SIGKILL"``; None when there is no exit code."""
    return describe_exit(exit_code) if exit_code is not None else None


def exit_column(exit_code: int | None) -> str:
    """The exit column of a table: the code, the signal name of a kill, ``-`` while running."""
    if exit_code is None:
        return "-"
    if exit_code < 0:
        name = signal_name(-exit_code)
        return name if name.startswith("SIG") else str(exit_code)
    return str(exit_code)


def state_text(job: DescribedJob) -> str:
    """The job's state, with ``(orphaned)`` when its kernel is gone."""
    text = job.state.value
    if job.orphaned:
        text += " (orphaned)"
    return text


def job_label(job: DescribedJob) -> str:
    """``job 3`` or ``job 3 "train"``."""
    if job.name:
        return f'job {job.id} "{job.name}"'
    return f"job {job.id}"


def short_command(command: str, width: int = COMMAND_WIDTH) -> str:
    """Shorten ``command`` to its first line and ``width`` characters (``…`` marks a cut)."""
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    if len(lines) > 1:
        first += " …"
    if len(first) > width:
        first = first[: width - 1] + "…"
    return first


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(job: DescribedJob) -> str | None:
    """The job's error, unless it only repeats the exit code ("exit code 1")."""
    if job.error is None:
        return None
    if job.exit_code is not None and job.error == describe_exit(job.exit_code):
        return None
    return job.error


def outcome_details(job: DescribedJob) -> str:
    """What follows the state in ``outcome_text``: `` (exit code 127): <error>`` or ""."""
    text = ""
    ending = exit_text(job.exit_code)
    if ending is not None:
        text += f" ({ending})"
    error = error_text(job)
    if error:
        text += f": {error}"
    return text


def outcome_text(job: DescribedJob) -> str:
    """How a job stands in one phrase: ``running``, ``failed (exit code 127): <error>``."""
    return state_text(job) + outcome_details(job)


def group_table(groups: Iterable[tuple[str, int, int, int, bool]]) -> str:
    """Queue groups (name, parallel, running, queued, paused) as aligned text columns."""
    rows = [("GROUP", "PARALLEL", "RUNNING", "QUEUED", "PAUSED")] + [
        (
            name,
            str(parallel) if parallel else "any",
            str(running),
            str(queued),
            "yes" if paused else "no",
        )
        for name, parallel, running, queued, paused in groups
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def exit_field(exit_code: int | None) -> str:
    """The exit field of a job's details: ``127``, ``killed by SIGKILL``, ``-`` while running.

    (Under the label "exit", so not "exit code 127".)
    """
    if exit_code is None:
        return "-"
    return describe_exit(exit_code) if exit_code < 0 else str(exit_code)
