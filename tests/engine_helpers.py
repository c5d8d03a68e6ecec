"""Helpers shared by the engine and store tests: reading a job, checking pids."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from jobmagic.core.process_identity import process_start_time, stat_fields
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker


def read_until(worker: Worker, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    """Stream the job's output until ``pattern`` matches it; fail if the job ends first.

    What it matches may span chunks: an unbuffered ``print("ready")`` (jobs run with
    PYTHONUNBUFFERED=1) writes "ready" and its newline apart, and a reader between the two
    writes gets them as two chunks.
    """
    seen = b""
    with contextlib.closing(worker.stream()) as chunks:
        for chunk in chunks:
            seen += chunk
            match = pattern.search(seen)
            if match:
                return match
    raise AssertionError(
        f"job ended ({worker.state}) before printing {pattern.pattern!r}: {seen!r}"
    )


def wait_exit(pid: int, timeout: float = 20) -> None:
    """Block (on a pidfd) until ``pid`` has exited; fail after ``timeout`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} did not exit within {timeout} s"
    finally:
        os.close(fd)


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its exit status was not collected yet."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] == b"Z"


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie has exited)."""
    return process_start_time(pid) is not None and not is_zombie(pid)


def cgroup_paths(pid: int) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path} (v2 under "")."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def group_members(pgid: int, exclude: int | None = None) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, read from ``/proc``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        fields = stat_fields(int(entry.name))
        if fields is not None and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def flush_watcher(service: WorkerService) -> None:
    """Return once the watcher thread has run every callback that was due before this call."""
    done = threading.Event()
    service.watcher.call_later(0, done.set)
    assert done.wait(10), "the watcher thread is stuck"


def flush_writer(service: WorkerService) -> None:
    """Return once the end writer's thread has done what it was given before this call.

    (It prunes old jobs and runs the queue after the ends it writes.)
    """
    done = threading.Event()
    assert service._ends.call(done.set), "the service is shut down"
    assert done.wait(10), "the end writer's thread is stuck"


class OtherKernel:
    """Another Python process with its own service: it starts a job and then lives on
    (until ``close``) or dies at once without cleaning up (``die=True``).

    ``job`` is ``{"id", "pid", "spawner"}``: the job, its leader, and the pid of the
    spawner that started it (None: its wrapper did, ``spawner=False``).
    """

    def __init__(
        self, home: Path, command: str, *, die: bool = False, spawner: bool = True
    ) -> None:
        end = "os._exit(0)" if die else "sys.stdin.read()"
        code = (
            "import json, os, re, sys\nfrom jobmagic import WorkerService\n"
            "svc = WorkerService()\n"
            f"w = svc.start({command!r})\n"
            "seen = b''\n"
            "for chunk in w.stream():\n"
            "    seen += chunk\n"
            "    if re.search(rb'ready[^\\n]*\\n', seen): break\n"  # the whole line
            "ref = svc.store.get(w.id).backend_ref or {}\n"
            "spawner = (ref.get('spawner') or [None])[0]\n"
            "print(json.dumps({'id': w.id, 'pid': w.pid, 'spawner': spawner}), flush=True)\n"
            f"{end}\n"
        )
        env = {**os.environ, "JOBMAGIC_HOME": str(home)}
        if not spawner:
            env["JOBMAGIC_SPAWNER"] = "off"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, "the other kernel did not start its job"
        self.job: dict[str, Any] = json.loads(self.process.stdout.readline())
        if die:
            self.process.wait(10)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        self.process.wait(30)
