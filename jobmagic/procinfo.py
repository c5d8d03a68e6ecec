"""Facts about live processes, and signalling a job without hitting a reused pid."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (state first), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat[stat.rindex(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone.

    Together with the pid this names one process for good: a pid can be reused, a
    (pid, start time) pair cannot.
    """
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def same_process(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` is alive and is the process that started at ``start_time``.

    A zombie (exited, its status not yet collected) does not count as alive.
    """
    if pid is None or start_time is None:
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != b"Z" and int(fields[19]) == start_time


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its exit status was not collected yet."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] == b"Z"


def signal_job(pid: int | None, start_time: int | None, pgid: int | None, sig: int) -> bool:
    """Send ``sig`` to a job's process group if its leader is still the recorded process.

    Returns True when the signal was sent. Nothing is sent when the recorded start time
    does not match the live process: the pid was reused by something else.
    """
    if pgid is None or not same_process(pid, start_time):
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessGroups:
    """Process-group membership read from ``/proc`` once and shared by many lookups.

    A scan costs a read per process on the machine; a thousand jobs ending together must
    not cost a thousand scans. Lookups with the same ``snapshot`` key share one scan.
    Not thread-safe: one owner thread uses it.
    """

    def __init__(self) -> None:
        self._snapshot: object = None
        self._groups: dict[int, list[int]] = {}

    def members(self, pgid: int, snapshot: object, exclude: int | None = None) -> list[int]:
        """The live (not zombie) processes of group ``pgid`` as of scan ``snapshot``."""
        if snapshot != self._snapshot or self._snapshot is None:
            self._groups = _scan_groups()
            self._snapshot = snapshot
        return [pid for pid in self._groups.get(pgid, ()) if pid != exclude]


def _scan_groups() -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # fields[0] is the state, fields[2] the process group.
        if fields is not None and fields[0] != b"Z":
            groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


def group_members(pgid: int, exclude: int | None = None) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, read from ``/proc``."""
    return [pid for pid in _scan_groups().get(pgid, ()) if pid != exclude]
