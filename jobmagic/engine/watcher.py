"""The one thread per service that waits for everything: exits, log growth, deadlines.

It sleeps in ``epoll`` on a pidfd per job (readable when the process exits), one inotify
descriptor (a log file was written; a file is watched only while someone follows it), and
an eventfd that other threads use to wake it when they add a deadline. However many jobs
run, this is one thread and one ``epoll_wait``. It is the kernel's ``Reactor`` (see
``jobmagic.backends.base``): executions wait on it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable

import inotify_simple

_log = logging.getLogger("jobmagic")
# CLOSE_WRITE: the store's change file is opened for writing and closed, not written (see
# JobStore); ATTRIB for what touches a file.
_WATCH_MASK = (
    inotify_simple.flags.MODIFY | inotify_simple.flags.CLOSE_WRITE | inotify_simple.flags.ATTRIB
)
#: ``IN_MASK_CREATE`` (Linux 4.18; inotify_simple has no name for it): add a watch only
#: where this inotify descriptor has none on the file yet, else fail with EEXIST.
_MASK_CREATE = 0x10000000
_ONESHOT = inotify_simple.flags.ONESHOT
_OVERFLOW_WD = -1  # the watch descriptor of IN_Q_OVERFLOW
#: The longest single sleep (seconds): epoll takes at most ~24.8 days in milliseconds, and
#: a deadline further away (a timeout of a month, or of ``inf``) is simply slept towards.
_MAX_SLEEP = 86400.0

Callback = Callable[[], None]


class Timer:
    """A deadline registered with :meth:`Watcher.call_later`; ``cancel()`` drops it."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran)."""
        self.cancelled = True


class ReadableWatch:
    """A one-shot callback on a descriptor, from :meth:`Watcher.watch_readable`."""

    __slots__ = ("_fd", "_watcher")

    def __init__(self, watcher: Watcher, fd: int) -> None:
        self._watcher = watcher
        self._fd = fd

    def cancel(self) -> None:
        """Forget the callback and stop watching the descriptor (before you close it)."""
        self._watcher.unwatch_readable(self._fd)


class FileWatch:
    """A callback on one file's writes, from :meth:`Watcher.watch_file`."""

    __slots__ = ("callback", "once", "wd")

    def __init__(self, wd: int, callback: Callback, once: bool = False) -> None:
        self.wd = wd
        self.callback = callback
        self.once = once  # called back at most once, then forgotten


class Watcher:
    """Runs callbacks on the watcher thread when processes exit, files grow or time is up.

    Callbacks must be quick and must not block; an exception in one is logged, never
    propagated, so one job cannot stop the others from being watched.
    """

    def __init__(self, name: str = "jobmagic-watcher") -> None:
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._inotify = inotify_simple.INotify(nonblocking=True)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._epoll.register(self._inotify.fileno(), select.EPOLLIN)
        # Guards the three registries below (and epoll registrations of `_readable`);
        # callbacks run without it held.
        self._lock = threading.Lock()
        self._readable: dict[int, Callback] = {}
        self._files: dict[int, list[FileWatch]] = {}
        # The watch descriptors whose kernel watch is IN_ONESHOT: the kernel drops them
        # after their first event, so their whole entry in _files goes with it.
        self._oneshot: set[int] = set()
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._closed = False
        self._iteration = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- registration (any thread) ---------------------------------------------------
    @property
    def iteration(self) -> int:
        """Counts the thread's wake-ups: callbacks of one wake-up see the same value."""
        return self._iteration

    def watch_readable(self, fd: int, callback: Callback) -> ReadableWatch:
        """Call ``callback`` once when ``fd`` becomes readable (a pidfd: its process exited)."""
        # The registry and epoll change together under the lock: a descriptor number that
        # is closed and reused must never lose its new registration to the old one's end.
        with self._lock:
            self._readable[fd] = callback
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        return ReadableWatch(self, fd)

    def unwatch_readable(self, fd: int) -> None:
        """Forget the callback of ``watch_readable(fd)``, if it has not run (see ReadableWatch)."""
        with self._lock:
            if self._readable.pop(fd, None) is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)

    def watch_file(self, path: str, callback: Callback, *, once: bool = False) -> FileWatch:
        """Call ``callback`` after writes to ``path`` until ``unwatch_file``.

        ``once``: call it at most once, after the first write from now on; the watch then
        ends by itself (``unwatch_file`` is still allowed). Where no other watch of this
        watcher is on the file, the kernel then reports only that first write
        (``IN_ONESHOT``): a file written at full speed costs one event per arming, not
        one per ``write()`` queued until this thread reads them.
        """
        with self._lock:
            wd = -1
            if once:
                try:
                    wd = self._inotify.add_watch(path, _WATCH_MASK | _ONESHOT | _MASK_CREATE)
                except FileExistsError:
                    pass  # watched already: that watch is shared, made persistent below
                else:
                    self._oneshot.add(wd)
            if wd < 0:
                # Persistent (or shared with other watches on the same file: an inode has
                # one mask per inotify descriptor, and the others may want every event).
                wd = self._inotify.add_watch(path, _WATCH_MASK)
                self._oneshot.discard(wd)
            watch = FileWatch(wd, callback, once)
            self._files.setdefault(wd, []).append(watch)
        return watch

    def unwatch_file(self, watch: FileWatch) -> None:
        """Stop calling a file watch's callback; the last one removes the inotify watch."""
        with self._lock:
            self._unwatch_locked(watch)

    def _unwatch_locked(self, watch: FileWatch) -> None:
        watches = self._files.get(watch.wd, [])
        if watch in watches:
            watches.remove(watch)
        if not watches and self._files.pop(watch.wd, None) is not None:
            self._oneshot.discard(watch.wd)
            # The file may be gone, and the kernel then dropped the watch already.
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(watch.wd)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        """Call ``callback`` after ``delay`` seconds (monotonic clock)."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._lock:
            heapq.heappush(self._timers, (timer.deadline, next(self._sequence), timer))
            # Under the lock: the thread closes the descriptor (under it) once closed.
            if self._timers[0][2] is timer and not self._closed:
                os.eventfd_write(self._wake_fd, 1)
        return timer

    def call_soon(self, callback: Callback) -> bool:
        """Call ``callback`` on the thread soon; False (and nothing scheduled) once closed."""
        timer = Timer(time.monotonic(), callback)
        with self._lock:
            if self._closed:
                return False
            heapq.heappush(self._timers, (timer.deadline, next(self._sequence), timer))
            os.eventfd_write(self._wake_fd, 1)
            return True

    def close(self) -> None:
        """End the thread and release its descriptors (pending callbacks are dropped)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Under the lock: the thread, seeing _closed, closes the descriptor under it.
            os.eventfd_write(self._wake_fd, 1)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                _log.warning("jobmagic watcher did not end within 10 s (a callback blocks)")

    @property
    def thread(self) -> threading.Thread:
        """The watcher thread."""
        return self._thread

    # -- the thread ----------------------------------------------------------------
    def _next_timeout(self) -> float:
        with self._lock:
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return -1.0
            return min(_MAX_SLEEP, max(0.0, self._timers[0][0] - time.monotonic()))

    def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                self._run_once()
                failures = 0
            except Exception:  # noqa: BLE001 - the one thread that sees jobs end must live on
                if failures == 0:
                    _log.exception("jobmagic watcher hit an unexpected error; it carries on")
                failures += 1
                # The same fault again and again: back off rather than spin, waiting on
                # the wake-up descriptor (close() ends the wait at once; a wake-up left
                # from before is dropped: the next poll reads the timers afresh).
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
                select.select([self._wake_fd], [], [], 0.001 * 2 ** min(failures, 10))
        with self._lock:  # close() and call_later() write to the wake-up descriptor under it
            self._epoll.close()
            self._inotify.close()
            os.close(self._wake_fd)

    def _run_once(self) -> None:
        events = self._epoll.poll(self._next_timeout())
        if self._closed:
            return
        self._iteration += 1
        for fd, _mask in events:
            if fd == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            elif fd == self._inotify.fileno():
                self._dispatch_file_events()
            else:
                self._dispatch_readable(fd)
        self._dispatch_timers()

    def _dispatch_readable(self, fd: int) -> None:
        with self._lock:
            callback = self._readable.get(fd)
            if callback is None:
                return
            if not _readable_now(fd):
                # A stale event: the descriptor was closed and its number reused by a new
                # watch after epoll reported it. Re-arm the new watch instead.
                self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
                return
            del self._readable[fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        _run_callback(callback)

    def _dispatch_file_events(self) -> None:
        wds = {event.wd for event in self._inotify.read(timeout=0)}
        overflowed = _OVERFLOW_WD in wds
        if overflowed:
            # The queue overflowed and events were lost: any file may have been written.
            with self._lock:
                wds = set(self._files)
        for wd in wds:
            with self._lock:
                watches = list(self._files.get(wd, ()))
                if wd in self._oneshot:
                    # The kernel dropped this watch with its one event: forget it whole.
                    self._oneshot.discard(wd)
                    self._files.pop(wd, None)
                    if overflowed:  # it may not have fired: end it here
                        with contextlib.suppress(OSError):
                            self._inotify.rm_watch(wd)
                else:  # shared with persistent watches: only the one-shot ones end
                    for watch in watches:
                        if watch.once:
                            self._unwatch_locked(watch)
            for watch in watches:
                _run_callback(watch.callback)

    def _dispatch_timers(self) -> None:
        now = time.monotonic()
        due: list[Timer] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for timer in due:
            if not timer.cancelled:
                timer.cancelled = True
                _run_callback(timer.callback)


def _readable_now(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _run_callback(callback: Callback) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - a failing callback must not end the watcher
        _log.exception("jobmagic watcher callback failed")
