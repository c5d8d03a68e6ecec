"""The server's asyncio loop as a ``Reactor``, so executions wait on it like on a kernel's."""

from __future__ import annotations

import asyncio
import logging

from jobmagic.backends.base import Callback


class _ReaderWatch:
    """A one-shot reader on the loop; ``cancel()`` removes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)


class LoopReactor:
    """Descriptor watches and timers on ``loop``; call it from the loop's thread only.

    Parameters
    ----------
    loop:
        The Jupyter server's event loop.
    log:
        Where errors in callbacks go (they never reach the loop).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None:
        self._loop = loop
        self._log = log
        self._iteration = 0

    @property
    def iteration(self) -> int:
        """Moves before every callback: callbacks here never share a round."""
        return self._iteration

    def watch_readable(self, fd: int, callback: Callback) -> _ReaderWatch:
        """Call ``callback`` once, when ``fd`` becomes readable."""
        watch = _ReaderWatch(self._loop, fd)

        def ready() -> None:
            watch.cancel()
            self._run(callback)

        self._loop.add_reader(fd, ready)
        return watch

    def call_later(self, delay: float, callback: Callback) -> asyncio.TimerHandle:
        """Call ``callback`` once, after ``delay`` seconds (a loop timer)."""
        return self._loop.call_later(delay, self._run, callback)

    def _run(self, callback: Callback) -> None:
        self._iteration += 1
        try:
            callback()
        except Exception:  # noqa: BLE001 - a failing callback must not break the loop's reader
            self._log.exception("jobmagic: error in a job watch callback")
