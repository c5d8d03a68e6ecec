"""``Watcher`` file watches: one-shot watches, watches shared by one file, a lost queue.

Each test holds the watcher's thread in a callback while the files are written, so that
the events queue up exactly as they do while the thread is busy or waits for a CPU, then
counts what the thread read once released: counts, never timings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobmagic.engine.watcher import Watcher

pytestmark = pytest.mark.timeout(60)


class CountedWatcher:
    """A real ``Watcher`` whose inotify reads are counted, and a way to hold its thread."""

    def __init__(self) -> None:
        self.watcher = Watcher(name="jobmagic-watcher-test")
        self.events_read = 0
        inotify = self.watcher._inotify
        read = inotify.read

        def counted_read(*args: Any, **kwargs: Any) -> Any:
            events = read(*args, **kwargs)
            self.events_read += len(events)
            return events

        inotify.read = counted_read  # type: ignore[method-assign]

    def hold(self) -> threading.Event:
        """Block the watcher's thread until the returned event is set."""
        held, release = threading.Event(), threading.Event()

        def block() -> None:
            held.set()
            release.wait(30)

        assert self.watcher.call_soon(block)
        assert held.wait(10)
        return release

    def settle(self) -> None:
        """Return once the thread has dispatched everything queued before this call."""
        done = threading.Event()
        assert self.watcher.call_soon(done.set)
        assert done.wait(10)


class Calls:
    """Counts a callback's calls and lets a test wait for the n-th."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout=10)


@pytest.fixture
def counted() -> Iterator[CountedWatcher]:
    watcher = CountedWatcher()
    yield watcher
    watcher.watcher.close()


def write_interleaved(paths: list[Path], times: int) -> None:
    """Append one byte to each file in turn, ``times`` rounds: no two writes in a row hit
    the same file, so the kernel cannot merge their events into one."""
    fds = [os.open(path, os.O_WRONLY | os.O_APPEND) for path in paths]
    try:
        for _ in range(times):
            for fd in fds:
                os.write(fd, b"x")
    finally:
        for fd in fds:
            os.close(fd)


def make_files(tmp_path: Path, *names: str) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.touch()
    return paths


def test_a_one_shot_watch_costs_one_event_however_many_writes_queue_up(
    counted: CountedWatcher, tmp_path: Path
) -> None:
    paths = make_files(tmp_path, "a.log", "b.log")
    calls = [Calls() for _ in paths]
    watches = [
        counted.watcher.watch_file(str(p), c, once=True) for p, c in zip(paths, calls, strict=True)
    ]
    release = counted.hold()
    write_interleaved(paths, 1000)  # 2,000 writes while the thread cannot read
    release.set()
    assert all(c.wait_for(1) for c in calls)
    write_interleaved(paths, 10)  # after the first write the watches are over
    counted.settle()
    assert [c.count for c in calls] == [1, 1]
    # Per file: the one write event, and the kernel's IN_IGNORED as the watch ends.
    assert counted.events_read <= 2 * len(paths)
    assert counted.watcher._files == {}
    for watch in watches:
        counted.watcher.unwatch_file(watch)  # allowed after it fired: a no-op


def test_a_persistent_watch_is_called_for_writes_after_the_first(
    counted: CountedWatcher, tmp_path: Path
) -> None:
    (path,) = make_files(tmp_path, "a.log")
    calls = Calls()
    watch = counted.watcher.watch_file(str(path), calls)
    for round_ in range(1, 4):
        write_interleaved([path], 1)
        assert calls.wait_for(round_)
    counted.watcher.unwatch_file(watch)
    assert counted.watcher._files == {}


@pytest.mark.parametrize("one_shot_first", [True, False])
def test_a_one_shot_watch_on_a_watched_file_leaves_the_other_watch_whole(
    counted: CountedWatcher, tmp_path: Path, one_shot_first: bool
) -> None:
    # An inode has one inotify mask per descriptor: a one-shot mask would end the
    # persistent watch too, whichever of the two was added first.
    (path,) = make_files(tmp_path, "a.log")
    once, persistent = Calls(), Calls()
    if one_shot_first:
        counted.watcher.watch_file(str(path), once, once=True)
        watch = counted.watcher.watch_file(str(path), persistent)
    else:
        watch = counted.watcher.watch_file(str(path), persistent)
        counted.watcher.watch_file(str(path), once, once=True)
    for round_ in range(1, 4):
        write_interleaved([path], 1)
        assert persistent.wait_for(round_)
    counted.settle()
    assert once.count == 1
    counted.watcher.unwatch_file(watch)
    assert counted.watcher._files == {}


def test_a_lost_event_queue_calls_every_watch_back(counted: CountedWatcher, tmp_path: Path) -> None:
    busy = make_files(tmp_path, "a.log", "b.log")
    (quiet,) = make_files(tmp_path, "c.log")
    for path in busy:
        counted.watcher.watch_file(str(path), lambda: None)
    calls = Calls()
    counted.watcher.watch_file(str(quiet), calls, once=True)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    release = counted.hold()
    write_interleaved(busy, limit // 2 + 10)  # more events than the queue holds ...
    write_interleaved([quiet], 1)  # ... so this one is lost, the queue says only that
    release.set()
    assert calls.wait_for(1)
    counted.settle()
    write_interleaved([quiet], 1)  # the one-shot watch is over, called back once
    counted.settle()
    assert calls.count == 1
    assert len(counted.watcher._files) == len(busy)
