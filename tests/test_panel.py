"""JobPanel and OutputWidgetHandler without a frontend: real jobs, real widget state.

ipywidgets works without a kernel comm, so the widgets' traits are what a frontend would
receive. Waits are handshakes: a widget trait observer or the job's own output.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import pytest
from ipywidgets.widgets.widget import _instances as widget_instances

from jobmagic import JobState, WorkerService
from jobmagic.notebook.output_widget import OutputWidgetHandler
from jobmagic.notebook.panel import JobPanel, JobRow
from jobmagic.text.ansi_html import ansi_to_html

pytestmark = pytest.mark.timeout(60)


def py(code: str) -> str:
    """A shell command running ``code`` with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# Prints "ready", then blocks reading the FIFO path given as argv[1] (the test releases it).
WAIT_FOR_FIFO = "import sys; print('ready', flush=True); open(sys.argv[1]).read()"
SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


def wait_widget(
    widget: Any, predicate: Callable[[], bool], timeout: float = 10.0, names: Any = None
) -> float:
    """Wait until ``predicate()`` holds, re-checking whenever one of widget's traits changes.

    Returns the time.monotonic() at which it held.
    """
    changed = threading.Event()

    def on_change(_change: Any) -> None:
        changed.set()

    widget.observe(
        on_change, names=names if names is not None else ["value", "disabled", "children"]
    )
    try:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting on {widget!r}")
            changed.wait(remaining)
            changed.clear()
        return time.monotonic()
    finally:
        widget.unobserve(
            on_change, names=names if names is not None else ["value", "disabled", "children"]
        )


def wait_row(panel: JobPanel, job_id: int) -> JobRow:
    wait_widget(panel.rows_box, lambda: job_id in panel.rows, names=["children"])
    return panel.rows[job_id]


def row_state(row: JobRow) -> str:
    """The state the row's badge shows (the summary's data-state attribute)."""
    value: str = row.summary.value
    return value.split('data-state="', 1)[1].split('"', 1)[0]


def wait_state(row: JobRow, state: JobState, timeout: float = 10.0) -> float:
    return wait_widget(row.summary, lambda: row_state(row) == state.value, timeout, ["value"])


def wait_ready(worker: Any, line: bytes = b"ready\n") -> None:
    """Block until the job printed ``line`` (its handshake)."""
    seen = b""
    for chunk in worker.stream():
        seen += chunk
        if line in seen:
            return
    raise AssertionError(f"job {worker.id} ended without printing {line!r}")


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that still run (zombies are dead)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def assert_gone(pid: int) -> None:
    """The job's leader is reaped and nothing of its process group runs any more."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert live_group_members(pid) == []


@pytest.fixture
def service() -> Iterator[WorkerService]:
    svc = WorkerService(stop_timeout=5.0)
    try:
        yield svc
    finally:
        svc.shutdown()


@pytest.fixture
def panel(service: WorkerService) -> Iterator[JobPanel]:
    p = JobPanel(service)
    try:
        yield p
    finally:
        p.close()


def test_new_job_appears_and_stop_button_stops_it(service: WorkerService, panel: JobPanel) -> None:
    worker = service.start(py(SLEEPER), name="sleeper")
    assert worker.id is not None
    assert worker.pid is not None
    row = wait_row(panel, worker.id)
    wait_state(row, JobState.RUNNING)
    assert f"pid {worker.pid}" in row.summary.value
    assert "sleeper" in row.summary.value
    assert row.summary.tooltip == worker.command
    assert not row.stop_button.disabled
    assert "running 1" in panel.counts.value
    assert not panel.stop_all_button.disabled
    wait_ready(worker)

    row.stop_button.click()
    assert row.stop_button.disabled  # at once, before the job has ended
    wait_state(row, JobState.STOPPED)
    assert worker.state is JobState.STOPPED
    assert worker.exit_code == -15
    assert_gone(worker.pid)
    assert row.stop_button.disabled
    assert "killed by SIGTERM" in row.summary.value
    wait_widget(panel.counts, lambda: "stopped 1" in panel.counts.value)
    assert panel.stop_all_button.disabled


def test_stop_all_button_stops_every_running_job(service: WorkerService, panel: JobPanel) -> None:
    workers = [service.start(py(SLEEPER)) for _ in range(3)]
    done = service.start("true")
    done.wait(10)
    rows = [wait_row(panel, w.id or 0) for w in workers]
    for row, worker in zip(rows, workers, strict=True):
        wait_state(row, JobState.RUNNING)
        wait_ready(worker)

    panel.stop_all_button.click()
    for row, worker in zip(rows, workers, strict=True):
        wait_state(row, JobState.STOPPED)
        assert worker.state is JobState.STOPPED
        assert worker.pid is not None
        assert_gone(worker.pid)
        assert row.stop_button.disabled
    done_row = wait_row(panel, done.id or 0)
    wait_state(done_row, JobState.SUCCEEDED)
    assert "exit code 0" in done_row.summary.value
    assert done.state is JobState.SUCCEEDED


def test_state_change_reaches_the_widget_within_250_ms(
    service: WorkerService, panel: JobPanel, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    worker = service.start(py(WAIT_FOR_FIFO) + " " + shlex.quote(str(fifo)))
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.RUNNING)
    ended_at: list[float] = []

    def on_event(event: Any) -> None:
        if event.worker is worker and event.worker.state.is_finished:
            ended_at.append(time.monotonic())

    unsubscribe = service.subscribe(on_event)
    try:
        with open(fifo, "w") as f:  # blocks until the job opened it: then it exits 0
            f.write("go")
        shown_at = wait_state(row, JobState.SUCCEEDED)
    finally:
        unsubscribe()
    assert ended_at, "the service sent no event for the job's end"
    assert shown_at - ended_at[0] < 0.25
    assert row.stop_button.disabled


def test_failed_job_shows_its_error(service: WorkerService, panel: JobPanel) -> None:
    worker = service.start("pyhton-does-not-exist --version")
    worker.wait(10)
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.FAILED)
    assert worker.error
    assert "command not found" in worker.error
    assert "command not found" in row.summary.value
    assert row.stop_button.disabled


def test_long_command_is_shortened_with_full_text_on_hover(
    service: WorkerService, panel: JobPanel
) -> None:
    command = "echo " + "x" * 200
    worker = service.start(command)
    worker.wait(10)
    row = wait_row(panel, worker.id or 0)
    assert row.summary.tooltip == command
    assert f'title="{command}"' in row.summary.value
    assert "x" * 100 not in row.summary.value.replace(f'title="{command}"', "")
    assert "\u2026" in row.summary.value


def test_removed_job_leaves_the_panel(service: WorkerService, panel: JobPanel) -> None:
    worker = service.start("true")
    worker.wait(10)
    wait_row(panel, worker.id or 0)
    service.remove(worker.id or 0)
    wait_widget(panel.rows_box, lambda: worker.id not in panel.rows, names=["children"])
    assert len(panel.rows_box.children) == 0


def test_output_toggle_follows_the_job_with_colours_and_collapsed_progress(
    service: WorkerService, panel: JobPanel, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    script = (
        "import sys\n"
        "print('before', flush=True)\n"
        "open(sys.argv[1]).read()\n"
        "sys.stdout.write('\\x1b[31mred <tag>\\x1b[0m\\n')\n"
        "for p in range(0, 101, 10): sys.stdout.write(f'\\rprogress {p}%'); sys.stdout.flush()\n"
        "print('\\ndone-marker', flush=True)\n"
    )
    worker = service.start(py(script) + " " + shlex.quote(str(fifo)))
    row = wait_row(panel, worker.id or 0)
    wait_ready(worker, b"before\n")
    assert worker.logger.handlers == []
    assert row.output is None  # made when first shown
    row.output_toggle.value = True
    handler = row.handler
    assert handler is not None
    assert worker.logger.handlers == [handler]
    assert row.widget.children[-1] is row.output
    assert "before" in row.output.value  # seeded from the log at once

    with open(fifo, "w") as f:
        f.write("go")
    wait_widget(row.output, lambda: "done-marker" in row.output.value, names=["value"])
    text = handler.text()
    assert "progress 100%\n" in text
    assert "progress 90%" not in text
    assert "\x1b[31mred <tag>\x1b[0m\n" in text
    assert '<span style="color:#e75c58">red &lt;tag&gt;</span>' in row.output.value
    worker.wait(10)

    row.output_toggle.value = False
    assert worker.logger.handlers == []
    assert row.widget.children == (row.summary, row.stop_button, row.output_toggle)
    assert row.handler is None

    output = row.output
    row.output_toggle.value = True  # shown again: the same widget, seeded again
    assert row.output is output
    assert row.widget.children[-1] is output
    assert "done-marker" in output.value
    row.output_toggle.value = False


def test_show_output_before_the_row_exists(service: WorkerService, panel: JobPanel) -> None:
    # Asked before the job exists (this test's store is new: its first job is 1), the
    # row is made with its output shown; asked right after start(), whichever comes first.
    panel.show_output(1)
    worker = service.start(py("print('hello from the job')"))
    assert worker.id == 1
    later = service.start(py("print('hello from the other job')"))
    panel.show_output(later.id or 0)
    row = wait_row(panel, worker.id)
    assert row.output_toggle.value is True
    assert row.widget.children[-1] is row.output
    wait_widget(row.output, lambda: "hello from the job" in row.output.value, names=["value"])

    other = wait_row(panel, later.id or 0)
    # The toggle's own observer makes the output before any later observer runs.
    wait_widget(other.output_toggle, lambda: other.output is not None, names=["value"])
    assert other.output_toggle.value is True
    assert other.widget.children[-1] is other.output
    wait_widget(
        other.output, lambda: "hello from the other job" in other.output.value, names=["value"]
    )
    worker.wait(10)
    later.wait(10)


def test_rows_share_their_layout_and_style_widgets(service: WorkerService, panel: JobPanel) -> None:
    # Every widget is a comm_open for the kernel: a row makes its own 4 (summary, Stop,
    # Output, the row's box) and nothing else; its output widget is 1 more, when shown.
    before = set(widget_instances)
    worker = service.start(py("print('hello')"))
    worker.wait(10)
    row = wait_row(panel, worker.id or 0)
    assert len(set(widget_instances) - before) == 4
    other = service.start("true")
    other.wait(10)
    other_row = wait_row(panel, other.id or 0)
    assert len(set(widget_instances) - before) == 8
    assert row.summary.layout is other_row.summary.layout
    assert row.summary.style is other_row.summary.style
    assert row.stop_button.style is other_row.stop_button.style
    assert row.output_toggle.style is other_row.output_toggle.style
    assert row.widget.layout is other_row.widget.layout
    assert row.stop_button.layout is row.output_toggle.layout

    row.show_output()
    assert len(set(widget_instances) - before) == 9
    assert row.output.style is row.summary.style


def test_panel_displays_as_a_widget(service: WorkerService, panel: JobPanel) -> None:
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    other = JobPanel(service, tail_lines=5)
    try:
        assert isinstance(other, JobPanel)
        assert other.tail_lines == 5
    finally:
        other.close()


def test_runtime_ticks_once_a_second_while_the_job_runs(
    service: WorkerService, panel: JobPanel
) -> None:
    worker = service.start(py(SLEEPER))
    row = wait_row(panel, worker.id or 0)
    wait_ready(worker)
    values: list[str] = []
    row.summary.observe(lambda change: values.append(change["new"]), names="value")

    def shown_runtime() -> float:
        match = re.search(r">(\d+\.\d)s<", row.summary.value)
        return float(match.group(1)) if match else 0.0

    wait_widget(row.summary, lambda: shown_runtime() >= 2.0, timeout=10, names=["value"])
    # 0.x s -> 1.x s -> 2.x s: one message per second of runtime, no more.
    assert 1 <= len(values) <= 3
    worker.stop()
    wait_state(row, JobState.STOPPED)


# -- OutputWidgetHandler, fed directly ----------------------------------------------------


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord("jobmagic.job.1", logging.INFO, __file__, 0, text, None, None)


def test_handler_keeps_a_bounded_tail() -> None:
    handler = OutputWidgetHandler(tail_lines=50, max_line_chars=100)
    try:
        for i in range(1000):
            handler.emit(record(f"line {i}\n"))
        handler.emit(record("y" * 10_000))
        lines = handler.text().split("\n")
        assert len(lines) == 51
        assert lines[0] == "line 950"
        assert lines[-2] == "line 999"
        assert lines[-1] == "y" * 100
    finally:
        handler.close()


def test_handler_collapses_carriage_returns_across_records() -> None:
    handler = OutputWidgetHandler(tail_lines=10)
    try:
        for chunk in ["start\n", "10%", "\r20%", "\r", "30%\r", "\n", "45%\r\n", "end\n"]:
            handler.emit(record(chunk))
        assert handler.text() == "start\n30%\n45%\nend\n"
    finally:
        handler.close()


def test_ansi_colours_become_spans_and_text_is_escaped() -> None:
    rendered = ansi_to_html(
        "\x1b[1;32mok\x1b[0m <x> & \x1b[38;5;196mhot\x1b[39m\x1b[2K\x1b]0;t\x07!"
    )
    assert '<span style="color:#00a250;font-weight:bold">ok</span>' in rendered
    assert " &lt;x&gt; &amp; " in rendered
    assert '<span style="color:#ff0000">hot</span>' in rendered
    assert rendered.endswith("!")
    assert "\x1b" not in rendered
    assert "0;t" not in rendered


def test_handler_flushes_at_most_ten_times_a_second() -> None:
    widget = ipywidgets.HTML()
    changes: list[float] = []
    widget.observe(lambda _c: changes.append(time.monotonic()), names="value")
    handler = OutputWidgetHandler(widget=widget)
    try:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 1.5:
            handler.emit(record(f"line {n}\n"))
            n += 1
        last = f"line {n - 1}\n"
        wait_widget(widget, lambda: last in widget.value, timeout=5, names=["value"])
        elapsed = time.monotonic() - start
        assert n > 10_000  # many emits ...
        assert 2 <= len(changes) <= 10 * elapsed + 2  # ... few flushes
        gaps = [b - a for a, b in itertools.pairwise(changes)]
        assert min(gaps) >= 0.09
        flushes = handler.flush_count
        # Nothing changed since: no further flush (the flush thread waits untimed).
        threading.Event().wait(0.3)
        assert handler.flush_count == flushes
    finally:
        handler.close()


def test_handler_emit_does_not_wait_for_the_widget() -> None:
    class SlowWidget:
        """Stands in for a widget whose frontend is slow: setting value blocks."""

        def __init__(self) -> None:
            self.value = ""
            self.release = threading.Event()
            self.entered = threading.Event()

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "value" and "release" in self.__dict__:
                self.entered.set()
                self.release.wait(10)
            object.__setattr__(self, name, value)

    widget = SlowWidget()
    handler = OutputWidgetHandler(widget=widget)
    try:
        handler.emit(record("first\n"))
        assert widget.entered.wait(5)
        start = time.monotonic()
        for i in range(1000):
            handler.emit(record(f"more {i}\n"))
        assert time.monotonic() - start < 1.0
        widget.release.set()
    finally:
        widget.release.set()
        handler.close()


# -- leaks ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_open_close_cycles_leave_nothing_behind(service: WorkerService) -> None:
    running = service.start(py(SLEEPER))
    finished = service.start(py("print('x')"))
    finished.wait(10)
    wait_ready(running)
    first = JobPanel(service)
    first.close()
    threads_before = set(threading.enumerate())
    listeners_before = service.listener_count
    widgets_before = len(widget_instances)

    open_panels = [JobPanel(service) for _ in range(3)]  # several at once
    for p in open_panels:
        p.show_output(running.id or 0)
    assert len(running.logger.handlers) == 3
    for p in open_panels:
        p.close()

    for _ in range(100):
        p = JobPanel(service, tail_lines=20)
        p.show_output(running.id or 0)
        p.show_output(finished.id or 0)
        p.close()
        assert p.closed

    assert running.logger.handlers == []
    assert finished.logger.handlers == []
    assert service.listener_count == listeners_before
    assert set(threading.enumerate()) == threads_before
    assert len(widget_instances) == widgets_before
    running.stop()
    assert running.state is JobState.STOPPED
