"""Showing a job's log in a cell: a snapshot of its end, then live output as it arrives.

`LivePrinter` writes output as a terminal would show it (progress bars collapsed to their
latest state); `log_snapshot` reads where a log ends, and ``Worker.stream(offset)``
continues from there.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import IO

from jobmagic.engine.worker import Worker
from jobmagic.text import terminal as terminal_text

#: On a terminal, ``%job logs --follow`` flushes a partial line (a progress bar) at most
#: this often, in seconds. In a kernel it never flushes by itself: ipykernel sends what
#: was written every 0.2 s, and explicit flushes there turn every later write into a
#: message of its own (Jupyter drops iopub traffic above 1,000 messages/s).
FOLLOW_FLUSH_INTERVAL = 0.1

#: ``%job logs`` without ``--tail`` shows at most this much of a log's end: more would
#: exceed what Jupyter lets through iopub (1 MB/s) and no one reads it in a cell anyway.
LOG_DISPLAY_BYTES = 512 * 1024


class LivePrinter:
    r"""Writes a job's output to a text stream as it arrives, as a terminal would show it.

    Carriage-return overwrites within what arrives are collapsed, so a progress bar costs
    one line update per chunk instead of every intermediate state; the line still being
    written is rewritten with a leading ``\r``, which Jupyter and terminals both render
    as "replace this line".

    Parameters
    ----------
    out : text stream
        Where to write (``sys.stdout`` in a cell).
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._decoder = terminal_text.incremental_decoder()
        self._current = ""  # the unfinished line, overwrites collapsed
        self._shown = ""  # what of it is on screen
        self._pending_cr = False  # a chunk ended in "\r": maybe half of "\r\n"
        self._flushed_at = 0.0  # time.monotonic() of the last flush
        try:
            self._terminal = out.isatty()
        except ValueError:  # a closed stream
            self._terminal = False

    def show(self, text: str) -> None:
        """Print display text (already decoded and collapsed); live output continues it."""
        if text:
            self._out.write(text)
            self._out.flush()
            self._current = self._shown = text.rpartition("\n")[2]

    def finish(self) -> None:
        """Print what a split character or an unfinished line held back, then end the line."""
        self.feed(b"", final=True)

    def feed(self, data: bytes, final: bool = False) -> None:
        """Print the text of ``data``; ``final`` flushes a split character and the last line."""
        text = self._decoder.decode(data, final=final)
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r") and not final:
            text = text[:-1]
            self._pending_cr = True
        pieces = text.replace("\r\n", "\n").split("\n")
        out: list[str] = []
        for finished in pieces[:-1]:
            out.append(self._update(terminal_text.collapse_line(self._current + finished)))
            out.append("\n")
            self._current = self._shown = ""
        self._current = terminal_text.collapse_line(self._current + pieces[-1])
        out.append(self._update(self._current))
        if final and self._shown:
            out.append("\n")
            self._current = self._shown = ""
        if any(out):
            self._out.write("".join(out))
        now = time.monotonic()
        if final or (self._terminal and now - self._flushed_at >= FOLLOW_FLUSH_INTERVAL):
            self._out.flush()
            self._flushed_at = now

    def _update(self, line: str) -> str:
        """Return the text that turns what is shown of the current line into ``line``."""
        shown, self._shown = self._shown, line
        if line.startswith(shown):
            return line[len(shown) :]
        return "\r" + line


def log_snapshot(worker: Worker, tail: int | None) -> tuple[str, int]:
    """Read the end of a job's log as display text, and the byte offset it reaches."""
    try:
        with worker.log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            start = max(0, size - LOG_DISPLAY_BYTES)
            log.seek(start)
            data = log.read(size - start)
    except FileNotFoundError:
        return "", 0
    text = terminal_text.collapse_carriage_returns(terminal_text.decode(data))
    if start > 0:
        # The first line was cut: drop it, and say where the rest is.
        text = text.partition("\n")[2]
        if tail is None:
            text = (
                f"[showing the last {LOG_DISPLAY_BYTES // 1024} KiB of {size} bytes; "
                f"the whole log is {worker.log_path}]\n" + text
            )
    if tail is not None:
        text = terminal_text.tail_lines(text, tail)
    return text, size


def follow(worker: Worker, tail: int | None, out: IO[str]) -> None:
    """Print the end of a job's log, then its output as it comes, until the job ends.

    Interrupting (KeyboardInterrupt: the kernel's interrupt) stops following and leaves
    the job as it is.

    Raises
    ------
    JobmagicError
        When the job cannot be followed here (another kernel's running job).
    """
    printer = LivePrinter(out)
    try:
        text, offset = log_snapshot(worker, tail)
        printer.show(text)
        with contextlib.closing(worker.stream(offset)) as chunks:
            for chunk in chunks:
                printer.feed(chunk)
    except KeyboardInterrupt:
        printer.finish()
        out.write(f"[stopped following job {worker.id}; it is still {worker.state.value}]\n")
        return
    except BaseException:
        printer.finish()  # what was shown ends its line before the error
        raise
    printer.finish()
