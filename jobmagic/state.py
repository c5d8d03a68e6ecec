"""The states a job goes through, and how an exit status reads to a person."""

from __future__ import annotations

import enum
import signal


class JobState(enum.Enum):
    """Where a job is in its life.

    QUEUED until it is spawned, RUNNING while its process lives, then one of the finished
    states: SUCCEEDED (exit code 0), FAILED (non-zero exit, killed by a signal nobody asked
    for, or could not start) or STOPPED (ended by ``stop()``, a timeout or the UI).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_finished(self) -> bool:
        """True for SUCCEEDED, FAILED and STOPPED."""
        return self in _FINISHED


#: A shell reports "killed by signal N" as this plus N.
_SHELL_SIGNAL_BASE = 128
_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})


def signal_name(number: int) -> str:
    """``9 -> "SIGKILL"``; an unknown number reads as ``"signal 99"``."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_code_from_shell_status(status: int) -> int:
    """Turn a shell's ``$?`` into a ``Popen.returncode``-style exit code.

    A shell reports a child killed by signal N as 128+N; that becomes -N. A command that
    itself exits with such a value reads as killed, the same ambiguity ``sh -c`` has.
    """
    if _SHELL_SIGNAL_BASE < status < _SHELL_SIGNAL_BASE + signal.NSIG:
        return -(status - _SHELL_SIGNAL_BASE)
    return status


def describe_exit(exit_code: int) -> str:
    """A short phrase for an exit code: ``"exit code 3"`` or ``"killed by SIGKILL"``."""
    if exit_code < 0:
        return f"killed by {signal_name(-exit_code)}"
    return f"exit code {exit_code}"
