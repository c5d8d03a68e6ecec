"""inotify on the server's event loop: file and directory writes become callbacks.

One inotify descriptor per server, read by the asyncio loop (``loop.add_reader``) when the
kernel has events for it; nothing runs while nothing is written. A watch costs one kernel
watch descriptor and exists only while some callback wants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from inotify_simple import INotify, flags

#: Called with the name inside a watched directory ("" for a watched file) and the mask.
FileCallback = Callable[[str, int], None]


class FileEvents:
    """Callbacks for inotify events, dispatched from an asyncio loop.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop that reads the inotify descriptor and runs the callbacks. All methods must
        be called from this loop's thread.
    log : logging.Logger
        Where callback errors go (a failing callback never stops the others).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None:
        self._loop = loop
        self._log = log
        self._inotify = INotify(nonblocking=True)
        # Watch descriptor -> callbacks. Two paths naming one inode share a descriptor,
        # so callbacks are kept per descriptor, not per path.
        self._callbacks: dict[int, list[FileCallback]] = {}
        self._closed = False
        loop.add_reader(self._inotify.fileno(), self._read)

    def watch(self, path: Path, mask: int, callback: FileCallback) -> Callable[[], None]:
        """Call ``callback(name, mask)`` for each event of ``mask`` on ``path``.

        Parameters
        ----------
        path : Path
            A file or a directory (for a directory, ``name`` is the entry's name).
        mask : int
            ``inotify_simple.flags`` ORed together. Every watch on one inode must use the
            same mask (the kernel keeps one mask per inode and descriptor).
        callback : FileCallback
            Runs on the loop's thread; keep it quick.

        Returns
        -------
        Callable[[], None]
            Removes this callback; the kernel watch goes with the last callback.

        Raises
        ------
        OSError
            ``path`` does not exist (``FileNotFoundError``) or cannot be watched.
        """
        wd = self._inotify.add_watch(path, mask)
        self._callbacks.setdefault(wd, []).append(callback)

        def unwatch() -> None:
            callbacks = self._callbacks.get(wd)
            if callbacks is None or callback not in callbacks:
                return
            callbacks.remove(callback)
            if not callbacks:
                del self._callbacks[wd]
                if not self._closed:
                    # OSError: the kernel already dropped the watch (the file was deleted).
                    with contextlib.suppress(OSError):
                        self._inotify.rm_watch(wd)

        return unwatch

    def close(self) -> None:
        """Stop reading events and release the descriptor; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._callbacks.clear()
        if not self._loop.is_closed():
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()

    def _read(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            return
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                # Events were lost: tell everyone something may have changed.
                self._log.warning("jobmagic: inotify queue overflowed")
                for wd in list(self._callbacks):
                    self._dispatch(wd, "", flags.Q_OVERFLOW)
                continue
            self._dispatch(event.wd, event.name, event.mask)
            if event.mask & flags.IGNORED:
                # The kernel dropped the watch (file deleted): callbacks heard it once.
                self._callbacks.pop(event.wd, None)

    def _dispatch(self, wd: int, name: str, mask: int) -> None:
        for callback in list(self._callbacks.get(wd, ())):
            try:
                callback(name, mask)
            except Exception:  # noqa: BLE001 - one failing callback must not starve the rest
                self._log.exception("jobmagic: error in a file event callback")
