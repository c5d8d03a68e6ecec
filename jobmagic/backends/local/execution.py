"""One running job of the local backend: its process group (and cgroup), watched on a pidfd.

An execution waits for its leader's (the wrapper's) exit on a pidfd, on whatever reactor
holds it. Stopping the whole job: ``terminate`` leaves the stop marker and sends SIGCONT
(a paused job must run to hear it), then SIGTERM to the process group; ``kill`` sends
SIGKILL. ``pause`` and ``resume`` send SIGSTOP and SIGCONT to the group. When the leader
exits during a stop, the rest of the group keeps its grace period (a pidfd on each
member); when the command ends by itself, whatever it left in its group is killed: a job
is done when it is done. Our own child is not reaped before that, so its pid (the group
id) cannot be reused by then; a job that is not our child is signalled only after its
start time was checked.

Where the machine allows, each job also has a cgroup of its own (``cgroups.py``, placed by
``cgroup_layout.py``) that holds its limits: then "the job" is every process in the
cgroup, and each signal above reaches also those that left the process group (``setsid``,
a double fork). Without a cgroup, a stop finds such processes by the ``JOBMAGIC_JOB``
variable the wrapper puts in the job's environment (those that kept it), signals them
with the group and names them in the job's ``error``; the end of a job that was not
stopped does not look for them (a scan of every process's environment per end would
cost too much), and the job ends when its group does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobmagic.core.limits import Usage, format_size
from jobmagic.core.outcome import Outcome
from jobmagic.core.process_identity import process_start_time

from ..base import Callback, Cancellable, Reactor
from .cgroups import JobCgroup
from .procinfo import (
    ProcessGroups,
    group_usage,
    kill_leftovers,
    marked_processes,
    signal_job,
    signal_leftovers,
)
from .wrapper import diagnose, leave_stop_marker, read_status_file


def limit_failure(cgroup: JobCgroup, exit_code: int | None) -> str | None:
    """Say "out of memory (limit 512 MiB)" when a limit ended a failed job, else None."""
    if exit_code == 0:
        return None
    if cgroup.oom_kills():
        limit = cgroup.memory_limit()
        return "out of memory" + (f" (limit {format_size(limit)})" if limit else "")
    if cgroup.fork_refusals():
        limit = cgroup.pids_limit()
        return "could not start a process: the job reached its process limit" + (
            f" ({limit})" if limit else ""
        )
    return None


#: Why a job whose wrapper was killed has no exit status.
WRAPPER_KILLED = "its jobmagic wrapper was killed, so its exit status is unknown"


class LocalExecution:
    """One job's process group; see the module docstring. Thread-safe.

    ``leaderless``: the wrapper was killed while its command runs on (see
    ``process._wrapper_killed``); the job ends when the last member of its group does.
    """

    def __init__(
        self,
        *,
        pid: int,
        start: int | None,
        status_path: str,
        log_path: Path | None,
        groups: ProcessGroups,
        popen: subprocess.Popen[bytes] | None = None,
        pidfd: int | None = None,
        leaderless: bool = False,
        cgroup: JobCgroup | None = None,
        containment: str | None = None,
    ) -> None:
        self._pid = pid
        self._cgroup = cgroup
        self._containment = containment or (cgroup.name if cgroup is not None else "none")
        self._start = start
        self._status_path = status_path
        self._log_path = log_path
        self._groups = groups
        # Our own child, not reaped until outcome(): while it is unreaped its pid, the
        # group id, stays ours and the group may be signalled without checks.
        self._popen = popen
        # Guards every field below: terminate() and kill() come from any thread, the
        # exit handling runs on the reactor's.
        self._lock = threading.Lock()
        self._leaderless = leaderless
        self._pidfd: int | None = pidfd
        if pidfd is None and not leaderless:
            self._pidfd = os.pidfd_open(pid)
        self._watching = False  # on_exit() was called
        self._terminated = False
        self._escaped: set[int] = set()  # no cgroup: processes a stop found outside the group
        self._ended = False  # the whole job ended (on_exit's callback ran or runs)
        self._reactor: Reactor | None = None
        self._callback: Callback | None = None
        self._leader_watch: Cancellable | None = None
        self._draining: dict[int, Cancellable] = {}  # member pidfd -> its watch

    @property
    def ref(self) -> dict[str, Any]:
        """The wrapper, its group, its status file, its cgroup.

        ``{"pid", "start", "pgid", "status"[, "cgroup"]}``.
        """
        ref: dict[str, Any] = {
            "pid": self._pid,
            "start": self._start,
            "pgid": self._pid,
            "status": self._status_path,
        }
        if self._cgroup is not None:
            ref["cgroup"] = self._cgroup.ref
        return ref

    @property
    def containment(self) -> str:
        """What holds the job: ``cgroup v1``, ``cgroup v2`` or ``none`` (and best-effort notes)."""
        return self._containment

    @property
    def pid(self) -> int:
        """The wrapper's pid, which is also the job's process group id."""
        return self._pid

    def terminate(self) -> None:
        """Leave the stop marker, then SIGTERM the whole process group."""
        with self._lock:
            self._terminated = True
            if self._ended:
                return
        # The marker first: a wrapper still starting up checks it before the command.
        leave_stop_marker(self._status_path)
        self._signal(signal.SIGCONT, signal.SIGTERM)  # a paused job must run to shut down

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP the whole process group (the wrapper, the command, its children)."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGCONT)

    def _signal(self, *signals: int) -> None:
        """Send ``signals``, in order, to the whole job: its group and those that left it."""
        for sig in signals:
            if self._popen is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._pid, sig)
            elif not signal_job(self._pid, self._start, self._pid, sig):
                # The leader is gone: what is left of its group, if the group is still its.
                signal_leftovers(self._pid, self._start, self._pid, sig)
        if self._cgroup is None:
            self._signal_escaped(*signals)
        elif signal.SIGKILL in signals:
            self._cgroup.kill()
        else:  # and those outside the group, in one reading of the cgroup's members
            self._cgroup.signal(*signals, outside_group=self._pid)

    def _signal_escaped(self, *signals: int) -> None:
        """Without a cgroup: find the job's processes outside its group, signal them.

        They are found by ``JOBMAGIC_JOB`` at each call, never from an earlier scan: a
        pid seen before may belong to another process by now.
        """
        if not self._status_path or (self._popen is None and not self._group_is_ours()):
            return
        job = os.path.basename(self._status_path).removesuffix(".status")
        escaped = marked_processes(job, self._pid)
        with self._lock:
            self._escaped.update(escaped)
        for sig in signals:
            for pid in escaped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def on_detail(self, callback: Callable[[str | None], None]) -> None:
        """Nothing to tell: a local job is running or it has ended."""

    def on_exit(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` from ``reactor`` once the whole job has ended."""
        with self._lock:
            if self._watching or (self._pidfd is None and not self._leaderless):
                raise RuntimeError("on_exit() was already called for this execution")
            self._watching = True
            self._reactor = reactor
            self._callback = callback
            if self._pidfd is not None:
                self._leader_watch = reactor.watch_readable(self._pidfd, self._leader_exited)
            else:
                # No leader to wait for: its group's members, watched from the reactor.
                self._leader_watch = reactor.call_later(0, self._members_left)

    def _members_left(self) -> None:
        if not self._watch_members():
            self._complete()

    def _leader_exited(self) -> None:
        # The command's shell may die of SIGTERM while the program it ran is still shutting
        # down gracefully: during a stop the rest of the group keeps its grace period (the
        # stop's SIGKILL timer is still armed).
        with self._lock:
            stopping = self._terminated
        if stopping and self._watch_members():
            return
        self._complete()

    def _watch_members(self) -> bool:
        """Watch the group's live processes (reactor thread); True while any is left."""
        reactor = self._reactor
        assert reactor is not None
        if self._cgroup is not None:
            members = self._cgroup.members()
        elif self._popen is None and not self._group_is_ours():
            return False
        else:
            members = self._groups.members(self._pid, reactor.iteration, exclude=self._pid)
        for member in members:
            try:
                pidfd = os.pidfd_open(member)
            except ProcessLookupError:
                continue
            watch = reactor.watch_readable(pidfd, functools.partial(self._member_exited, pidfd))
            with self._lock:
                self._draining[pidfd] = watch
        with self._lock:
            return bool(self._draining)

    def _group_is_ours(self) -> bool:
        """For a job that is not our child: whether its group id was not taken over."""
        leader_start = process_start_time(self._pid)
        return leader_start is None or leader_start == self._start

    def _member_exited(self, pidfd: int) -> None:
        with self._lock:
            if self._draining.pop(pidfd, None) is None:
                return  # close() released it meanwhile
            more = bool(self._draining)
        os.close(pidfd)
        if not more and not self._watch_members():
            self._complete()

    def _complete(self) -> None:
        """Kill what the command left in its group, then tell the holder it ended.

        With a cgroup, the job has ended once the cgroup is empty: the killed processes
        are waited for (their pidfds), so that no process of an ended job is alive.
        """
        if self._popen is not None:
            # Before the leader is reaped: until then the group id cannot be reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        else:
            kill_leftovers(self._pid, self._start, self._pid)
        if self._cgroup is not None:
            self._cgroup.kill()
            if self._watch_members():
                return  # _member_exited comes back here once they are gone
        elif self._terminated:
            self._signal_escaped(signal.SIGKILL)  # a stop: what left the group goes too
        with self._lock:
            self._ended = True
            callback = self._callback
        if callback is not None:
            callback()

    def outcome(self) -> Outcome:
        """Reap the wrapper, read its status and how the job failed, remove its cgroup.

        A failure is explained where it can be (exits 126 and 127, a limit that was
        reached); what the job used is read before its cgroup goes.
        """
        returncode, usage = self._reap()
        self.close()
        exit_code = read_status_file(self._status_path) if self._status_path else None
        if exit_code is None:
            exit_code = returncode
        reason = None
        if self._cgroup is not None:
            usage = self._cgroup.totals()
            with self._lock:
                stopped = self._terminated  # it ends STOPPED: no failure to explain
            reason = None if stopped else limit_failure(self._cgroup, exit_code)
            self._cgroup.remove()
        if reason is None and self._log_path is not None:
            reason = diagnose(exit_code, self._log_path)
        if exit_code is None and self._leaderless:
            reason = WRAPPER_KILLED
        with self._lock:
            escaped = len(self._escaped)
        note = None
        if escaped:
            note = (
                f"the stop also killed {escaped} process(es) that had left the job's "
                "process group (setsid, a double fork): with no cgroup here, such "
                "processes can escape a job"
            )
        return Outcome(exit_code, reason=reason, usage=usage, note=note)

    def _reap(self) -> tuple[int | None, Usage | None]:
        """Our wrapper's exit status and, from its rusage, the CPU time of all it waited for.

        Not its peak memory: ``ru_maxrss`` of a child spawned by vfork starts from this
        process's own resident size (the kernel's), not from the job's.
        """
        popen = self._popen
        if popen is None:
            return None, None
        if popen.returncode is not None:
            return popen.returncode, None
        try:
            _, status, rusage = os.wait4(popen.pid, 0)
        except ChildProcessError:
            return popen.wait(), None
        popen.returncode = os.waitstatus_to_exitcode(status)
        usage = Usage(cpu_seconds=rusage.ru_utime + rusage.ru_stime)
        return popen.returncode, usage

    def usage(self) -> Usage | None:
        """What the job uses now (no CPU rate); None once it has ended."""
        if self._cgroup is not None:
            return self._cgroup.usage()
        with self._lock:
            if self._ended:
                return None
        return group_usage(self._groups, self._pid)

    def close(self) -> None:
        """Release the pidfds (the job, if it still runs, goes on)."""
        with self._lock:
            pidfd, self._pidfd = self._pidfd, None
            watches = [self._leader_watch, *self._draining.values()]
            draining, self._draining = list(self._draining), {}
            self._leader_watch = None
        for watch in watches:
            if watch is not None:
                watch.cancel()
        for fd in [pidfd, *draining]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


#: Linux's limit on one argument or environment string, terminating NUL included.
