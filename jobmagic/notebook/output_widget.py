r"""A logging handler that shows a job's output in a widget, throttled.

``OutputWidgetHandler`` keeps a bounded terminal view of what it was fed (the last lines,
with ``\r`` progress bars collapsed to their latest state); an ``OutputFlusher`` (one
thread and one budget for every handler of the process) replaces the widget's content
with that tail at most ~10 times a second, only when the view changed. What arrives
between two updates is only kept (text the engine skipped past is dropped unread) and
turned into the view when the update is made: a job that outruns the budget costs a
record's handling, not a terminal pass over its text, per record. It never sends one
message per line and never uses ``Output.append_stdout`` (which resends the whole output
on every call) or ``with out:`` (which sends output to the wrong cell when used from a
thread).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ipywidgets

from jobmagic.text.ansi_html import ansi_to_html, render_tail_html
from jobmagic.text.terminal import TailBuffer

from .output_flusher import OutputFlusher, OutputSlot, default_flusher

__all__ = ["OutputWidgetHandler"]

_FLUSH_WAIT = 5.0  # seconds flush() waits for the flusher at most
# The text as ``render_tail_html`` sets it, without its scroll box (for scroll_box=False).
_PRE_STYLE = (
    "margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px;line-height:1.3;"
    "font-family:var(--jp-code-font-family,var(--vscode-editor-font-family,monospace))"
)


class OutputWidgetHandler(logging.Handler):
    """Show the text of log records in an ``ipywidgets.HTML``, throttled and bounded.

    ``emit()`` only keeps the record's text and marks the output dirty in its
    ``OutputFlusher``, whose one thread (shared by every handler attached to it) builds
    the bounded terminal view from what was kept and replaces the widget's value with the
    rendered tail, at most every ``min_interval`` seconds and only when the view changed.
    Larger tails are sent less often, so that this handler sends at most about
    ``max_bytes_per_second`` bytes per second, and all the handlers of one flusher
    together at most the flusher's own budget (the busier they are, the less often each
    is updated). Memory stays bounded whatever is fed.

    Attach it to a job with ``worker.add_handler(handler)``, detach it with
    ``worker.remove_handler(handler)``, and ``close()`` it when done. The flusher's thread
    is the widget's only writer; a plain ``logging.Logger`` works as well as a job's.

    Parameters
    ----------
    widget : ipywidgets.HTML, optional
        The widget to write into; None creates one (``handler.widget``).
    tail_lines : int
        How many lines are shown (the last ones); default 200.
    max_line_chars : int
        Longer lines keep only their last ``max_line_chars`` characters; default 1,024.
    max_chars : int
        At most this many characters of the tail are shown (whole lines); default 65,536.
    min_interval : float
        Seconds between two updates of the widget, at least; default 0.1 (10 per second).
        The flusher's own interval holds too.
    max_bytes_per_second : int
        Soft cap on the bytes of HTML this handler sends per second; default 100,000.
        The flusher's budget, shared with its other handlers, holds too.
    scroll_box : bool
        True (default): the HTML carries its own scroll box, which follows the newest
        line. False: only the text, for a widget whose Layout makes it the scroll box
        (as the ``JobPanel`` rows do): a box that outlives the updates keeps the user's
        scroll position when they scroll up, where one replaced at each update cannot.
    level : int
        The handler's logging level.
    flusher : OutputFlusher, optional
        The flusher that updates the widget; None: the process's shared one
        (``default_flusher()``), as for every handler of a ``JobPanel``.
    """

    def __init__(
        self,
        widget: Any = None,
        *,
        tail_lines: int = 200,
        max_line_chars: int = 1024,
        max_chars: int = 65536,
        min_interval: float = 0.1,
        max_bytes_per_second: int = 100_000,
        scroll_box: bool = True,
        level: int = logging.NOTSET,
        flusher: OutputFlusher | None = None,
    ) -> None:
        if tail_lines < 1:
            raise ValueError(f"tail_lines must be at least 1, not {tail_lines}")
        if min_interval < 0 or max_bytes_per_second <= 0 or max_chars < 1:
            raise ValueError("min_interval must be >= 0, max_* must be > 0")
        super().__init__(level)
        self.widget: Any = widget if widget is not None else ipywidgets.HTML()
        self.tail_lines = tail_lines
        self.max_chars = max_chars
        self.min_interval = min_interval
        self.max_bytes_per_second = max_bytes_per_second
        self.scroll_box = scroll_box
        self.flusher = flusher if flusher is not None else default_flusher()
        self.flush_count = 0  # widget updates made so far (read by tests and benchmarks)
        # Guards _buffer, _pending*, _version, _slot, _closed and flush_count: emit() and
        # feed() (engine threads), the flusher's thread (reading the view to push it),
        # text(), flush() and close(). Never held while waiting for the flusher, which
        # takes it to push. (logging's own self.lock only serialises emit() calls.)
        self._lock = threading.Lock()
        self._buffer = TailBuffer(max_lines=tail_lines, max_line_chars=max_line_chars)
        #: It shows only this many bytes of the output's end, enough for every line it
        #: can show: pass it as ``Worker.add_handler(handler, tail_bytes=...)`` so that
        #: the engine may skip older output that outruns it.
        self.tail_bytes = max(4 * max_chars, tail_lines * max_line_chars)
        # Text received and not yet fed to _buffer, oldest first; _pending_clear: the
        # buffer is to be cleared before it is fed. _version counts what was received:
        # the view is built from it only when it is read (text(), an update).
        self._pending: list[str] = []
        self._pending_chars = 0
        self._pending_clear = False
        self._version = 0  # 0: nothing received, what a new widget shows
        self._slot: OutputSlot | None = None  # attached to the flusher at the first change
        self._closed = False

    def emit(self, record: logging.LogRecord) -> None:
        """Feed the record's text (``record.getMessage()``) to the view; never blocks long."""
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - logging's contract: report through handleError
            self.handleError(record)
            return
        if getattr(record, "skipped_bytes", 0) and "\n" in text:
            # The engine skipped ahead: the first line is a fragment, and what the view
            # holds is no longer followed by what comes next.
            self._feed(text.partition("\n")[2], clear=True)
        else:
            self._feed(text)

    def feed(self, text: str) -> None:
        """Add decoded terminal text to the view (as if a record carried it)."""
        self._feed(text)

    def text(self) -> str:
        """Return the current view as plain text (ANSI codes kept)."""
        with self._lock:
            self._apply_pending()
            return str(self._buffer.text())

    def flush(self) -> None:
        """Show the current view now, outside the throttle; return once it is sent.

        The flusher's thread does the sending (it is the widget's only writer, so updates
        never arrive out of order); this waits at most ``_FLUSH_WAIT`` seconds for it.
        Called back from a widget update (on that thread), it returns at once: the view
        is pushed next anyway.
        """
        with self._lock:
            slot, version = self._slot, self._version
        if slot is not None:
            self.flusher.flush(slot, version, timeout=_FLUSH_WAIT)

    def close(self) -> None:
        """Detach from the flusher and from logging; the widget is left as it is.

        Once this returns the widget is not written again (an update under way is
        waited for, unless this is called back from it).
        """
        with self._lock:
            self._closed = True
            slot, self._slot = self._slot, None
        if slot is not None:
            self.flusher.detach(slot)
        super().close()

    def _feed(self, text: str, clear: bool = False) -> None:
        with self._lock:
            if self._closed or not (text or clear):
                return
            if clear:
                # What came before can no longer be shown: drop it without reading it.
                self._pending.clear()
                self._pending_chars = 0
                self._pending_clear = True
            if text:
                self._pending.append(text)
                self._pending_chars += len(text)
                if self._pending_chars > self.tail_bytes:
                    self._apply_pending()  # memory stays bounded between two updates
            self._version += 1
            if self._slot is None:
                self._slot = self.flusher.attach(
                    self._show_newer,
                    min_interval=self.min_interval,
                    max_bytes_per_second=self.max_bytes_per_second,
                    shown=0,
                )
            # Under our lock (its lock nests inside ours, never the other way round), so
            # that close() cannot detach in between.
            self.flusher.mark_dirty(self._slot)

    def _show_newer(self, shown: int) -> tuple[int, int]:
        """Push the view unless it is version ``shown`` (flusher thread only).

        Returns the version now shown and the bytes sent (0 when nothing was).
        """
        with self._lock:
            version = self._version
            if version == shown:
                return version, 0
            self._apply_pending()
            text = self._buffer.text()
        # Render and send without the lock: emit() never waits for the frontend.
        try:
            size = self._push(text)
        except Exception:  # a failed update must not end the updates
            logging.getLogger(__name__).exception("updating the output widget failed")
            size = 0
        with self._lock:
            self.flush_count += 1
        return version, size

    def _apply_pending(self) -> None:
        """Feed the text received since the view was last built into it (lock held)."""
        if self._pending_clear:
            self._buffer.clear()
            self._pending_clear = False
        for text in self._pending:
            self._buffer.feed(text)
        self._pending.clear()
        self._pending_chars = 0

    def _push(self, text: str) -> int:
        """Render ``text`` into the widget (flusher thread only); return the HTML's size."""
        if len(text) > self.max_chars:
            cut = text[-self.max_chars :]
            newline = cut.find("\n")
            text = cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut
        if self.scroll_box:
            value = render_tail_html(text)
        else:
            value = f'<pre style="{_PRE_STYLE}">{ansi_to_html(text)}</pre>'
        self.widget.value = value
        return len(value)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
