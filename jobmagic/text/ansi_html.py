"""ANSI terminal text as HTML: SGR colours and attributes become styled spans.

For the notebook widgets, which show a job's output tail as HTML. Everything but SGR
(cursor moves, erase-line, window titles) and control characters other than tab and
newline is dropped; the rest is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["ansi_to_html", "render_tail_html"]

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
