"""Naming one process for good: its pid together with its start time, read from ``/proc``.

A pid can be reused by an unrelated process; a (pid, start time) pair cannot. Job records
name both the kernel that owns a job and the job's own process this way.
"""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (the state first), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat[stat.rindex(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def open_pidfd(pid: int | None, start_time: int | None) -> int | None:
    """A pidfd on the process named by (``pid``, ``start_time``); None if it is gone.

    The pidfd names one process for good; the start time, checked after opening it,
    proves that this process is the recorded one and not a later owner of the pid.

    Raises
    ------
    OSError
        When the pidfd cannot be opened for another reason (out of descriptors).
    """
    if pid is None or start_time is None:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if not same_process(pid, start_time):
        os.close(pidfd)
        return None
    return pidfd


def same_process(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` is alive and is the process that started at ``start_time``.

    A zombie (exited, its status not yet collected) does not count as alive.
    """
    if pid is None or start_time is None:
        return False
    fields = stat_fields(pid)
    return fields is not None and fields[0] != b"Z" and int(fields[19]) == start_time
