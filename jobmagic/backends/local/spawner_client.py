"""The kernel's side of the spawner (``spawner.py``): starting it, asking it for jobs, hearing ends.

One ``Spawner`` per local executor. Its process is started on the first job, with
``subprocess.Popen`` and no Python callback between fork and exec (so CPython keeps its
vfork fast path in a large kernel), in a session of its own; it gets two ends of Unix
socket pairs and nothing else. A job is started by one request on the control socket,
which carries the job's open log (``SCM_RIGHTS``) and is answered with the leader's pid
and start time once the leader runs. The ends of jobs come on the events socket, which the
reactor of the first job that waits for its end watches (the kernel's watcher thread):
no thread of its own, no polling.

When the spawner dies (someone killed it), its jobs run on: each is followed from then on
through a pidfd on its leader, and its end is the status the spawner wrote, if it wrote
one, or honestly unknown. The next job starts a new spawner. ``close`` (the service shuts
down) closes the kernel's ends; the spawner then records its running jobs' ends in their
status files and exits after the last.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import os
import select
import socket
import subprocess
import sys
import threading
import weakref
from typing import Any

from jobmagic.core.process_identity import process_start_time

from ..base import Cancellable, Reactor
from .leaders import SpawnedLeader
from .spawner import Connection, frame

#: The spawner program, run by file path (it imports nothing of jobmagic).
SPAWNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawner.py")
#: How long a spawner that is exiting (its sockets closed) is waited for, at most (seconds).
EXIT_WAIT = 2.0


class SpawnFailed(OSError):
    """Raised when the spawner could not start a job (``errno`` and ``strerror`` say why)."""


class SpawnerUnavailable(OSError):
    """Raised when no spawner can run here (it cannot be started, or dies at once)."""


class _SpawnerProcess:
    """One spawner process, its two sockets, and the leaders it runs for us."""

    def __init__(self) -> None:
        control, control_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        events, events_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    SPAWNER,
                    str(control_theirs.fileno()),
                    str(events_theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(control_theirs.fileno(), events_theirs.fileno()),
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            for sock in (control, control_theirs, events, events_theirs):
                sock.close()
            raise
        finally:
            control_theirs.close()
            events_theirs.close()
        self.pid = self.popen.pid
        self.start = process_start_time(self.pid)  # our unreaped child: stable
        self.control = Connection(control)
        events.setblocking(False)
        self.events = Connection(events)
        # What the spawner's environment is now: its own, inherited at start, until a
        # request sends another.
        self.environment: dict[str, str] = dict(os.environ)
        self._requests = itertools.count(1)
        self.answered = False  # it answered a request: it works here
        # Guards _leaders, _early, _reactor, _watch, _closed; the control socket is used under
        # the Spawner's lock, the events socket under _reading.
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._leaders: dict[tuple[int, int | None], SpawnedLeader] = {}
        # Ends read before their start's answer was (status, CPU seconds), by leader.
        self._early: dict[tuple[int, int | None], tuple[int, float]] = {}
        self._reactor: Reactor | None = None
        self._watch: Cancellable | None = None
        self._closed = False

    @property
    def ref(self) -> list[Any]:
        """``[pid, start time]``: the spawner named for good, for a job's ``backend_ref``."""
        return [self.pid, self.start]

    def alive(self) -> bool:
        """False once it was seen to have gone (or this end was closed).

        Not a ``waitpid`` per start: a spawner that died unseen refuses the next request
        (``EPIPE``), and another is started for it.
        """
        with self._lock:
            return not self._closed

    def spawn(self, request: dict[str, Any], log_fd: int) -> SpawnedLeader:
        """Send one start request (spawner lock held); the leader it started.

        Raises
        ------
        BrokenPipeError, ConnectionError
            The request never reached a live spawner (it may be retried with another).
        SpawnFailed
            The spawner could not start the job, or died before it answered.
        """
        environment = request.pop("env")
        if environment != self.environment:
            request["env"] = environment
        request["id"] = next(self._requests)
        request["fds"] = 1
        data = frame(request)
        sock = self.control.sock
        sent = sock.sendmsg(
            [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [log_fd]))]
        )
        if sent < len(data):
            sock.sendall(data[sent:])
        if "env" in request:
            self.environment = environment
        answer = self._answer()
        if "pid" not in answer:
            raise SpawnFailed(int(answer.get("errno") or 0), str(answer.get("error")))
        leader = SpawnedLeader(
            int(answer["pid"]), answer.get("start"), request["status"], self.watch
        )
        key = (leader.pid, leader.start)
        with self._lock:
            early = self._early.pop(key, None)
            if early is None:
                self._leaders[key] = leader
        if early is not None:  # read on the reactor before we got here
            leader.ended(*early)
        return leader

    def _answer(self) -> dict[str, Any]:
        while True:
            try:
                messages = self.control.receive()
            except OSError as exc:
                messages, error = None, exc.strerror or str(exc)
            else:
                error = "it ended"
            if messages is None:
                self.lost()
                raise SpawnFailed(0, f"the jobmagic spawner died while starting the job ({error})")
            if messages:
                answer: dict[str, Any] = messages[0][0]
                self.answered = True
                return answer

    def watch(self, reactor: Reactor) -> None:
        """Read the ends on ``reactor`` (the first reactor that waits for one)."""
        with self._lock:
            if self._reactor is not None or self._closed:
                return
            self._reactor = reactor
            self._watch = reactor.watch_readable(self.events.sock.fileno(), self._readable)

    def _readable(self) -> None:
        """Ends arrived (reactor thread): hand each to its leader, and watch on."""
        with self._lock:
            reactor = self._reactor
        if not self._read_ends(reactor):
            self.lost()
            return
        with self._lock:
            if self._closed or self._reactor is None:
                return
            self._watch = self._reactor.watch_readable(self.events.sock.fileno(), self._readable)

    def _read_ends(self, reactor: Reactor | None) -> bool:
        """Hand every end that has arrived to its leader; False once the spawner has gone."""
        with self._reading:
            while True:
                try:
                    messages = self.events.receive()
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if messages is None:
                    return False
                for message, _fds in messages:
                    key = (int(message["pid"]), message.get("start"))
                    end = (int(message["status"]), float(message["cpu"]))
                    with self._lock:
                        leader = self._leaders.pop(key, None)
                        if leader is None:
                            self._early[key] = end
                    if leader is not None:
                        leader.ended(*end, on=reactor)

    def lost(self) -> None:
        """The spawner has gone: the ends it sent are read, its other leaders follow themselves."""
        with self._lock:
            closed = self._closed
        if closed:
            return
        with contextlib.suppress(OSError, ValueError):
            self._read_ends(None)  # what it told before it went
        with self._lock:
            if self._closed:
                return
            leaders, self._leaders = list(self._leaders.values()), {}
            self._close_sockets()
        for leader in leaders:
            leader.spawner_lost()
        # Its end of the sockets closed as it exits: it is a zombie at once.
        self._reap(EXIT_WAIT)

    def close(self) -> None:
        """Close our ends: the spawner records the ends of the jobs it runs, then exits.

        With none running it exits at once, and is reaped here; else it is left to the
        ``subprocess`` module, which reaps what it dropped at its next start of a process.
        """
        with self._lock:
            if self._closed:
                return
            idle = not self._leaders
            self._close_sockets()
        self._reap(EXIT_WAIT if idle else 0)

    def _reap(self, timeout: float) -> None:
        """Reap the spawner once it has exited, waiting up to ``timeout`` seconds (a pidfd)."""
        with contextlib.suppress(OSError):
            if timeout > 0 and self.popen.poll() is None:
                pidfd = os.pidfd_open(self.pid)
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)
            self.popen.poll()

    def _close_sockets(self) -> None:
        """Close our ends and stop reading them (lock held)."""
        self._closed = True
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        self.control.sock.close()
        self.events.sock.close()


class Spawner:
    """The kernel's spawner, started on first use and again after it died. Thread-safe."""

    def __init__(self) -> None:
        # Guards _process, and makes requests one at a time (the spawner answers in order).
        self._lock = threading.Lock()
        self._process: _SpawnerProcess | None = None
        _spawners.add(self)

    def spawn(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        extra_env: dict[str, str],
        cwd: str,
        status_path: str,
        log_fd: int,
        direct: tuple[list[str], list[str]] | None = None,
    ) -> tuple[SpawnedLeader, list[Any]]:
        """Start a job: its leader runs ``argv`` in ``cwd`` with ``env`` plus ``extra_env``.

        ``direct`` (a plain command's words, and the v1 cgroup directories it joins) lets
        the spawner start the program itself instead (``spawn_direct.py``) where it can.
        Returns the leader and the spawner's ``[pid, start time]``.

        Raises
        ------
        SpawnFailed
            The job could not be started (``strerror`` says why).
        OSError
            No spawner can be started.
        """
        request: dict[str, Any] = {
            "argv": argv,
            "cwd": cwd,
            "status": status_path,
            "set": extra_env,
        }
        if direct is not None:
            request["direct"], request["join"] = direct
        with self._lock:
            for attempt in range(2):
                process = self._running()
                try:
                    leader = process.spawn({**request, "env": env}, log_fd)
                except (BrokenPipeError, ConnectionError) as exc:
                    # It died before it read the request: another spawner may start the job.
                    process.lost()
                    if attempt or not process.answered:
                        raise SpawnerUnavailable(exc.errno, "the spawner ended at once") from exc
                    continue
                except SpawnFailed:
                    if not process.answered and not process.alive():
                        raise SpawnerUnavailable(0, "the spawner ended at once") from None
                    raise
                return leader, process.ref
        raise AssertionError("unreachable")

    def _running(self) -> _SpawnerProcess:
        """The live spawner process, started now if there is none (lock held).

        Raises
        ------
        SpawnerUnavailable
            When none can be started.
        """
        process = self._process
        if process is None or not process.alive():
            if process is not None:
                process.lost()
            try:
                process = self._process = _SpawnerProcess()
            except OSError as exc:
                raise SpawnerUnavailable(exc.errno, exc.strerror or str(exc)) from exc
        return process

    def close(self) -> None:
        """Let the spawner go (it exits once the jobs it runs have ended)."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.close()

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's spawner is not ours to talk to."""
        process, self._process = self._process, None
        self._lock = threading.Lock()
        if process is not None:
            with contextlib.suppress(OSError):
                process.control.sock.close()
                process.events.sock.close()


# Every Spawner of this process, so that a forked child forgets them all.
_spawners: weakref.WeakSet[Spawner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spawner in list(_spawners):
        spawner._forget_after_fork()  # noqa: SLF001 - the module's own class


os.register_at_fork(after_in_child=_after_fork_in_child)
