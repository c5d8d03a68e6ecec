"""One job's cgroup: its limits, its members, killing all of them, what it used.

The job's leader is in the cgroup before it runs the command (the job script joins it,
or the spawner spawns it there: ``shell.py``, ``spawn_direct.py``): everything the
command starts is born inside, whatever it does with sessions and process groups, so
"every process of the job" is the cgroup's member list.
The same class works on cgroup v1 (one directory per hierarchy) and v2 (one directory);
``cgroup_layout.py`` decides where the directories go. Its ``ref`` goes into the job's
backend reference, so that another kernel, the server or the command line finds the
cgroup again after the kernel that made it is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Mapping
from typing import Any

from jobmagic.core.limits import Limits, Usage

#: The cgroup versions.
V1, V2 = 1, 2
#: The CFS period jobmagic writes with a CPU quota, in microseconds (the kernel's default).
CPU_PERIOD_US = 100_000
_KEY_VALUE = 2  # words on a line of a flat-keyed file ("oom_kill 3")
#: v1 writes this for "no limit" in memory files (the largest page-aligned value).
_V1_UNLIMITED = 1 << 62


class JobCgroup:
    """The cgroup (v1: one directory per hierarchy) that holds every process of one job.

    ``roles`` maps a controller ("memory", "cpu", "cpuacct", "pids") to the
    directory that has its files; on v2 every role is the one directory.
    """

    def __init__(self, version: int, dirs: tuple[str, ...], roles: Mapping[str, str]) -> None:
        self.version = version
        self.dirs = dirs
        self.roles = dict(roles)
        self._files: tuple[str | None, str | None, str | None] | None = None

    @property
    def ref(self) -> dict[str, Any]:
        """JSON values naming this cgroup, for :meth:`from_ref`."""
        return {"version": self.version, "dirs": list(self.dirs), "roles": self.roles}

    @classmethod
    def from_ref(cls, ref: object) -> JobCgroup | None:
        """The cgroup a stored ``ref`` names; None for none (or a ref that names none)."""
        if not isinstance(ref, dict):
            return None
        dirs = ref.get("dirs")
        roles = ref.get("roles")
        version = ref.get("version")
        if (
            version not in (V1, V2)
            or not isinstance(dirs, list)
            or not dirs
            or not isinstance(roles, dict)
            or not all(_is_job_cgroup(path) for path in [*dirs, *roles.values()])
        ):
            return None
        return cls(version, tuple(dirs), {str(k): str(v) for k, v in roles.items()})

    @property
    def name(self) -> str:
        """``cgroup v1`` or ``cgroup v2``."""
        return f"cgroup v{self.version}"

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to, to join (one per hierarchy)."""
        return [os.path.join(directory, "cgroup.procs") for directory in self.dirs]

    # -- limits ------------------------------------------------------------------------
    def apply(self, limits: Limits) -> None:
        """Write ``limits`` (those this cgroup has controllers for).

        Raises
        ------
        OSError
            When a limit cannot be written (permission, a vanished directory).
        """
        if limits.memory is not None and "memory" in self.roles:
            if self.version == V1:
                self._write("memory", "memory.limit_in_bytes", limits.memory)
                # With swap the job would swap instead of meeting its limit: RAM + swap
                # get the same cap (the file exists only where swap accounting is on).
                with contextlib.suppress(FileNotFoundError):
                    self._write("memory", "memory.memsw.limit_in_bytes", limits.memory)
            else:
                self._write("memory", "memory.max", limits.memory)
                with contextlib.suppress(FileNotFoundError):
                    self._write("memory", "memory.swap.max", 0)
        if limits.cpus is not None and "cpu" in self.roles:
            quota = max(1000, round(limits.cpus * CPU_PERIOD_US))
            if self.version == V1:
                self._write("cpu", "cpu.cfs_period_us", CPU_PERIOD_US)
                self._write("cpu", "cpu.cfs_quota_us", quota)
            else:
                self._write("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}")
        if limits.pids is not None and "pids" in self.roles:
            self._write("pids", "pids.max", limits.pids)

    def _write(self, role: str, name: str, value: object) -> None:
        with open(os.path.join(self.roles[role], name), "w", encoding="ascii") as f:
            f.write(str(value))

    def memory_limit(self) -> int | None:
        """The memory limit in force (bytes), None when there is none or it cannot be read."""
        name = "memory.limit_in_bytes" if self.version == V1 else "memory.max"
        value = self._read_int("memory", name)
        return value if value is not None and value < _V1_UNLIMITED else None

    def pids_limit(self) -> int | None:
        """The process limit in force, None when there is none."""
        return self._read_int("pids", "pids.max")

    # -- members -----------------------------------------------------------------------
    def members(self) -> list[int]:
        """The job's live processes (zombies are not members)."""
        try:
            text = _read(os.path.join(self.dirs[0], "cgroup.procs"))
        except OSError:
            return []
        return [int(word) for word in text.split()]

    def signal(self, *signals: int, outside_group: int | None = None) -> None:
        """Send ``signals``, in order, to every process of the job (one reading of them).

        ``outside_group``: a process group the caller signalled already; its members
        must not get a signal twice (a second SIGTERM can cut a graceful exit short).
        """
        for pid in self.members():
            if outside_group is not None:
                try:
                    if os.getpgid(pid) == outside_group:
                        continue
                except ProcessLookupError:
                    continue
            for sig in signals:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def kill(self) -> bool:
        """SIGKILL every process of the job, including those it forks meanwhile.

        Returns False when the job had no process left (nothing to wait for).
        """
        if self.version == V2:
            try:
                with open(os.path.join(self.dirs[0], "cgroup.kill"), "w", encoding="ascii") as f:
                    f.write("1")
            except OSError:
                pass  # before Linux 5.14: one by one, below
            else:
                return True  # (who was there is not known)
        # A killed process forks no more; a child forked before its parent's SIGKILL
        # shows up in the next reading. So: until a reading shows nobody new.
        killed: set[int] = set()
        while True:
            fresh = [pid for pid in self.members() if pid not in killed]
            if not fresh:
                return bool(killed)
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed.update(fresh)

    # -- what happened -----------------------------------------------------------------
    def usage(self) -> Usage:
        """Memory now and at most, and CPU time so far (no rate: see ``Usage.with_rate``)."""
        now, peak, _ = self._usage_files()
        return Usage(_read_number(now), _read_number(peak), self._cpu_seconds())

    def totals(self) -> Usage:
        """What the job used in all: peak memory and CPU time (for an ended job)."""
        _, peak, _ = self._usage_files()
        return Usage(peak_memory=_read_number(peak), cpu_seconds=self._cpu_seconds())

    def _cpu_seconds(self) -> float | None:
        path = self._usage_files()[2]
        if self.version == V1:
            nanoseconds = _read_number(path)
            return nanoseconds / 1e9 if nanoseconds is not None else None
        micro = self._read_field(path, "usage_usec") if path is not None else None
        return micro / 1e6 if micro is not None else None

    def _usage_files(self) -> tuple[str | None, str | None, str | None]:
        """The files of memory now, peak memory and CPU time, joined once.

        (A panel of hundreds of jobs reads them every second.)
        """
        if self._files is None:
            if self.version == V1:
                memory, cpu = self.roles.get("memory"), self.roles.get("cpuacct")
                now, peak, used = (
                    "memory.usage_in_bytes",
                    "memory.max_usage_in_bytes",
                    "cpuacct.usage",
                )
            else:
                memory = cpu = self.dirs[0]
                now, peak, used = "memory.current", "memory.peak", "cpu.stat"
            self._files = (
                os.path.join(memory, now) if memory else None,
                os.path.join(memory, peak) if memory else None,
                os.path.join(cpu, used) if cpu else None,
            )
        return self._files

    def oom_kills(self) -> int:
        """How many of the job's processes the OOM killer killed for its memory limit."""
        if "memory" not in self.roles:
            return 0
        name = "memory.oom_control" if self.version == V1 else "memory.events"
        return self._read_field(os.path.join(self.roles["memory"], name), "oom_kill") or 0

    def fork_refusals(self) -> int:
        """How many forks the pids limit refused."""
        if "pids" not in self.roles:
            return 0
        return self._read_field(os.path.join(self.roles["pids"], "pids.events"), "max") or 0

    def _read_int(self, role: str, name: str) -> int | None:
        directory = self.roles.get(role)
        if directory is None:
            return None
        try:
            text = _read(os.path.join(directory, name)).strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    @staticmethod
    def _read_field(path: str, key: str) -> int | None:
        try:
            text = _read(path)
        except OSError:
            return None
        for line in text.splitlines():
            words = line.split()
            if len(words) == _KEY_VALUE and words[0] == key and words[1].isdigit():
                return int(words[1])
        return None

    # -- the end -----------------------------------------------------------------------
    def remove(self) -> bool:
        """Delete the (empty) cgroup; False while a process is still in it."""
        gone = True
        for directory in self.dirs:
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                gone = False
        return gone


#: Every job cgroup's directory name starts so (``jobmagic-<log name>``).
NAME_PREFIX = "jobmagic-"


def _is_job_cgroup(path: object) -> bool:
    # A reference read back from the store names only cgroups jobmagic made.
    return (
        isinstance(path, str)
        and path.startswith("/sys/fs/cgroup/")
        and os.path.basename(path).startswith(NAME_PREFIX)
        and ".." not in path.split("/")
    )


def _read_number(path: str | None) -> int | None:
    """The whole number a one-value file holds; None for none ("max") or no file."""
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 64).strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    finally:
        os.close(fd)
