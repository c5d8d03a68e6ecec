"""A local job's status file: how it ended, on disk for whoever finds it ended.

``<home>/status/<id>-<generation>.status`` (0600), made empty when the job starts. When
the job's leader ends, whoever started it writes one line, the shell's ``$?`` (0-255;
128+N means "killed by signal N"): the spawner (``spawner.py``) that reaped the leader,
which made the file just after the leader's start, or the wrapper (``wrapper.py``) around
the command, for which the launch made it. A stop appends ``STOP_MARK`` before it signals
(never making the file): a wrapper that is still starting up finds the file not empty and
runs nothing.

The spawner writes the status just after the leader's exit, so a process that saw the
leader exit (a pidfd, ``/proc``) may look before it is written; while the spawner that
will write it lives, ``await_status`` and ``StatusWatch`` wait for it (inotify, the
spawner's pidfd: no polling).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import inotify_simple

from jobmagic.core.files import create_private_file
from jobmagic.core.process_identity import open_pidfd

from ..base import Cancellable, Reactor

#: A shell reports "killed by signal N" as this plus N.
_SHELL_SIGNAL_BASE = 128
#: What a stop appends to the status file; a wrapper that finds the file not empty when
#: it starts runs nothing. Its exit status, written later, is the file's first line.
STOP_MARK = b"stop\n"
#: The longest ``probe`` waits for a live spawner to write a status it owes (seconds):
#: it writes one within microseconds of the leader's exit, unless it is stopped.
STATUS_WAIT = 2.0
_WRITTEN = inotify_simple.flags.CLOSE_WRITE | inotify_simple.flags.MOVED_TO


def prepare_status_file(path: Path) -> None:
    """Create the (empty) status file 0600 for a wrapper: its ``>`` keeps the mode."""
    os.close(create_private_file(path))


def stop_marker_path(status_path: str | os.PathLike[str]) -> str:
    """Where wrappers before 0.2 looked for a stop marker file (removed with the job)."""
    return os.fspath(status_path) + ".stop"


def leave_stop_marker(status_path: str | os.PathLike[str]) -> None:
    """Tell a wrapper that may still be starting up not to run its command (before a signal).

    An append to the status file, which the launch made: no file is created (creating
    one costs up to a millisecond on some filesystems, a thousand times in a stop_all).
    Appended, it never clobbers an exit status written already; written before the
    status, it is truncated away, or left after the status's first line.
    """
    # Without the marker only a wrapper still starting up misses the stop; the signal
    # that follows reaches everything else (a spawned job runs before anyone can stop it).
    with contextlib.suppress(OSError):
        fd = os.open(status_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, STOP_MARK)
        finally:
            os.close(fd)


def exit_code_from_shell_status(status: int) -> int:
    """Turn a shell's ``$?`` into a ``Popen.returncode``-style exit code.

    A shell reports a child killed by signal N as 128+N; that becomes -N. A command that
    itself exits with such a value reads as killed, the same ambiguity ``sh -c`` has.
    """
    if _SHELL_SIGNAL_BASE < status < _SHELL_SIGNAL_BASE + signal.NSIG:
        return -(status - _SHELL_SIGNAL_BASE)
    return status


def read_status_file(path: str | os.PathLike[str]) -> int | None:
    """The exit code written to a job's status file, or None when none is (yet).

    The status is the file's first line; a stop's mark (``STOP_MARK``) may follow it, or
    be all there is (no status yet).
    """
    try:
        with open(path, "rb") as f:
            text = f.read(4096)
    except FileNotFoundError:
        return None
    first, newline, _ = text.partition(b"\n")
    if not newline:
        return None
    try:
        return exit_code_from_shell_status(int(first))
    except ValueError:
        return None


def status_written_at(path: str | os.PathLike[str]) -> float | None:
    """When the status file was written (epoch seconds), None if it is missing."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def remove_status_files(path: str | os.PathLike[str]) -> None:
    """Delete a finished job's status file and stop marker."""
    for name in (os.fspath(path), stop_marker_path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def spawner_of(ref: object) -> tuple[int, int] | None:
    """The (pid, start time) of the spawner a job's ``backend_ref`` names, if any."""
    if not isinstance(ref, dict):
        return None
    spawner: Any = ref.get("spawner")
    if (
        isinstance(spawner, list)
        and len(spawner) == 2  # noqa: PLR2004 - [pid, start]
        and all(isinstance(value, int) for value in spawner)
    ):
        return spawner[0], spawner[1]
    return None


# -- waiting for a status a live spawner owes --------------------------------------------


def _watch_status(path: str) -> inotify_simple.INotify | None:
    """An inotify on the status file's directory (the spawner makes the file at the end)."""
    notify = inotify_simple.INotify(nonblocking=True)
    try:
        notify.add_watch(os.path.dirname(path) or ".", _WRITTEN)
    except OSError:  # the job home is gone: nothing will be written
        notify.close()
        return None
    return notify


def await_status(path: str, spawner: tuple[int, int], timeout: float = STATUS_WAIT) -> int | None:
    """The status in ``path``, once written, while ``spawner`` lives (at most ``timeout`` s).

    None when the spawner died without writing it, or did not within ``timeout``.
    """
    status = read_status_file(path)
    if status is not None:
        return status
    pidfd = open_pidfd(*spawner)
    if pidfd is None:
        return read_status_file(path)
    notify = _watch_status(path)
    try:
        deadline = time.monotonic() + timeout
        while (status := read_status_file(path)) is None and notify is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([notify.fileno(), pidfd], [], [], left)
            if pidfd in ready:
                return read_status_file(path)
            with contextlib.suppress(BlockingIOError):
                notify.read(timeout=0)
        return status
    finally:
        os.close(pidfd)
        if notify is not None:
            notify.close()


class StatusWatch:
    """Calls back on a reactor once a status file is written, or its spawner has died.

    For a job another process follows: its leader has exited, and the spawner that will
    write the status still lives.
    """

    def __init__(
        self, reactor: Reactor, path: str, spawner: tuple[int, int], callback: Callable[[], None]
    ) -> None:
        self._reactor = reactor
        self._path = path
        self._callback = callback
        # Guards the fields below (close() may come from any thread).
        self._lock = threading.Lock()
        self._done = False
        self._watches: list[Cancellable] = []
        self._notify = _watch_status(path)
        self._pidfd = open_pidfd(*spawner)
        with self._lock:
            self._arm()

    def _arm(self) -> None:
        """Watch the file and the spawner, or call back soon when done (lock held)."""
        for watch in self._watches:
            watch.cancel()
        self._watches = []
        notify, pidfd = self._notify, self._pidfd
        if notify is None or pidfd is None or read_status_file(self._path) is not None:
            self._watches.append(self._reactor.call_later(0, self._finish))
            return
        self._watches = [
            self._reactor.watch_readable(fd, self._changed) for fd in (notify.fileno(), pidfd)
        ]

    def _changed(self) -> None:
        with self._lock:
            if self._done or self._notify is None:
                return
            with contextlib.suppress(BlockingIOError):
                self._notify.read(timeout=0)
            if self._pidfd is not None and _readable_now(self._pidfd):
                self._watches.append(self._reactor.call_later(0, self._finish))
                return
            self._arm()  # the status, or only a stop's mark: looked at again

    def _finish(self) -> None:
        if self._release():
            self._callback()

    def close(self) -> None:
        """Stop watching (and release the descriptors); the callback is not called."""
        self._release()

    def _release(self) -> bool:
        """Release everything; False when it was released before."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            watches, self._watches = self._watches, []
            notify, self._notify = self._notify, None
            pidfd, self._pidfd = self._pidfd, None
        for watch in watches:
            watch.cancel()
        if notify is not None:
            notify.close()
        if pidfd is not None:
            os.close(pidfd)
        return True


def _readable_now(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
