"""One running job of the local backend: its process group (and cgroup), and its end.

An execution waits for its leader's end on whatever reactor holds it: as its spawner
reports it, or on a pidfd (``leaders.py``). Stopping the whole job: ``terminate`` leaves
the stop marker and sends SIGCONT (a paused job must run to hear it), then SIGTERM to the
process group; ``kill`` sends SIGKILL. ``pause`` and ``resume`` send SIGSTOP and SIGCONT
to the group. When the leader exits during a stop, the rest of the group keeps its grace
period (a pidfd on each member); when the command ends by itself, whatever it left in its
group is killed: a job is done when it is done. Our own child (the wrapper) is not reaped
before that, so its pid (the group id) cannot be reused by then; a job that is not our
child (its spawner's, or another process's) is signalled only after its leader's start
time was checked, and what is left of its group only while the group id is not another's.

Where the machine allows, each job also has a cgroup of its own (``cgroups.py``, placed by
``cgroup_layout.py``) that holds its limits: then "the job" is every process in the
cgroup, and each signal above reaches also those that left the process group (``setsid``,
a double fork). Without a cgroup, a stop finds such processes by the ``JOBMAGIC_JOB``
variable every job's processes inherit (those that kept it), signals them with the group
and names them in the job's ``error``; the end of a job that was not stopped does not look
for them (a scan of every process's environment per end would cost too much), and the job
ends when its group does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobmagic.core.limits import Usage, format_size
from jobmagic.core.outcome import Outcome
from jobmagic.core.process_identity import process_start_time, same_process

from ..base import Callback, Cancellable, Reactor
from .cgroups import JobCgroup
from .leaders import GoneLeader, Leader
from .procinfo import (
    ProcessGroups,
    group_usage,
    kill_leftovers,
    marked_processes,
    signal_leftovers,
)
from .shell import diagnose
from .status_file import leave_stop_marker


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


class LocalExecution:
    """One job's process group; see the module docstring. Thread-safe.

    ``leader`` is how its end is learned; a ``GoneLeader`` (the wrapper was killed while
    its command runs on, see ``process._wrapper_killed``): the job ends when the last
    member of its group does. ``spawner``: the (pid, start time) of the spawner that
    started it, kept in its ``ref``.
    """

    def __init__(
        self,
        *,
        pid: int,
        start: int | None,
        status_path: str,
        log_path: Path | None,
        groups: ProcessGroups,
        leader: Leader,
        spawner: list[int] | None = None,
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
        self._spawner = spawner
        # While it is our own unreaped child (the wrapper), its pid, the group id, stays
        # ours and the group may be signalled without checks.
        self._leader = leader
        self._leaderless = isinstance(leader, GoneLeader)
        # Guards every field below: terminate() and kill() come from any thread, the
        # exit handling runs on the reactor's.
        self._lock = threading.Lock()
        self._watching = False  # on_exit() was called
        self._terminated = False
        self._escaped: set[int] = set()  # no cgroup: processes a stop found outside the group
        self._ended = False  # the whole job ended (on_exit's callback ran or runs)
        self._reactor: Reactor | None = None
        self._callback: Callback | None = None
        self._draining: dict[int, Cancellable] = {}  # member pidfd -> its watch

    @property
    def ref(self) -> dict[str, Any]:
        """The leader, its group, its status file, its cgroup, its spawner.

        ``{"pid", "start", "pgid", "status"[, "cgroup"][, "spawner"]}``; ``spawner`` is
        ``[pid, start time]``, missing for a job its wrapper leads.
        """
        ref: dict[str, Any] = {
            "pid": self._pid,
            "start": self._start,
            "pgid": self._pid,
            "status": self._status_path,
        }
        if self._cgroup is not None:
            ref["cgroup"] = self._cgroup.ref
        if self._spawner is not None:
            ref["spawner"] = self._spawner
        return ref

    @property
    def containment(self) -> str:
        """What holds the job: ``cgroup v1``, ``cgroup v2`` or ``none`` (and best-effort notes)."""
        return self._containment

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the job's process group id."""
        return self._pid

    def terminate(self) -> None:
        """Leave the stop marker, then SIGTERM the whole process group."""
        with self._lock:
            self._terminated = True
            if self._ended:
                return
        # The marker first: a wrapper still starting up checks it before the command. A
        # spawned job runs before anyone learns its pid: it needs none (a thousand file
        # writes fewer in a stop_all).
        if self._spawner is None:
            leave_stop_marker(self._status_path)
        self._signal(signal.SIGCONT, signal.SIGTERM)  # a paused job must run to shut down

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP the whole process group (the leader, the command, its children)."""
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
        # Our own child's group is ours; another's leader is checked once for all signals.
        if self._leader.our_child or same_process(self._pid, self._start):
            for sig in signals:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._pid, sig)
        else:
            for sig in signals:
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
        if not self._status_path or (not self._leader.our_child and not self._group_is_ours()):
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
            if self._watching:
                raise RuntimeError("on_exit() was already called for this execution")
            self._watching = True
            self._reactor = reactor
            self._callback = callback
        self._leader.watch(reactor, self._leader_exited)

    def _leader_exited(self) -> None:
        # The command's shell may die of SIGTERM while the program it ran is still shutting
        # down gracefully: during a stop the rest of the group keeps its grace period (the
        # stop's SIGKILL timer is still armed). With no leader to wait for (its wrapper
        # was killed), the job is its group's members.
        with self._lock:
            members_first = self._terminated or self._leaderless
        if not members_first:
            self._complete()
        elif not self._watch_members():
            self._complete(emptied=True)

    def _watch_members(self) -> bool:
        """Watch the group's live processes (reactor thread); True while any is left."""
        reactor = self._reactor
        assert reactor is not None
        if self._cgroup is not None:
            members = self._cgroup.members()
        elif not self._leader.our_child and not self._group_is_ours():
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
            self._complete(emptied=True)

    def _complete(self, emptied: bool = False) -> None:
        """Kill what the command left in its group, then tell the holder it ended.

        With a cgroup, the job has ended once the cgroup is empty: the killed processes
        are waited for (their pidfds), so that no process of an ended job is alive.
        ``emptied``: the caller just found no member left (a cgroup's is not read again:
        nobody is left in it to fork).
        """
        if self._leader.our_child:
            # Before the leader is reaped: until then the group id cannot be reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        else:
            kill_leftovers(self._pid, self._start, self._pid)
        if self._cgroup is not None:
            # Killed ones take a moment to go; none found: nobody to wait for.
            if not emptied and self._cgroup.kill() and self._watch_members():
                return  # _member_exited comes back here once they are gone
        elif self._terminated:
            self._signal_escaped(signal.SIGKILL)  # a stop: what left the group goes too
        with self._lock:
            self._ended = True
            callback = self._callback
        if callback is not None:
            callback()

    def outcome(self) -> Outcome:
        """How the job ended: its leader's status, how it failed.

        ``release`` removes its cgroup afterwards. A failure is explained where it can be
        (exits 126 and 127, a limit that was reached, a status nobody could know); what
        the job used is read from its cgroup.
        """
        end = self._leader.reap()
        self.close()
        exit_code, usage = end.exit_code, end.usage
        reason = None
        if self._cgroup is not None:
            usage = self._cgroup.totals()
            with self._lock:
                stopped = self._terminated  # it ends STOPPED: no failure to explain
            reason = None if stopped else limit_failure(self._cgroup, exit_code)
        if reason is None and self._log_path is not None:
            reason = diagnose(exit_code, self._log_path)
        if exit_code is None:
            reason = end.unknown_because or reason
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

    def release(self) -> None:
        """Remove the ended job's cgroup (empty by then: ``on_exit`` waits for that)."""
        if self._cgroup is not None:
            self._cgroup.remove()

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
        self._leader.close()
        with self._lock:
            watches = list(self._draining.values())
            draining, self._draining = list(self._draining), {}
        for watch in watches:
            watch.cancel()
        for fd in draining:
            with contextlib.suppress(OSError):
                os.close(fd)
