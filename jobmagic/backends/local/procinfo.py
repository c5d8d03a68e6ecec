"""Facts about a job's processes read from ``/proc``, and signalling its group safely.

The local backend names a job by its wrapper's (pid, start time) and process group. A
process group id stays allocated while any member of the group lives, and our own
unreaped child keeps its pid; every signal sent to a group that is not our child's is
checked against the recorded start time first, so a reused pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil

from jobmagic.core.limits import Usage
from jobmagic.core.process_identity import process_start_time, same_process, stat_fields


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


def kill_leftovers(pid: int | None, start_time: int | None, pgid: int | None) -> None:
    """SIGKILL what is left of a job's process group whose leader is not our child."""
    signal_leftovers(pid, start_time, pgid, signal.SIGKILL)


def signal_leftovers(pid: int | None, start_time: int | None, pgid: int | None, sig: int) -> None:
    """Send ``sig`` to what is left of a job's process group whose leader is not our child.

    A live group with this id is the job's, unless every member ended and a new process
    took the id as its own pid since: that process would own the id now, and it is told
    apart by its start time.
    """
    if pgid is None or not group_alive(pgid) or not _group_is_the_jobs(pid, start_time, pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_remains(pid: int | None, start_time: int | None, pgid: int | None) -> bool:
    """True while live (not zombie) processes of the job's group outlive its leader."""
    if pgid is None or not _group_is_the_jobs(pid, start_time, pgid):
        return False
    return bool(ProcessGroups().members(pgid, object()))


def _group_is_the_jobs(pid: int | None, start_time: int | None, pgid: int) -> bool:
    if pgid != pid:
        return True
    leader_start = process_start_time(pgid)
    return leader_start is None or leader_start == start_time


class ProcessGroups:
    """Process-group membership read from ``/proc`` once and shared by many lookups.

    A scan costs a read per process on the machine; a thousand jobs ending together must
    not cost a thousand scans. Lookups with the same ``snapshot`` key share one scan.
    """

    def __init__(self) -> None:
        # Guards _snapshot and _groups (executions of several reactors may share this).
        self._lock = threading.Lock()
        self._snapshot: object = None
        self._groups: dict[int, list[int]] = {}

    def members(self, pgid: int, snapshot: object, exclude: int | None = None) -> list[int]:
        """The live (not zombie) processes of group ``pgid`` as of scan ``snapshot``."""
        with self._lock:
            if snapshot != self._snapshot or self._snapshot is None:
                self._groups = _scan_groups()
                self._snapshot = snapshot
            members = self._groups.get(pgid, ())
        return [pid for pid in members if pid != exclude]


#: What the wrapper puts in the environment of every process of a job (see wrapper.py).
JOB_VARIABLE = b"JOBMAGIC_JOB="


def marked_processes(job: str, exclude_group: int) -> list[int]:
    """Live processes outside group ``exclude_group`` with ``JOBMAGIC_JOB=job`` set.

    For a job without a cgroup: the processes it started that left its process group
    (``setsid``, a double fork), as far as they kept the variable. Reads every process's
    environment (the ones this user may read): a scan for stops, not for every end.
    """
    wanted = JOB_VARIABLE + os.fsencode(job)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if wanted not in environ.split(b"\0"):
            continue
        fields = stat_fields(pid)
        if fields is not None and fields[0] != b"Z" and int(fields[2]) != exclude_group:
            found.append(pid)
    return found


def group_usage(groups: ProcessGroups, pgid: int | None) -> Usage | None:
    """Memory (resident) and CPU time of a job without a cgroup, from ``/proc``.

    Sums the live members of its process group, plus the CPU time of the children its
    leader has reaped; a process that left the group is not seen. Readings within the
    same half second share one scan of ``/proc``. None when the group is gone.
    """
    if pgid is None:
        return None
    members = groups.members(pgid, ("usage", int(time.monotonic() * 2)))
    if not members:
        return None
    memory, cpu = 0, 0.0
    for pid in members:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                memory += process.memory_info().rss
                times = process.cpu_times()
        except psutil.Error:
            continue
        cpu += times.user + times.system
        if pid == pgid:
            cpu += times.children_user + times.children_system
    return Usage(memory=memory, cpu_seconds=cpu)


def _scan_groups() -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        # fields[0] is the state, fields[2] the process group.
        if fields is not None and fields[0] != b"Z":
            groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups
