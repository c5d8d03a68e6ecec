"""Display helpers for log bytes: decoding, ``\\r`` collapsing, tails, and ``TailBuffer``."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from jobmagic.text.ansi_html import ansi_to_html
from jobmagic.text.terminal import (
    TailBuffer,
    collapse_carriage_returns,
    collapse_line,
    decode,
    incremental_decoder,
    read_tail,
    tail_lines,
    tail_of_log,
)

pytestmark = pytest.mark.timeout(10)


# -- decode --------------------------------------------------------------------------------
def test_decode_replaces_invalid_utf8_and_keeps_nul() -> None:
    assert decode(b"ok \xff\x00 \xc3\xa9") == "ok \ufffd\x00 \u00e9"


def test_incremental_decoder_joins_a_character_split_across_chunks() -> None:
    decoder = incremental_decoder()
    euro = "\u20ac".encode()  # three bytes
    assert decoder.decode(euro[:1]) == ""
    assert decoder.decode(euro[1:2]) == ""
    assert decoder.decode(euro[2:] + b"!") == "\u20ac!"
    assert decoder.decode(b"\xe2\x82", final=True) == "\ufffd"


# -- collapse_carriage_returns -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\rb\rc\n", "c\n"),
        ("no returns\n", "no returns\n"),
        ("10%\r50%\r100%", "100%"),
        ("one\r\ntwo\r\n", "one\ntwo\n"),  # \r\n is a line end, not a return
        ("first\nprogress 1\rprogress 2\nlast\n", "first\nprogress 2\nlast\n"),
        ("long line\rshort", "shortline"),  # like a terminal: the tail of the longer stays
        ("abc\r", "abc"),  # a return with nothing after it changes nothing
        ("\x1b[32m10%\x1b[0m\r\x1b[32m99%\x1b[0m\n", "\x1b[32m99%\x1b[0m\n"),  # ANSI kept
        ("", ""),
    ],
)
def test_collapse_carriage_returns(text: str, shown: str) -> None:
    assert collapse_carriage_returns(text) == shown


def test_collapse_line_overwrites_from_the_start_of_the_line() -> None:
    assert collapse_line("12345\rab") == "ab345"
    assert collapse_line("\r\rx") == "x"


# -- tail_lines ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "lines", "tail"),
    [
        ("a\nb\nc\n", 2, "b\nc\n"),
        ("a\nb\nc", 2, "b\nc"),  # the trailing partial line counts as one
        ("a\nb\nc\n", 10, "a\nb\nc\n"),
        ("a\nb\nc\n", 0, ""),
        ("a\nb\nc\n", -1, ""),
        ("", 5, ""),
        ("\n", 1, "\n"),
        ("a\n\n\n", 2, "\n\n"),  # empty lines are lines
        ("only", 1, "only"),
    ],
)
def test_tail_lines(text: str, lines: int, tail: str) -> None:
    assert tail_lines(text, lines) == tail


# -- files ---------------------------------------------------------------------------------
def test_read_tail_returns_the_last_bytes(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(bytes(range(256)) * 4)
    assert read_tail(path, 10) == bytes(range(246, 256))
    assert read_tail(path, 1 << 20) == bytes(range(256)) * 4
    (tmp_path / "empty").write_bytes(b"")
    assert read_tail(tmp_path / "empty") == b""


def test_tail_of_log_collapses_and_decodes(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"start\n" + b"".join(b"%d%%\r" % i for i in range(101)) + b"\nbad \xff\n")
    assert tail_of_log(path, 2) == "100%\nbad \ufffd\n"


# -- TailBuffer ----------------------------------------------------------------------------
def test_tail_buffer_keeps_at_most_max_lines() -> None:
    buffer = TailBuffer(max_lines=3)
    for i in range(1000):
        buffer.feed(f"line {i}\n")
    assert buffer.text() == "line 997\nline 998\nline 999\n"


def test_tail_buffer_keeps_the_line_in_progress() -> None:
    buffer = TailBuffer(max_lines=2)
    buffer.feed("a\nb\nc\npartial")
    assert buffer.text() == "b\nc\npartial"
    buffer.feed(" line\n")
    assert buffer.text() == "c\npartial line\n"


def test_tail_buffer_clips_long_lines_to_their_end() -> None:
    buffer = TailBuffer(max_lines=5, max_line_chars=10)
    buffer.feed("x" * 100 + "0123456789\n")
    buffer.feed("y" * 50)
    assert buffer.text() == "0123456789\n" + "y" * 10


def test_tail_buffer_progress_bar_stays_one_line() -> None:
    buffer = TailBuffer(max_lines=10)
    buffer.feed("downloading\n")
    for i in range(1000):
        buffer.feed(f"\r{i / 10:5.1f}%")
    assert buffer.text() == "downloading\n 99.9%"
    buffer.feed("\rdone  \n")
    assert buffer.text() == "downloading\ndone  \n"


def test_tail_buffer_carriage_return_across_chunk_boundary() -> None:
    buffer = TailBuffer()
    buffer.feed("10%")
    buffer.feed("\r")  # the overwrite arrives in one chunk ...
    buffer.feed("50%")  # ... and its text in the next
    assert buffer.text() == "50%"
    buffer.feed("\r100%\r")
    buffer.feed("done\n")
    assert buffer.text() == "done\n"


def test_tail_buffer_overwrite_continued_in_the_next_chunk() -> None:
    # "\r50%" written as "\r5" + "0%": the second chunk continues at the cursor (column 1),
    # it is not appended after the old line's end.
    buffer = TailBuffer()
    buffer.feed("10%\r5")
    buffer.feed("0%")
    assert buffer.text() == "50%"


def test_tail_buffer_crlf_split_across_chunks_is_a_line_end() -> None:
    buffer = TailBuffer()
    buffer.feed("first line\r")
    buffer.feed("\nsecond line\r")
    buffer.feed("\n")
    assert buffer.text() == "first line\nsecond line\n"


def test_tail_buffer_matches_collapse_for_any_chunking() -> None:
    text = "a\r\nprogress 1\rprogress 22\rp3\r\nend\rEND\n\rtail\r"
    whole = collapse_carriage_returns(text)
    for size in range(1, len(text) + 1):
        buffer = TailBuffer(max_lines=100)
        for start in range(0, len(text), size):
            buffer.feed(text[start : start + size])
        # A trailing "\r" is pending until the next chunk; it changes nothing shown.
        assert buffer.text() == whole, f"chunk size {size}"


def test_tail_buffer_version_bumps_only_on_change() -> None:
    buffer = TailBuffer()
    start = buffer.version
    buffer.feed("")
    assert buffer.version == start
    buffer.feed("x")
    assert buffer.version > start
    before_clear = buffer.version
    buffer.clear()
    assert buffer.version > before_clear
    assert buffer.text() == ""


# -- the cases of tests/cases/terminal_text.json ------------------------------------------
SHARED_CASES = json.loads(
    (Path(__file__).parent / "cases" / "terminal_text.json").read_text(encoding="utf-8")
)["cases"]


def _visible(chunks: list[str], max_lines: int | None) -> str:
    """What TailBuffer shows after ``chunks``, without styles (as the shared file defines)."""
    buffer = TailBuffer(max_lines=max_lines if max_lines is not None else 1 << 20)
    for chunk in chunks:
        buffer.feed(chunk)
    return html.unescape(re.sub(r"<[^>]*>", "", ansi_to_html(buffer.text())))


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c["name"] for c in SHARED_CASES])
def test_shared_terminal_case(case: dict[str, Any]) -> None:
    assert _visible(case["chunks"], case.get("max_lines")) == case["visible"]
