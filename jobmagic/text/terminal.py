r"""Turning raw log bytes into what a terminal would show: decoded, ``\r`` collapsed, tailed.

Logs stay byte-exact on disk; these helpers are for display only.
"""

from __future__ import annotations

import codecs
import os
import re
from collections import deque
from pathlib import Path


def decode(data: bytes) -> str:
    """Decode log bytes as UTF-8, replacing what is not valid."""
    return data.decode("utf-8", errors="replace")


def incremental_decoder() -> codecs.IncrementalDecoder:
    """A UTF-8 decoder for chunks that may split a character."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def collapse_line(line: str) -> str:
    r"""What a terminal shows for one line after its carriage returns: the latest overwrite.

    ``"10%\r50%\r100%"`` becomes ``"100%"``. A later shorter overwrite leaves the tail of
    a longer earlier one visible, as on a terminal.
    """
    if "\r" not in line:
        return line
    parts = line.split("\r")
    shown = ""
    for part in parts:
        if part:
            shown = part + shown[len(part) :]
    return shown


def collapse_carriage_returns(text: str) -> str:
    r"""Collapse every line's ``\r`` overwrites; ``\r\n`` counts as a plain line end."""
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    return "\n".join(collapse_line(line) for line in text.split("\n"))


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``; a trailing partial line counts as one."""
    if lines <= 0:
        return ""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
        return "\n".join(parts[-lines:]) + "\n" if parts else ""
    return "\n".join(parts[-lines:])


def read_tail(path: str | os.PathLike[str], max_bytes: int = 65536) -> bytes:
    """The last ``max_bytes`` bytes of the file at ``path`` (all of it if smaller)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - max_bytes))
        return f.read()


def tail_of_log(path: Path, lines: int, max_bytes: int = 1 << 20) -> str:
    """The last ``lines`` lines of a log as a terminal would show them."""
    text = collapse_carriage_returns(decode(read_tail(path, max_bytes)))
    return tail_lines(text, lines)


_LINE_CONTROL = re.compile(r"(\r\n|\r|\n)")


def _line_pieces(text: str) -> list[str]:
    r"""``text`` split into runs of text and line controls ("\n", "\r\n", "\r")."""
    if "\r" in text:
        return _LINE_CONTROL.split(text)
    # The common case, without the regex: str.split is much faster on megabytes of output.
    pieces: list[str] = []
    for line in text.split("\n"):
        pieces += (line, "\n")
    pieces.pop()
    return pieces


class TailBuffer:
    r"""A bounded, incremental terminal view of a stream of text.

    Keeps at most ``max_lines`` complete lines plus the line being written, with ``\r``
    overwrites collapsed as they arrive, so a progress bar stays one line. Not thread-safe:
    its owner guards it.

    Parameters
    ----------
    max_lines:
        How many finished lines to keep.
    max_line_chars:
        Longer lines are cut to their last ``max_line_chars`` characters.
    """

    def __init__(self, max_lines: int = 200, max_line_chars: int = 4096) -> None:
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._current = ""
        self._cursor = 0  # where the next character lands in the line in progress
        self._pending_cr = False
        #: Bumped whenever what ``text()`` returns may have changed.
        self.version = 0

    def feed(self, text: str) -> None:
        """Add decoded output."""
        if not text:
            return
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r"):
            # A lone "\r" at a chunk's end may be half of "\r\n": decide on the next chunk.
            text = text[:-1]
            self._pending_cr = True
        # Only the last max_lines lines can survive: skip whole lines before them.
        cut = len(text)
        for _ in range(self.max_lines + 1):
            cut = text.rfind("\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:
            self._lines.clear()
            self._current, self._cursor = "", 0
            text = text[cut + 1 :]
        for piece in _line_pieces(text):
            if piece in ("\n", "\r\n"):
                self._lines.append(self._clip(self._current))
                self._current, self._cursor = "", 0
            elif piece == "\r":
                self._cursor = 0
            elif piece:
                end = self._cursor + len(piece)
                self._current = self._current[: self._cursor] + piece + self._current[end:]
                self._cursor = end
                if len(self._current) > 2 * self.max_line_chars:
                    drop = len(self._current) - self.max_line_chars
                    self._current = self._current[drop:]
                    self._cursor = max(0, self._cursor - drop)
        self.version += 1

    def _clip(self, line: str) -> str:
        return line[-self.max_line_chars :] if len(line) > self.max_line_chars else line

    def text(self) -> str:
        """The kept lines, newline-terminated, then the line in progress."""
        body = "".join(line + "\n" for line in self._lines)
        return body + self._current

    def clear(self) -> None:
        """Forget everything kept."""
        self._lines.clear()
        self._current, self._cursor = "", 0
        self._pending_cr = False
        self.version += 1
