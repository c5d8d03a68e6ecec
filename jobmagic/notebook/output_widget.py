r"""A logging handler that shows a job's output in a widget, throttled.

``OutputWidgetHandler`` keeps a bounded terminal view of what it was fed (the last lines,
with ``\r`` progress bars collapsed to their latest state) and replaces the widget's
content with that tail at most ~10 times a second, only when the view changed. It never
sends one message per line and never uses ``Output.append_stdout`` (which resends the
whole output on every call) or ``with out:`` (which sends output to the wrong cell when
used from a thread).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ipywidgets

from jobmagic.text.ansi_html import ansi_to_html, render_tail_html
from jobmagic.text.terminal import TailBuffer

__all__ = ["OutputWidgetHandler"]

_FLUSH_WAIT = 5.0  # seconds flush() waits for the flush thread at most
# The text as ``render_tail_html`` sets it, without its scroll box (for scroll_box=False).
_PRE_STYLE = (
    "margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px;line-height:1.3;"
    "font-family:var(--jp-code-font-family,var(--vscode-editor-font-family,monospace))"
)


class OutputWidgetHandler(logging.Handler):
    """Show the text of log records in an ``ipywidgets.HTML``, throttled and bounded.

    ``emit()`` only feeds a bounded terminal view and marks it dirty; a flush thread (one
    per handler, started by the first record) replaces the widget's value with the
    rendered tail at most every ``min_interval`` seconds and only when the view changed.
    Larger tails are sent less often so that one handler sends at most about
    ``max_bytes_per_second`` bytes per second. Memory stays bounded whatever is fed.

    Attach it to a job with ``worker.add_handler(handler)``, detach it with
    ``worker.remove_handler(handler)``, and ``close()`` it when done. The flush thread is
    the widget's only writer; a plain ``logging.Logger`` works as well as a job's.

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
    max_bytes_per_second : int
        Soft cap on the bytes of HTML one handler sends per second; default 100,000.
    scroll_box : bool
        True (default): the HTML carries its own scroll box, which follows the newest
        line. False: only the text, for a widget whose Layout makes it the scroll box
        (as the ``JobPanel`` rows do): a box that outlives the updates keeps the user's
        scroll position when they scroll up, where one replaced at each update cannot.
    level : int
        The handler's logging level.
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
        self.flush_count = 0  # widget updates made so far (read by tests and benchmarks)
        # Guards every field below and flush_count. The flush thread waits on it for new
        # text and for the end of the throttle interval; flush() waits on it for the
        # flush thread. (logging's own self.lock only serialises emit() calls.)
        self._cond = threading.Condition(threading.Lock())
        self._buffer = TailBuffer(max_lines=tail_lines, max_line_chars=max_line_chars)
        #: It shows only this many bytes of the output's end, enough for every line it
        #: can show: pass it as ``Worker.add_handler(handler, tail_bytes=...)`` so that
        #: the engine may skip older output that outruns it.
        self.tail_bytes = max(4 * max_chars, tail_lines * max_line_chars)
        self._version = self._buffer.version
        self._dirty = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._next_flush = 0.0  # time.monotonic() before which no flush happens
        self._shown_version = self._version  # the buffer version the widget shows
        # flush() wants this version shown outside the throttle. A version, not a flag:
        # a push already under way when flush() asks does not answer it.
        self._flush_version = self._version

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
            with self._cond:
                self._buffer.clear()
            text = text.partition("\n")[2]
        self.feed(text)

    def feed(self, text: str) -> None:
        """Add decoded terminal text to the view (as if a record carried it)."""
        if not text:
            return
        with self._cond:
            if self._closed:
                return
            self._buffer.feed(text)
            if self._buffer.version == self._version:
                return
            self._version = self._buffer.version
            if not self._dirty:
                self._dirty = True
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobmagic-output-flush", daemon=True
                )
                self._thread.start()

    def text(self) -> str:
        """Return the current view as plain text (ANSI codes kept)."""
        with self._cond:
            return str(self._buffer.text())

    def flush(self) -> None:
        """Show the current view now, outside the throttle; return once it is sent.

        The flush thread does the sending (it is the widget's only writer, so updates
        never arrive out of order); this waits at most ``_FLUSH_WAIT`` seconds for it.
        """
        with self._cond:
            if not self._dirty or self._closed or self._thread is None:
                return
            if self._thread is threading.current_thread():
                return  # called back from our own widget update: it flushes next anyway
            wanted = self._flush_version = self._version
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self._closed or self._shown_version >= wanted, timeout=_FLUSH_WAIT
            )

    def close(self) -> None:
        """Stop the flush thread and detach from logging; the widget is left as it is."""
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        super().close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._dirty:
                        delay = self._next_flush - time.monotonic()
                        if delay <= 0 or self._flush_version > self._shown_version:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                self._dirty = False
                version = self._version
                text = self._buffer.text()
            # Render and send without the lock: emit() never waits for the frontend.
            try:
                size = self._push(text)
            except Exception:  # a failed update must not end the updates
                logging.getLogger(__name__).exception("updating the output widget failed")
                size = 0
            with self._cond:
                self.flush_count += 1
                self._shown_version = version
                pause = max(self.min_interval, size / self.max_bytes_per_second)
                self._next_flush = time.monotonic() + pause
                self._cond.notify_all()

    def _push(self, text: str) -> int:
        """Render ``text`` into the widget (flush thread only); return the HTML's size."""
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
