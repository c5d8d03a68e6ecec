"""The spawner: one small process per kernel that starts the kernel's local jobs.

Usage: ``python -I -S spawner.py CONTROL_FD EVENTS_FD``. The kernel starts it once
(``spawner_client.py``), by file path, so it imports nothing but the standard library.
It talks to its kernel over two ends of Unix socket pairs it inherits (no listening
socket, no name in the file system): requests and their answers on ``CONTROL_FD``, the
ends of jobs on ``EVENTS_FD``. Every message is a 4-byte big-endian length and a JSON
object; a request to start a job carries the job's open log as its one descriptor
(``SCM_RIGHTS``).

Why a process of its own: a job's status must reach the disk when no kernel is alive,
so the job's parent must outlive the kernel; as that parent, the spawner lets the job's
own script lead the job, with no wrapper shell and no fork around the command. Each job
is ``posix_spawn``-ed (a vfork: no copy of this process, and no Python runs in the
child), in a new session, with the log as its stdout and stderr, stdin on ``/dev/null``
and the signals Python ignores back to their defaults. Its program is the job script
(``shell.JOB_SCRIPT`` run by ``/bin/sh``), which joins the job's cgroup and runs the
command, or, for a plain command, the command's program itself (``spawn_direct.py``);
it is the job's process group leader, and ``posix_spawn`` returns only once it runs, so
the answer that names its pid comes when a stop can already reach it.

The spawner is the parent of every job's leader and a child subreaper, so that processes
a job orphans stay in its tree (not init's) while they live; it reaps them all. Just
after a leader's start (its answer sent) it makes the job's status file (0600); when the
leader exits, it tells the kernel (its pid, start time, status and CPU seconds), then
writes the status into that file, one line, the shell's ``$?`` (128+N for "killed by
signal N"). Once the kernel has gone (its end of the sockets closed: a shutdown or a
crash) the spawner goes on recording the jobs it runs, and exits when the last has ended.
It ignores nothing and catches nothing but SIGCHLD: a ``kill`` ends it like any process,
and its kernel then starts a new one for the next job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

if __package__:
    from . import spawn_direct
else:  # run by file path (-I -S): the sibling module, from this file's directory
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import spawn_direct  # type: ignore[import-not-found,no-redef]

#: ``prctl(PR_SET_CHILD_SUBREAPER, 1)``: orphaned descendants are reparented to us.
PR_SET_CHILD_SUBREAPER = 36
#: The length prefix of every message.
HEADER = struct.Struct(">I")
#: The most descriptors one request may carry (a start request carries one, its log).
MAX_FDS = 4
#: How much is read from a socket at a time.
CHUNK = 1 << 16
#: Signals Python sets to "ignore" at startup; a job must start with their defaults
#: (ignored signals stay ignored across exec: ``yes | head`` would not end).
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
#: A shell reports "killed by signal N" as this plus N.
SIGNAL_BASE = 128


def frame(message: dict[str, Any]) -> bytes:
    """``message`` as it goes on the wire: its length, then its JSON."""
    data = json.dumps(message).encode()
    return HEADER.pack(len(data)) + data


class Connection:
    """One end of a socket pair, framed: length-prefixed JSON messages, with descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._fds: list[int] = []  # received, not yet handed out, in order

    def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` in full (blocking). Raises OSError when the peer has gone."""
        self.sock.sendall(frame(message))

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        """The complete messages one read brings, each with its descriptors; None at EOF.

        A message that asks for descriptors (``"fds": N``) gets the next N received: each
        arrives with the first byte of the message it was sent with, so before its end.
        """
        data, ancillary, _flags, _address = self.sock.recvmsg(
            CHUNK, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(payload) // 4
                self._fds.extend(struct.unpack(f"{count}i", payload[: count * 4]))
        if not data:
            return None
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            body = self._buffer[HEADER.size : HEADER.size + length]
            self._buffer = self._buffer[HEADER.size + length :]
            message = json.loads(body)
            wanted = int(message.get("fds", 0))
            fds, self._fds = self._fds[:wanted], self._fds[wanted:]
            messages.append((message, fds))
        return messages


class Job:
    """A job this spawner started: its leader's start time and its status file."""

    __slots__ = ("start", "status_path")

    def __init__(self, start: int | None, status_path: str) -> None:
        self.start = start
        self.status_path = status_path


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def shell_status(wait_status: int) -> int:
    """A wait status as a shell's ``$?``: the exit code, or 128+N when signal N killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return SIGNAL_BASE - code if code < 0 else code


def make_status_file(path: str) -> None:
    """Make the job's (empty) status file 0600, in the job home's private ``status/``.

    Made once the kernel has its answer (the job runs meanwhile), before its end can be
    seen: the end is then written into it, never into a file made anew, so a status
    file removed with its job stays removed.
    """
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))


def write_status(path: str, status: int) -> None:
    """Write ``status`` as the status file's one line (truncated first: a stop's mark goes).

    Never through a link, and never into a file that is gone.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"%d\n" % status)
    except OSError:
        pass
    finally:
        os.close(fd)


class Spawner:
    """The spawner's state and its loop."""

    def __init__(self, control: socket.socket, events: socket.socket) -> None:
        self.control: Connection | None = Connection(control)
        # Ends are sent without blocking (and kept here until the kernel reads them): a
        # kernel busy starting a job waits for our answer, never we for its reading.
        events.setblocking(False)
        self.events: socket.socket | None = events
        self.unsent = bytearray()
        self.jobs: dict[int, Job] = {}  # leader pid -> job, until it is reaped
        self.environment: dict[str, str] = dict(os.environ)  # the last one the kernel sent
        # ... and its shell-named variables, for direct starts (made again when it changes)
        self._plain_source: dict[str, str] | None = None
        self._plain: dict[str, str] = {}
        self.poller = select.poll()
        self.poller.register(control.fileno(), select.POLLIN)
        self.poller.register(events.fileno(), 0)  # POLLOUT while ends wait to be sent
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller.register(self.wake_r, select.POLLIN)
        # A handler (not SIG_IGN, which would reap children for us and lose their
        # status), so that each SIGCHLD writes to the wake-up pipe the loop polls.
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def run(self) -> None:
        """Serve the kernel, record ends; return once the kernel is gone and no job runs."""
        while self.control is not None or self.jobs:
            for fd, events in self.poller.poll():
                if fd == self.wake_r:
                    # Drained first: a SIGCHLD from now on wakes the next poll again.
                    # (Each wait4 looks at every child: only after a SIGCHLD.)
                    self._drain_wakeups()
                    self.reap()
                elif self.events is not None and fd == self.events.fileno():
                    if events & (select.POLLHUP | select.POLLERR):
                        self._kernel_gone()
                    else:
                        self._flush()
                elif self.control is not None and fd == self.control.sock.fileno():
                    self._serve()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, CHUNK):
                pass
        except BlockingIOError:
            pass

    def _serve(self) -> None:
        assert self.control is not None
        try:
            messages = self.control.receive()
        except OSError:
            messages = None
        if messages is None:
            self._kernel_gone()
            return
        for message, fds in messages:
            try:
                answer = self.start(message, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                self.control.send(answer)
            except OSError:
                self._kernel_gone()
                return
            if "pid" in answer:
                make_status_file(str(message["status"]))

    def _tell(self, message: dict[str, Any]) -> None:
        """Send an end to the kernel, or keep it until the kernel can take it."""
        if self.events is None:
            return
        pending = bool(self.unsent)
        self.unsent += frame(message)
        if not pending:
            self._flush()

    def _flush(self) -> None:
        assert self.events is not None
        try:
            sent = self.events.send(self.unsent)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._kernel_gone()
            return
        del self.unsent[:sent]
        # Polled for room only while something waits for it.
        self.poller.modify(self.events, select.POLLOUT if self.unsent else 0)

    def _kernel_gone(self) -> None:
        """The kernel closed its ends: record the running jobs' ends for whoever looks next."""
        if self.control is not None:
            self.poller.unregister(self.control.sock)
            self.control.sock.close()
        if self.events is not None:
            self.poller.unregister(self.events)
            self.events.close()
        self.control = self.events = None
        self.unsent.clear()

    def start(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """Start the job ``message`` asks for; the answer names its leader or the error."""
        request = message.get("id")
        try:
            argv = [str(word) for word in message["argv"]]
            environment = message.get("env")
            if isinstance(environment, dict):
                self.environment = {str(k): str(v) for k, v in environment.items()}
            env = dict(self.environment)
            env.update({str(k): str(v) for k, v in dict(message.get("set", {})).items()})
            env.setdefault("PYTHONUNBUFFERED", "1")
            status_path = str(message["status"])
            (log_fd,) = fds
            os.chdir(str(message["cwd"]))
            try:
                pid = self._start_direct(message, log_fd)
                if pid is None:
                    pid = _spawn(argv, env, log_fd)
            finally:
                os.chdir("/")
        except OSError as exc:
            return {"id": request, "errno": exc.errno, "error": exc.strerror or str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"id": request, "errno": errno.EINVAL, "error": f"bad request: {exc!r}"}
        job = Job(start_time(pid), status_path)
        self.jobs[pid] = job
        return {"id": request, "pid": pid, "start": job.start}

    def _start_direct(self, message: dict[str, Any], log_fd: int) -> int | None:
        """Spawn ``message["direct"]`` without the job script, if it can be (``spawn_direct``)."""
        words = message.get("direct")
        if not words:
            return None
        if self.environment is not self._plain_source:
            self._plain_source = self.environment
            self._plain = spawn_direct.shell_environment(self.environment)
        env = dict(self._plain)
        env.update(spawn_direct.shell_environment(dict(message.get("set", {}))))
        env.setdefault("PYTHONUNBUFFERED", "1")
        program = spawn_direct.find_program(str(words[0]), env)
        if program is None:
            return None
        env["PWD"] = spawn_direct.working_directory_variable(env)
        cgroup_dirs = [str(directory) for directory in message.get("join", ())]
        if not spawn_direct.join(cgroup_dirs):
            return None
        try:
            return _spawn([str(word) for word in words], env, log_fd, program)
        except OSError:
            return None  # the job script tries it, and says why it cannot
        finally:
            spawn_direct.leave(cgroup_dirs)

    def reap(self) -> None:
        """Reap every child that has exited; record and report the ends of jobs."""
        while True:
            try:
                pid, wait_status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue  # an orphan a job left to us: reaped, nothing to record
            status = shell_status(wait_status)
            # The kernel first: it is waiting. Whoever else finds the leader gone before
            # the file is written waits for it while we live (status_file.await_status).
            self._tell(
                {
                    "pid": pid,
                    "start": job.start,
                    "status": status,
                    "cpu": usage.ru_utime + usage.ru_stime,
                }
            )
            write_status(job.status_path, status)


def _spawn(argv: list[str], env: dict[str, str], log_fd: int, program: str | None = None) -> int:
    """``posix_spawn`` a job's leader: a new session, the log as stdout and stderr."""
    return os.posix_spawn(
        program or argv[0],
        argv,
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)],
        setsid=True,
        setsigdef=RESTORED_SIGNALS,
    )


def become_subreaper() -> None:
    """Make orphaned descendants our children (Linux's child subreaper), if we can."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the spawner works without: orphans then go to init, as they did before


def main(argv: list[str]) -> int:
    """Serve the kernel on the descriptors ``argv`` names until it and its jobs are gone."""
    if len(argv) != 3:  # noqa: PLR2004
        os.write(2, b"usage: spawner.py CONTROL_FD EVENTS_FD\n")
        return 2
    control_fd, events_fd = int(argv[1]), int(argv[2])
    for fd in (control_fd, events_fd):
        os.set_inheritable(fd, False)  # inherited by us; never by a job
    control = socket.socket(fileno=control_fd)
    events = socket.socket(fileno=events_fd)
    os.chdir("/")  # hold no directory busy
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    become_subreaper()
    Spawner(control, events).run()
    return 0


if __name__ == "__main__":
    # Every descriptor we wrote to is a socket or a status file, already written: skip
    # the interpreter's teardown.
    os._exit(main(sys.argv))
