"""OutputWidgetHandler under a burst: work done per update, and the exact end shown.

What arrives between two widget updates is only kept; the terminal view is built when an
update is made. The tests count the view's builds (``TailBuffer.feed`` calls), never time
them, and check that a job's shown output ends with the log's exact last bytes.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import pytest
from engine_helpers import read_until
from test_panel import wait_widget

from jobmagic import JobState, WorkerService
from jobmagic.notebook.output_flusher import OutputFlusher
from jobmagic.notebook.output_widget import OutputWidgetHandler
from jobmagic.notebook.panel import JobPanel
from jobmagic.text import terminal

pytestmark = pytest.mark.timeout(60)


def record(text: str, skipped_bytes: int = 0) -> logging.LogRecord:
    """A record as the engine makes them; ``skipped_bytes``: it skipped ahead before it."""
    rec = logging.LogRecord("jobmagic.job.1", logging.INFO, __file__, 0, text, None, None)
    if skipped_bytes:
        rec.skipped_bytes = skipped_bytes
    return rec


def wait_value(widget: Any, wanted: str) -> None:
    """Wait until ``wanted`` is in the widget's value."""
    wait_widget(widget, lambda: wanted in widget.value, names=["value"])


class CountedHandler:
    """An OutputWidgetHandler on its own flusher whose view builds are counted."""

    def __init__(self, **kwargs: Any) -> None:
        # An hour between rounds: after its first update the handler is updated only by
        # flush(), so the test decides when updates happen.
        self.flusher = OutputFlusher(min_interval=3600)
        self.widget = ipywidgets.HTML()
        self.handler = OutputWidgetHandler(widget=self.widget, flusher=self.flusher, **kwargs)
        self.feeds = 0
        buffer = self.handler._buffer
        feed = buffer.feed

        def counted_feed(text: str) -> None:
            self.feeds += 1
            feed(text)

        buffer.feed = counted_feed  # type: ignore[method-assign]


@pytest.fixture
def counted() -> Iterator[CountedHandler]:
    handler = CountedHandler(tail_lines=20)
    yield handler
    handler.handler.close()


def test_records_between_updates_are_kept_not_rendered(counted: CountedHandler) -> None:
    handler = counted.handler
    handler.emit(record("first\n"))
    wait_value(counted.widget, "first")  # the first round; the next is an hour away
    feeds = counted.feeds
    # A writer that outruns the view: every record follows a skip, as from the engine.
    for i in range(1000):
        handler.emit(record(f"fragment\nburst {i}\n", skipped_bytes=1 << 20))
    for i in range(5):
        handler.emit(record(f"after {i}\n"))
    assert counted.feeds == feeds, "nothing is built while no update is due"
    handler.flush()
    # One build for the text after the last skip (one record), one per record after it.
    assert counted.feeds - feeds == 1 + 5
    assert handler.text() == "burst 999\n" + "".join(f"after {i}\n" for i in range(5))
    assert "after 4" in counted.widget.value
    assert "fragment" not in counted.widget.value
    assert "burst 998" not in counted.widget.value


def test_kept_text_stays_bounded_between_updates(counted: CountedHandler) -> None:
    handler = counted.handler
    handler.emit(record("first\n"))
    wait_value(counted.widget, "first")
    line = "x" * 99 + "\n"
    for _ in range(3 * handler.tail_bytes // len(line)):
        handler.emit(record(line))
        assert handler._pending_chars <= handler.tail_bytes
    handler.emit(record("last\n"))
    assert handler.text().endswith(line + "last\n")
    assert len(handler.text().split("\n")) == 21  # 20 lines, then the empty line in progress


def test_shown_output_ends_with_the_jobs_last_bytes_after_a_burst(
    service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    # 40 MB as fast as it can be written, then lines written one by one, then an end
    # without a newline: the shown output must be the log's end, byte for byte.
    script = (
        "import os, sys\n"
        "print('ready', flush=True)\n"
        "open(sys.argv[1]).read()\n"
        "block = b''.join(b'burst line %06d\\n' % i for i in range(4096))\n"
        "for _ in range(625): os.write(1, block)\n"
        "for i in range(30): os.write(1, b'tail %d \\xc3\\xa9\\n' % i)\n"
        "os.write(1, b'the end')\n"
    )
    worker = service.start(
        f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} {shlex.quote(str(fifo))}"
    )
    panel = JobPanel(service, tail_lines=25)
    try:
        panel.show_output(worker.id or 0)
        read_until(worker, re.compile(rb"ready\n"))
        wait_widget(panel.rows_box, lambda: worker.id in panel.rows, names=["children"])
        row = panel.rows[worker.id or 0]
        handler = row.handler
        assert handler is not None
        with open(fifo, "w") as f:
            f.write("go")
        assert worker.wait(30) == 0
        assert worker.state is JobState.SUCCEEDED
        wait_value(row.output, "the end")
        # What a terminal shows: the last 25 finished lines, then the line in progress.
        finished, _, in_progress = terminal.decode(worker.output()).rpartition("\n")
        expected = "\n".join(finished.split("\n")[-25:]) + "\n" + in_progress
        assert expected.startswith("tail 5 \u00e9\n")
        assert expected.endswith("tail 29 \u00e9\nthe end")
        assert handler.text() == expected
        assert "tail 5 \u00e9" in row.output.value
        assert "tail 4 " not in row.output.value
    finally:
        panel.close()
