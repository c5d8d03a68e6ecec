"""Helpers shared by the engine and store tests: reading a job, checking pids."""

from __future__ import annotations

import contextlib
import os
import re
import threading

from jobmagic.core.process_identity import process_start_time, stat_fields
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker


def read_until(worker: Worker, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    """Stream the job's output until ``pattern`` matches it; fail if the job ends first."""
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


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its exit status was not collected yet."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] == b"Z"


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie has exited)."""
    return process_start_time(pid) is not None and not is_zombie(pid)


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
