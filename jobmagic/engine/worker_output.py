"""A Worker's output: its log read whole, its tail, a live stream, logging handlers.

A mixin of :class:`~jobmagic.engine.worker.Worker` (its own module to keep that one
readable in a sitting); every method is the Worker's.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

from jobmagic.text import terminal

if TYPE_CHECKING:
    from .binding import JobBinding
    from .lifecycle import JobLifecycle


class WorkerOutput:
    """The output part of ``Worker``."""

    if TYPE_CHECKING:

        @property
        def log_path(self) -> Path:
            """The Worker's ``log_path``."""
            ...

        def _bound(self) -> JobBinding:
            """The Worker's ``_bound``."""
            ...

        def _owned_job(self) -> JobLifecycle | None:
            """The Worker's ``_owned_job``."""
            ...

    def output(self) -> bytes:
        """Everything the job has written so far, byte for byte."""
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 20) -> str:
        r"""The last ``lines`` lines as a terminal would show them (``\r`` collapsed)."""
        try:
            return terminal.tail_of_log(self.log_path, lines)
        except FileNotFoundError:
            return ""

    def stream(self, offset: int = 0, chunk_size: int = 65536) -> Generator[bytes, None, None]:
        """Yield the log from byte ``offset``, then live output until the job has ended.

        Any number of readers may stream at once; each has its own position. The iterator
        ends once the job has ended and every byte was delivered.

        Raises
        ------
        JobmagicError
            For another kernel's job that still runs (adopt it first).
        """
        self._owned_job()
        return self._bound().feed.stream(offset, chunk_size)

    def add_handler(
        self,
        handler: logging.Handler,
        backlog_bytes: int = 0,
        tail_bytes: int | None = None,
        interval: float | None = None,
    ) -> None:
        """Attach a logging handler to this job's logger and feed it the job's output.

        The log is read for handlers only while one is attached this way. Records carry
        the decoded text (``record.getMessage()``), the raw bytes (``record.data``) and
        ``record.job_id``; output arrives in batches (every 50 ms, chunks <= 4 MiB).

        Parameters
        ----------
        handler:
            The handler; it receives output written from now on (from the first byte if
            the job has not started yet).
        backlog_bytes:
            Also hand it up to this many bytes of what was written before (starting at a
            line boundary), with nothing lost or repeated between backlog and live output.
        tail_bytes:
            The handler shows only this many bytes of the output's end (None: it wants
            everything). While every handler says so, output that outruns them is skipped
            up to the last ``tail_bytes``; the first record after a skip has
            ``record.skipped_bytes``.
        interval:
            While output keeps coming, the handler needs a batch at most every
            ``interval`` seconds (None: every 50 ms); a write after at least
            ``interval`` seconds without a batch still reaches it within 50 ms. A job's
            batches follow its most eager handler. For a handler that shows the output
            at most so often (a throttled widget): batches it could not show are not read.
        """
        self._bound().feed.add_handler(handler, backlog_bytes, tail_bytes, interval)

    def remove_handler(self, handler: logging.Handler) -> None:
        """Detach a handler added with :meth:`add_handler`."""
        self._bound().feed.remove_handler(handler)
