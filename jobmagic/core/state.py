"""The states a job goes through, the moves between them, and how a job's end reads."""

from __future__ import annotations

import enum
import signal


class JobState(enum.Enum):
    """Where a job is in its life.

    QUEUED until it is launched, RUNNING while it runs (PAUSED while ``pause()`` holds
    it stopped), then one of the finished states: SUCCEEDED (exit code 0), FAILED
    (non-zero exit, killed by a signal nobody asked for, or could not start) or STOPPED
    (ended by ``stop()``, a timeout or the UI).
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_finished(self) -> bool:
        """True for SUCCEEDED, FAILED and STOPPED."""
        return self in _FINISHED

    @property
    def is_active(self) -> bool:
        """True for RUNNING and PAUSED: the job has processes (which hold its slot)."""
        return self in _ACTIVE


_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})
_ACTIVE = frozenset({JobState.RUNNING, JobState.PAUSED})
#: The active states as the store's SQL names them.
ACTIVE_SQL = "('running', 'paused')"

#: The moves a job may make; a finished job never moves again.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.STOPPED}),
    JobState.RUNNING: _FINISHED | {JobState.PAUSED},
    JobState.PAUSED: _FINISHED | {JobState.RUNNING},
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.STOPPED: frozenset(),
}


def check_transition(current: JobState, new: JobState) -> JobState:
    """Return ``new`` if a job in ``current`` may move there.

    Raises
    ------
    ValueError
        For a move the state machine does not have (a bug in the caller).
    """
    if new not in TRANSITIONS[current]:
        raise ValueError(f"a {current.value} job cannot become {new.value}")
    return new


def run_seconds(
    started_at: float | None,
    ended_at: float | None,
    paused_at: float | None,
    paused_for: float,
    now: float,
) -> float | None:
    """Seconds a job has run: from start to end (or ``now``), less the time it was paused.

    ``paused_for``: seconds of the pauses that are over; ``paused_at``: when the pause
    under way began (None when it is not paused). None before it started.
    """
    if started_at is None:
        return None
    end = ended_at if ended_at is not None else now
    paused = paused_for + (max(0.0, end - paused_at) if paused_at is not None else 0.0)
    return max(0.0, end - started_at - paused)


def signal_name(number: int) -> str:
    """``9 -> "SIGKILL"``; an unknown number reads as ``"signal 99"``."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(exit_code: int) -> str:
    """A short phrase for an exit code: ``"exit code 3"`` or ``"killed by SIGKILL"``."""
    if exit_code < 0:
        return f"killed by {signal_name(-exit_code)}"
    return f"exit code {exit_code}"


def final_state(
    exit_code: int | None, stop_requested_by: str | None, timeout: float | None
) -> tuple[JobState, str | None]:
    """The state and error message of a job that ended with ``exit_code``.

    Parameters
    ----------
    exit_code:
        ``Popen.returncode`` style; None when nobody knows it.
    stop_requested_by:
        Who asked the job to stop ("kernel", "ui", "timeout", "cli"), None if nobody did.
    timeout:
        The job's timeout in seconds (for the "timed out after N s" message).
    """
    if stop_requested_by == "timeout":
        return JobState.STOPPED, f"timed out after {timeout:g} s" if timeout else "timed out"
    if stop_requested_by is not None:
        return JobState.STOPPED, None
    if exit_code == 0:
        return JobState.SUCCEEDED, None
    if exit_code is None:
        return JobState.FAILED, "exit status unknown"
    return JobState.FAILED, describe_exit(exit_code)
