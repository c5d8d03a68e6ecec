r"""A Ray job's output copied into its log on this machine, byte for byte what the job wrote.

Ray's driver log holds the job's output and two kinds of lines of Ray's own: its job
manager's log lines before the entrypoint starts ("...\tINFO job_manager.py:581 --
Runtime env is setting up.") and "Running entrypoint for job ID: COMMAND", which Ray
writes through a buffered file and so lands wherever its buffer is flushed, often in the
middle of the job's first output. ``RayLineFilter`` takes both out, so the local log is
what the job wrote (the entrypoint is ours: its line cannot be mistaken for output).

``LogMirror`` writes each piece of the filtered stream at its own offset in the file
(``pwrite``), never appending: a kernel and the Jupyter server that both follow one job
write the same bytes to the same places, and a follower that reconnects (Ray's tail starts
again from the first byte) rewrites nothing already there. ``complete`` makes the file
equal to Ray's whole log, filtered, when the job has ended.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jobmagic.core.files import UnsafePath

# A line Ray's job manager logs into the driver log before the job runs.
_RAY_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ [\w.]+:\d+ -- [^\n]*\n")


def entrypoint_line(submission_id: str, entrypoint: str) -> str:
    """The line Ray writes into the driver log as the entrypoint starts."""
    return f"Running entrypoint for job {submission_id}: {entrypoint}\n"


def without_ray_lines(text: str, submission_id: str, entrypoint: str) -> str:
    """``text`` (a whole driver log) without Ray's own lines."""
    line_filter = RayLineFilter(submission_id, entrypoint)
    return line_filter.feed(text) + line_filter.flush()


class RayLineFilter:
    """Takes Ray's own lines out of a driver log read piece by piece (see the module)."""

    def __init__(self, submission_id: str, entrypoint: str) -> None:
        self._marker = entrypoint_line(submission_id, entrypoint)
        self._at_start = True  # no output of the job's yet: Ray's log lines may come
        self._marker_seen = False
        self._held = ""  # text not given out yet: an unfinished start line, a marker's head

    @property
    def marker_seen(self) -> bool:
        """True once Ray's "Running entrypoint" line went by: the job's command runs."""
        return self._marker_seen

    def feed(self, text: str) -> str:
        """The part of ``text`` (what follows the text fed before) that is the job's."""
        text = self._held + text
        self._held = ""
        while self._at_start and text:
            if not self._marker_seen and self._marker.startswith(text):
                self._held = text  # maybe the marker, not whole yet
                return ""
            if not self._marker_seen and text.startswith(self._marker):
                self._marker_seen = True
                text = text[len(self._marker) :]
                continue
            newline = text.find("\n")
            if newline < 0:
                if _could_be_ray_line(text):
                    self._held = text
                    return ""
                self._at_start = False
                break
            if _RAY_LOG_LINE.fullmatch(text[: newline + 1]):
                text = text[newline + 1 :]
                continue
            self._at_start = False
        if not self._marker_seen and text:
            found = text.find(self._marker)
            if found >= 0:
                self._marker_seen = True
                text = text[:found] + text[found + len(self._marker) :]
            else:
                keep = _partial_suffix(text, self._marker)
                if keep:
                    self._held, text = text[-keep:], text[:-keep]
        return text

    def flush(self) -> str:
        """What was held back waiting for more (the stream has ended)."""
        held, self._held = self._held, ""
        return held


def _could_be_ray_line(text: str) -> bool:
    """True when ``text``, an unfinished line, may still become one of Ray's log lines."""
    sample = "2026-12-01 18:24:48,071\tINFO "
    head = text[: len(sample)]
    return all(
        (s.isdigit() and t.isdigit()) or s == t or (s.isalpha() and t.isalpha())
        for s, t in zip(sample, head, strict=False)
    )


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker`` (0: none)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class LogMirror:
    """Writes a job's filtered output into its log at the stream's offsets. One thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = _open_for_rewrite(path)
        self.offset = 0  # where the next piece of this stream goes

    def restart(self) -> None:
        """A new stream begins (a reconnected tail starts from the log's first byte)."""
        self.offset = 0

    def write(self, data: bytes) -> None:
        """Put ``data``, the next piece of the stream, where it belongs in the file."""
        start, self.offset = self.offset, self.offset + len(data)
        size = os.fstat(self._fd).st_size
        if self.offset <= size:
            return  # there already (an earlier connection, or another follower)
        skip = max(0, size - start)
        _write_all(self._fd, data[skip:], start + skip)

    def complete(self, whole: bytes) -> None:
        """Make the file hold ``whole``: append what is missing, or rewrite what differs."""
        size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, size, 0) if size else b""
        if whole.startswith(head):
            _write_all(self._fd, whole[size:], size)
        else:
            _write_all(self._fd, whole, 0)
            os.ftruncate(self._fd, len(whole))
        self.offset = len(whole)

    def close(self) -> None:
        """Release the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _open_for_rewrite(path: Path) -> int:
    """``path`` opened to write anywhere in it (no O_APPEND: pwrite would append), 0600."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePath(f"{path} belongs to another user; jobmagic will not write to it")
    return fd


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
