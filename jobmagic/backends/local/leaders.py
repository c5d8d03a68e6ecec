"""How this process learns that a local job's leader has ended, and how it ended.

A job's leader is the first process of its process group (its pid is the group id). How
its end is learned depends on who started it and who follows it:

- ``SpawnedLeader``: started by this process's spawner (``spawner_client.py``), which
  reaps it and reports its status and CPU time; followed on a pidfd if the spawner dies;
- ``WrapperChild``: the wrapper (``wrapper.py``), this process's own child, waited for on
  a pidfd and reaped here;
- ``FollowedLeader``: another process's job (a dead kernel's), followed on a pidfd; its
  status is read from its status file, waited for while the spawner that owes it lives;
- ``GoneLeader``: a job whose wrapper was killed while its command runs on (the job is
  then its group's surviving members, watched by ``LocalExecution``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Protocol

from jobmagic.core.limits import Usage
from jobmagic.core.process_identity import open_pidfd

from ..base import Callback, Cancellable, Reactor
from .status_file import StatusWatch, exit_code_from_shell_status, read_status_file

#: Why a job whose wrapper was killed has no exit status.
WRAPPER_KILLED = "its jobmagic wrapper was killed, so its exit status is unknown"
#: Why a job's exit status is unknown when its spawner died before it ended.
SPAWNER_KILLED = "its jobmagic spawner was killed, so its exit status is unknown"


@dataclasses.dataclass(frozen=True)
class LeaderEnd:
    """How a leader ended: its exit code (None: unknown, and ``unknown_because`` says why)."""

    exit_code: int | None
    usage: Usage | None = None
    unknown_because: str | None = None


class Leader(Protocol):
    """A job's leader, as one way of following it sees it."""

    @property
    def our_child(self) -> bool:
        """True while it is our own unreaped child: its group id cannot be reused."""
        ...

    def watch(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` from ``reactor`` once it has ended (and its status is known)."""
        ...

    def reap(self) -> LeaderEnd:
        """How it ended (after ``watch``'s callback); reaps our own child."""
        ...

    def close(self) -> None:
        """Stop following it (it runs on)."""
        ...


class SpawnedLeader:
    """A leader this process's spawner started and reports on. Thread-safe.

    ``status`` is the shell's ``$?`` for it once it has ended (None: unknown, because the
    spawner died first and left no status file); ``cpu_seconds`` its CPU time, from its
    rusage, when the spawner reaped it.
    """

    def __init__(
        self,
        pid: int,
        start: int | None,
        status_path: str,
        read_ends_on: Callable[[Reactor], None],
    ) -> None:
        self.pid = pid
        self.start = start
        self.status_path = status_path
        self._read_ends_on = read_ends_on  # its spawner's: read the ends on a reactor
        self.our_child = False  # the spawner's, reaped by it
        # Guards every field below: the end comes on a reactor's thread, the watch from
        # the launching one.
        self._lock = threading.Lock()
        self._ended = False
        self.status: int | None = None
        self.cpu_seconds: float | None = None
        self.lost = False  # the spawner died before it told us the end
        self._reactor: Reactor | None = None
        self._callback: Callback | None = None
        self._pidfd: int | None = None
        self._pidfd_watch: Cancellable | None = None

    def watch(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` from ``reactor`` once the leader has ended (soon if it had)."""
        self._read_ends_on(reactor)
        with self._lock:
            self._reactor, self._callback = reactor, callback
            ended = self._ended
            follow = self.lost and not ended and self._pidfd is not None
        if ended:
            reactor.call_later(0, callback)
        elif follow:
            self._follow_pidfd()

    def ended(
        self, status: int | None, cpu_seconds: float | None, on: Reactor | None = None
    ) -> None:
        """The end is known: tell the watcher, if one waits (directly when ``on`` is its reactor).

        ``on``: the reactor whose thread this runs on, if any.
        """
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self.status, self.cpu_seconds = status, cpu_seconds
            reactor, callback = self._reactor, self._callback
            pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            os.close(pidfd)
        if reactor is None or callback is None:
            return
        if reactor is on:
            callback()
        else:
            reactor.call_later(0, callback)

    def spawner_lost(self) -> None:
        """The spawner died before telling this leader's end: follow the leader itself."""
        with self._lock:
            if self._ended:
                return
            self.lost = True
        try:
            pidfd = open_pidfd(self.pid, self.start)
        except OSError:  # out of descriptors: not followed, its end taken as it is now
            pidfd = None
        if pidfd is None:  # gone already: its status is on disk, or nobody knows it
            self.ended(read_status_file(self.status_path), None)
            return
        with self._lock:
            self._pidfd = pidfd
            watching = self._reactor is not None
        if watching:
            self._follow_pidfd()

    def _follow_pidfd(self) -> None:
        with self._lock:
            reactor, pidfd = self._reactor, self._pidfd
        if reactor is None or pidfd is None:
            return
        watch = reactor.watch_readable(pidfd, self._pidfd_readable)
        with self._lock:
            self._pidfd_watch = watch

    def _pidfd_readable(self) -> None:
        with self._lock:
            self._pidfd_watch = None
            reactor = self._reactor
        # Reparented and reaped by another (init), unseen by the spawner: a status is on
        # disk only if the spawner wrote it before it died.
        self.ended(read_status_file(self.status_path), None, on=reactor)

    def reap(self) -> LeaderEnd:
        """The status and CPU time the spawner reported (the spawner reaped it)."""
        status, cpu = self.status, self.cpu_seconds
        usage = Usage(cpu_seconds=cpu) if cpu is not None else None
        if status is None:
            return LeaderEnd(None, usage, SPAWNER_KILLED if self.lost else None)
        return LeaderEnd(exit_code_from_shell_status(status), usage)

    def close(self) -> None:
        """Stop following the leader (it runs on)."""
        with self._lock:
            watch, self._pidfd_watch = self._pidfd_watch, None
            pidfd, self._pidfd = self._pidfd, None
            self._callback = None
        if watch is not None:
            watch.cancel()
        if pidfd is not None:
            os.close(pidfd)


class WrapperChild:
    """The wrapper, our own child: waited for on a pidfd, reaped here."""

    def __init__(self, popen: subprocess.Popen[bytes], status_path: str) -> None:
        self._popen = popen
        self._status_path = status_path
        self._pidfd: int | None = os.pidfd_open(popen.pid)
        self._watch: Cancellable | None = None
        # Guards _pidfd and _watch: close() may come from any thread.
        self._lock = threading.Lock()

    @property
    def our_child(self) -> bool:
        """True until it is reaped."""
        return self._popen.returncode is None

    def watch(self, reactor: Reactor, callback: Callback) -> None:
        """See :class:`Leader`."""
        with self._lock:
            if self._pidfd is not None:
                self._watch = reactor.watch_readable(self._pidfd, callback)

    def reap(self) -> LeaderEnd:
        """The status the wrapper wrote (else its own), and the CPU time of all it waited for.

        Not its peak memory: ``ru_maxrss`` of a child spawned by vfork starts from this
        process's own resident size (the kernel's), not from the job's.
        """
        popen, usage = self._popen, None
        if popen.returncode is None:
            try:
                _, status, rusage = os.wait4(popen.pid, 0)
            except ChildProcessError:
                popen.wait()
            else:
                popen.returncode = os.waitstatus_to_exitcode(status)
                usage = Usage(cpu_seconds=rusage.ru_utime + rusage.ru_stime)
        self.close()
        exit_code = read_status_file(self._status_path)
        return LeaderEnd(exit_code if exit_code is not None else popen.returncode, usage)

    def close(self) -> None:
        """See :class:`Leader`."""
        with self._lock:
            watch, self._watch = self._watch, None
            pidfd, self._pidfd = self._pidfd, None
        if watch is not None:
            watch.cancel()
        if pidfd is not None:
            os.close(pidfd)


class FollowedLeader:
    """Another process's job's leader, followed on a pidfd; its status from its file.

    ``spawner``: the (pid, start time) of the spawner that started it, which writes the
    status just after the leader's exit: while it lives, the end waits for the status.
    """

    our_child = False

    def __init__(self, pidfd: int, status_path: str, spawner: tuple[int, int] | None) -> None:
        self._pidfd: int | None = pidfd
        self._status_path = status_path
        self._spawner = spawner
        # Guards the fields below: close() may come from any thread.
        self._lock = threading.Lock()
        self._watch: Cancellable | None = None
        self._status_watch: StatusWatch | None = None
        self._reactor: Reactor | None = None
        self._callback: Callback | None = None

    def watch(self, reactor: Reactor, callback: Callback) -> None:
        """See :class:`Leader`."""
        with self._lock:
            if self._pidfd is None:
                return
            self._reactor, self._callback = reactor, callback
            self._watch = reactor.watch_readable(self._pidfd, self._exited)

    def _exited(self) -> None:
        with self._lock:
            reactor, callback, spawner = self._reactor, self._callback, self._spawner
            self._watch = None
        if reactor is None or callback is None:
            return
        if spawner is None or not self._status_path or read_status_file(self._status_path):
            callback()
            return
        status_watch = StatusWatch(reactor, self._status_path, spawner, callback)
        with self._lock:
            self._status_watch = status_watch

    def reap(self) -> LeaderEnd:
        """The status in its file (None: none was written)."""
        self.close()
        exit_code = read_status_file(self._status_path) if self._status_path else None
        unknown = SPAWNER_KILLED if exit_code is None and self._spawner is not None else None
        return LeaderEnd(exit_code, unknown_because=unknown)

    def close(self) -> None:
        """See :class:`Leader`."""
        with self._lock:
            watch, self._watch = self._watch, None
            status_watch, self._status_watch = self._status_watch, None
            pidfd, self._pidfd = self._pidfd, None
            self._callback = None
        if watch is not None:
            watch.cancel()
        if status_watch is not None:
            status_watch.close()
        if pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(pidfd)


class GoneLeader:
    """The leader of a job whose wrapper was killed: gone, its status never written."""

    our_child = False

    def watch(self, reactor: Reactor, callback: Callback) -> None:
        """It has ended: ``callback`` soon (the job's members are watched after)."""
        reactor.call_later(0, callback)

    def reap(self) -> LeaderEnd:
        """Nothing to reap: the exit status is unknown."""
        return LeaderEnd(None, unknown_because=WRAPPER_KILLED)

    def close(self) -> None:
        """Nothing to release."""
