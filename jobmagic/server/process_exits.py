"""Process exits on the server's event loop, through pidfds.

A pidfd becomes readable when its process exits; the loop watches it like a socket, so
waiting for an exit costs nothing until it happens and needs neither a thread nor a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from jobmagic.core.process_identity import open_pidfd


class ProcessExits:
    """Run a callback once when a given process exits.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop that watches the pidfds and runs the callbacks. All methods must be called
        from this loop's thread.
    log : logging.Logger
        Where callback errors go.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None:
        self._loop = loop
        self._log = log
        # pidfd -> its cancel function, so close() can release every descriptor.
        self._watches: dict[int, Callable[[], None]] = {}

    def watch(
        self, pid: int | None, start: int | None, callback: Callable[[], None]
    ) -> Callable[[], None] | None:
        """Call ``callback()`` once when the process ``pid`` that started at ``start`` exits.

        Parameters
        ----------
        pid : int or None
            The process id; None means there is no process to watch.
        start : int or None
            Its start time in clock ticks since boot (``jobmagic.core.process_identity``);
            None means it was never recorded, and the process is not watched because a
            reused pid could not be told apart.

        Returns
        -------
        Callable[[], None] or None
            Cancels the watch (idempotent; the callback then never runs). None when the
            process is already gone or the pid now belongs to another process: the caller
            should act as if it had exited.

        Raises
        ------
        OSError
            The pidfd cannot be opened for another reason (e.g. out of descriptors).
        """
        pidfd = open_pidfd(pid, start)
        if pidfd is None:
            return None

        def cancel() -> None:
            if self._watches.pop(pidfd, None) is None:
                return
            if not self._loop.is_closed():
                self._loop.remove_reader(pidfd)
            os.close(pidfd)

        def exited() -> None:
            cancel()
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing callback must not break the loop's reader
                self._log.exception("jobmagic: error in a process exit callback")

        self._watches[pidfd] = cancel
        self._loop.add_reader(pidfd, exited)
        return cancel

    def close(self) -> None:
        """Cancel every watch; idempotent."""
        for cancel in list(self._watches.values()):
            cancel()
