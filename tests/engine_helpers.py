"""Helpers shared by the engine and store tests: reading a job, checking a pid."""

from __future__ import annotations

import contextlib
import re
import threading

from jobmagic.procinfo import is_zombie, process_start_time
from jobmagic.service import WorkerService
from jobmagic.worker import Worker


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


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie has exited)."""
    return process_start_time(pid) is not None and not is_zombie(pid)


def flush_watcher(service: WorkerService) -> None:
    """Return once the watcher thread has run every callback that was due before this call."""
    done = threading.Event()
    service.watcher.call_later(0, done.set)
    assert done.wait(10), "the watcher thread is stuck"
