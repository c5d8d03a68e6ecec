r"""A logging handler that shows a job's output in a widget, throttled.

``OutputWidgetHandler`` keeps a bounded terminal view of what it was fed (the last lines,
with ``\r`` progress bars collapsed to their latest state) and replaces the widget's
content with that tail at most ~10 times a second, only when the view changed. It never
sends one message per line and never uses ``Output.append_stdout`` (which resends the
whole output on every call) or ``with out:`` (which sends output to the wrong cell when
used from a thread).
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from typing import Any

import ipywidgets

from jobmagic.terminal_text import TailBuffer

__all__ = ["OutputWidgetHandler", "ansi_to_html"]

# One escape sequence: CSI (group 1 = parameters, group 2 = final byte), OSC (ended by
# BEL or ST, or cut off by the end of the tail), or a two-byte escape.
_ESCAPE = re.compile(
    r"\x1b(?:\[([0-?]*)[ -/]*(?:([@-~])|$)|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]|$)"
)
# Control characters other than tab and newline show as boxes or nothing: drop them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# The 16 base colours of JupyterLab's ANSI palette: readable on light and dark themes.
_PALETTE = (
    "#3e424d", "#e75c58", "#00a250", "#ddb62b", "#208ffb", "#d160c4", "#60c6c8", "#c5c1b4",
    "#282c36", "#b22b31", "#007427", "#b27d12", "#0065ca", "#a03196", "#258f8f", "#a1a6b2",
)  # fmt: skip

_FLUSH_WAIT = 5.0  # seconds flush() waits for the flush thread at most

# Scroll container whose scroll origin is the bottom (column-reverse), so replacing the
# content keeps the newest lines in view instead of jumping back to the top.
_BOX_STYLE = (
    "display:flex;flex-direction:column-reverse;max-height:24em;overflow-y:auto;"
    "margin:0.2em 0 0.4em 0;border-left:3px solid #9e9e9e;padding-left:0.5em"
)
_PRE_STYLE = (
    "margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px;line-height:1.3;"
    "font-family:var(--jp-code-font-family,var(--vscode-editor-font-family,monospace))"
)


_BASE_COLORS = 16  # xterm 256-colour indexes: 16 base colours, a 6x6x6 cube, 24 greys
_CUBE_END = 232
_COLOR_COUNT = 256
_EXTENDED_COLOR = {38: "fg", 48: "bg"}  # ESC[38;5;Nm, ESC[38;2;R;G;Bm and the same for 48
_MODE_256 = 5
_MODE_RGB = 2


def _sgr_table() -> dict[int, tuple[tuple[str, Any], ...]]:
    """SGR code -> the (attribute, value) pairs it sets; 0 (reset) is handled apart."""
    table: dict[int, tuple[tuple[str, Any], ...]] = {
        1: (("bold", True),),
        2: (("dim", True),),
        3: (("italic", True),),
        4: (("underline", True),),
        7: (("inverse", True),),
        22: (("bold", False), ("dim", False)),
        23: (("italic", False),),
        24: (("underline", False),),
        27: (("inverse", False),),
        39: (("fg", None),),
        49: (("bg", None),),
    }
    for i in range(8):
        table[30 + i] = (("fg", _PALETTE[i]),)
        table[90 + i] = (("fg", _PALETTE[8 + i]),)
        table[40 + i] = (("bg", _PALETTE[i]),)
        table[100 + i] = (("bg", _PALETTE[8 + i]),)
    return table


_SGR = _sgr_table()


def _color_256(n: int) -> str | None:
    """Return the CSS colour of xterm 256-colour index ``n`` (None when out of range)."""
    if 0 <= n < _BASE_COLORS:
        return _PALETTE[n]
    if n < _CUBE_END:
        n -= _BASE_COLORS
        levels = [0 if c == 0 else 55 + 40 * c for c in (n // 36, n // 6 % 6, n % 6)]
        return "#{:02x}{:02x}{:02x}".format(*levels)
    if n < _COLOR_COUNT:
        grey = 8 + 10 * (n - _CUBE_END)
        return f"#{grey:02x}{grey:02x}{grey:02x}"
    return None


class _Style:
    """The SGR state of the text being rendered (colours and attributes)."""

    __slots__ = ("bg", "bold", "dim", "fg", "inverse", "italic", "underline")

    def __init__(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = self.dim = self.italic = self.underline = self.inverse = False

    def reset(self) -> None:
        """Go back to the default look (SGR 0)."""
        self.fg = self.bg = None
        self.bold = self.dim = self.italic = self.underline = self.inverse = False

    def apply(self, params: str) -> None:
        """Update the state from the parameters of one ``ESC [ ... m`` sequence."""
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")]
        i = 0
        while i < len(codes):
            code = codes[i]
            i += 1
            if code == 0:
                self.reset()
            elif code in _EXTENDED_COLOR:
                color, i = _extended_color(codes, i)
                setattr(self, _EXTENDED_COLOR[code], color)
            else:
                for name, value in _SGR.get(code, ()):
                    setattr(self, name, value)

    def css(self) -> str:
        """Return the inline CSS of this state ("" for the default look)."""
        fg, bg = (self.bg, self.fg) if self.inverse else (self.fg, self.bg)
        if self.inverse:
            fg = fg or "var(--jp-layout-color0,#fff)"
            bg = bg or "var(--jp-content-font-color0,#000)"
        parts = []
        if fg:
            parts.append(f"color:{fg}")
        if bg:
            parts.append(f"background-color:{bg}")
        if self.bold:
            parts.append("font-weight:bold")
        if self.dim:
            parts.append("opacity:0.7")
        if self.italic:
            parts.append("font-style:italic")
        if self.underline:
            parts.append("text-decoration:underline")
        return ";".join(parts)


def _extended_color(codes: list[int], i: int) -> tuple[str | None, int]:
    """Read the colour after a 38/48 at ``codes[i:]``; return it and the next index."""
    mode = codes[i] if i < len(codes) else None
    if mode == _MODE_256 and i + 1 < len(codes):
        return _color_256(codes[i + 1]), i + 2
    if mode == _MODE_RGB and i + 3 < len(codes):
        r, g, b = (min(max(c, 0), 255) for c in codes[i + 1 : i + 4])
        return f"#{r:02x}{g:02x}{b:02x}", i + 4
    return None, i + 1


def ansi_to_html(text: str) -> str:
    """Render terminal text with ANSI SGR colours as HTML (escaped, no wrapper element).

    Colours and bold/dim/italic/underline/inverse become ``<span style=...>``; other
    escape sequences (cursor moves, erase-line, titles) and control characters other than
    tab and newline are dropped. Everything else is HTML-escaped.

    Parameters
    ----------
    text : str
        Decoded terminal output, for instance ``TailBuffer.text()``.

    Returns
    -------
    str
        HTML safe to put inside a ``<pre>``.
    """
    out: list[str] = []
    style = _Style()
    css = ""
    pos = 0
    for match in _ESCAPE.finditer(text):
        _append_segment(out, text[pos : match.start()], css)
        pos = match.end()
        if match.group(2) == "m":
            style.apply(match.group(1))
            css = style.css()
    _append_segment(out, text[pos:], css)
    return "".join(out)


def _append_segment(out: list[str], segment: str, css: str) -> None:
    segment = _CONTROL.sub("", segment)
    if not segment:
        return
    escaped = html.escape(segment, quote=False)
    out.append(f'<span style="{css}">{escaped}</span>' if css else escaped)


def render_tail_html(text: str) -> str:
    """Wrap ``ansi_to_html(text)`` in the bottom-anchored scroll box the widgets show."""
    body = ansi_to_html(text)
    return f'<div style="{_BOX_STYLE}"><pre style="{_PRE_STYLE}">{body}</pre></div>'


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
        self.flush_count = 0  # widget updates made so far (read by tests and benchmarks)
        # Guards every field below and flush_count. The flush thread waits on it for new
        # text and for the end of the throttle interval; flush() waits on it for the
        # flush thread. (logging's own self.lock only serialises emit() calls.)
        self._cond = threading.Condition(threading.Lock())
        self._buffer = TailBuffer(max_lines=tail_lines, max_line_chars=max_line_chars)
        #: It shows only the end of the output: a job's engine may skip older bytes that
        #: outrun it (see ``Worker.add_handler``). Enough for every line it can show.
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
        value = render_tail_html(text)
        self.widget.value = value
        return len(value)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
