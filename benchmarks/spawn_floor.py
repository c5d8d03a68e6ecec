"""The spawn case's floor: the least any design that keeps jobmagic's promises can cost.

Not jobmagic: a minimal program, written for this measurement only, that does what the
spawn goal says must be kept, and nothing else. Per job:

- one SQLite transaction records it RUNNING with its pid (WAL, ``synchronous=NORMAL``,
  jobmagic's settings), its log created inside it (``O_CREAT | O_EXCL``, 0600);
- a spawner process that outlives the kernel starts it (``posix_spawn`` of ``/bin/sh
  -c true`` in a new session, the log as stdout and stderr, passed over a Unix socket
  pair with ``SCM_RIGHTS``), answers with its pid, reaps it, tells the kernel its status
  on a second socket and writes it to the job's status file (0600);
- in the kernel, one thread reads the ends and hands them to a writer thread (no store
  write on the thread that sees exits), which records each end in one transaction and
  wakes the job's waiter.

Left out, so that this is a lower bound: cgroups, the stop marker, the job script, the
spawner's restart, validation, events and listeners, every error path. Whatever it
measures, a design that also does those costs at least that much.
"""

from __future__ import annotations

import array
import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HEADER = struct.Struct(">I")

#: The spawner, run as ``python -I -S -c SPAWNER CONTROL_FD EVENTS_FD STATUS_DIR``.
SPAWNER = r"""
import array, json, os, select, signal, socket, struct, sys
HEADER = struct.Struct(">I")
control = socket.socket(fileno=int(sys.argv[1]))
events = socket.socket(fileno=int(sys.argv[2]))
status_dir = sys.argv[3]
wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
poller = select.poll()
poller.register(control.fileno(), select.POLLIN)
poller.register(wake_r, select.POLLIN)
jobs = {}
def send(sock, message):
    data = json.dumps(message).encode()
    sock.sendall(HEADER.pack(len(data)) + data)
while True:
    for fd, _ in poller.poll():
        if fd == wake_r:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    pid, status, _usage = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                job = jobs.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                send(events, {"id": job, "status": code})
                out = os.open(f"{status_dir}/{job}.status", os.O_WRONLY | os.O_TRUNC)
                os.write(out, b"%d\n" % code)
                os.close(out)
            continue
        data, ancillary, _flags, _addr = control.recvmsg(1 << 16, socket.CMSG_SPACE(4))
        if not data:
            sys.exit(0)
        fds = array.array("i")
        for _level, _type, payload in ancillary:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        request = json.loads(data[HEADER.size:])
        log_fd = fds[0]
        pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", request["command"]],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)],
            setsid=True,
        )
        os.close(log_fd)
        jobs[pid] = request["id"]
        send(control, {"pid": pid})
        os.close(os.open(f"{status_dir}/{request['id']}.status",
                         os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
"""


def _receive(sock: socket.socket) -> dict:
    """One framed message (they are small: one read brings it whole)."""
    data = sock.recv(1 << 16)
    if not data:
        raise EOFError("the spawner has gone")
    return json.loads(data[HEADER.size :])


class Floor:
    """The minimal service: ``start(command)`` returns an Event set once its end is recorded."""

    def __init__(self, home: Path) -> None:
        self.home = home
        for name in ("logs", "status"):
            (home / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            home / "jobs.sqlite", isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, command TEXT, state TEXT,"
            " pid INTEGER, status INTEGER, created_at REAL, ended_at REAL, log_path TEXT)"
        )
        self.lock = threading.Lock()  # the connection's
        control, self._control = socket.socketpair()
        events, self._events = socket.socketpair()
        self.spawner = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                SPAWNER,
                str(control.fileno()),
                str(events.fileno()),
                str(home / "status"),
            ],
            pass_fds=(control.fileno(), events.fileno()),
        )
        control.close()
        events.close()
        self._waiters: dict[int, threading.Event] = {}
        self._ends: list[tuple[int, int]] = []
        self._wake = threading.Condition()
        threading.Thread(target=self._watch, daemon=True).start()
        threading.Thread(target=self._write_ends, daemon=True).start()

    def start(self, command: str) -> threading.Event:
        done = threading.Event()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            job_id = self.db.execute(
                "INSERT INTO jobs (command, state, created_at) VALUES (?, 'queued', ?)",
                (command, time.time()),
            ).lastrowid
            assert job_id is not None
            self._waiters[job_id] = done
            log = self.home / "logs" / f"{job_id}.log"
            log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            try:
                data = json.dumps({"id": job_id, "command": command}).encode()
                self._control.sendmsg(
                    [HEADER.pack(len(data)) + data],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [log_fd]))],
                )
            finally:
                os.close(log_fd)
            pid = _receive(self._control)["pid"]
            self.db.execute(
                "UPDATE jobs SET state = 'running', pid = ?, log_path = ? WHERE id = ?",
                (pid, str(log), job_id),
            )
            self.db.execute("COMMIT")
        return done

    def _watch(self) -> None:
        """The thread that sees exits: it only hands them on."""
        while True:
            try:
                message = _receive(self._events)
            except (EOFError, OSError):
                return
            with self._wake:
                self._ends.append((message["id"], message["status"]))
                self._wake.notify()

    def _write_ends(self) -> None:
        while True:
            with self._wake:
                while not self._ends:
                    self._wake.wait()
                ends, self._ends = self._ends, []
            with self.lock:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany(
                    "UPDATE jobs SET state = ?, status = ?, ended_at = ? WHERE id = ?",
                    [("succeeded" if s == 0 else "failed", s, time.time(), i) for i, s in ends],
                )
                self.db.execute("COMMIT")
                waiters = [self._waiters.pop(job_id) for job_id, _ in ends]
            for waiter in waiters:
                waiter.set()

    def close(self) -> None:
        self._control.close()
        self.spawner.wait()
        self._events.close()
        self.db.close()


def measure(jobs: int) -> dict:
    """``jobs`` x start + wait ``true`` through the floor service (a fresh one, in cwd)."""
    floor = Floor(Path.cwd() / "floor-home")
    try:
        floor.start("true").wait()  # warm
        start = time.perf_counter()
        for _ in range(jobs):
            if not floor.start("true").wait(30):
                raise RuntimeError("a floor job did not end")
        return {"seconds": time.perf_counter() - start}
    finally:
        floor.close()
