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
from helpers import wait_until
from ipywidgets.widgets.widget import _instances as widget_instances

from jobmagic import JobState, WorkerService
from jobmagic.notebook.output_widget import OutputWidgetHandler
from jobmagic.notebook.panel import JobPanel, JobRow
from jobmagic.notebook.row_summary import PAUSE_AFTER, latest_percent, started_ago
from jobmagic.notebook.shared_parts import SharedParts
from jobmagic.text.ansi_html import ansi_to_html
from jobmagic.text.describe import format_runtime

pytestmark = pytest.mark.timeout(60)


def py(code: str) -> str:
    """A shell command running ``code`` with this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# Prints "ready", then blocks reading the FIFO path given as argv[1] (the test releases it).
WAIT_FOR_FIFO = "import sys; print('ready', flush=True); open(sys.argv[1]).read()"
SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"
# Prints "ready", then blocks until a signal.
PAUSER = "import signal; print('ready', flush=True); signal.pause()"
# A parent and its child in the job's process group: prints "ready" once both run, then
# blocks reading the FIFO path given as argv[1], then prints "resumed" and blocks.
FAMILY = (
    "import signal, subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
    "print('ready', flush=True)\n"
    "open(sys.argv[1]).read()\n"
    "print('resumed', flush=True)\n"
    "signal.pause()\n"
)


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


def wait_text(row: JobRow, text: str) -> None:
    """Wait until the row's summary line shows ``text``."""
    wait_widget(row.summary, lambda: text in row.summary.value, names=["value"])


def shown_runtime(row: JobRow) -> float:
    """The runtime the row shows, in seconds (0 while it shows none, or minutes)."""
    match = re.search(r">(\d+\.\d)s<", row.summary.value)
    return float(match.group(1)) if match else 0.0


def wait_ready(worker: Any, line: bytes = b"ready\n") -> None:
    """Block until the job printed ``line`` (its handshake)."""
    seen = b""
    for chunk in worker.stream():
        seen += chunk
        if line in seen:
            return
    raise AssertionError(f"job {worker.id} ended without printing {line!r}")


def member_states(pgid: int) -> dict[int, str]:
    """The live processes of group ``pgid`` (zombies are dead): pid -> /proc state letter.

    The letter is field 3 of ``/proc/<pid>/stat``: "T" for a process stopped by a signal.
    """
    states = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            states[int(entry)] = fields[0]
    return states


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that still run (zombies are dead)."""
    return sorted(member_states(pgid))


def wait_members(pgid: int, *, stopped: bool) -> dict[int, str]:
    """Wait until every process of group ``pgid`` is stopped ("T"), or none is.

    /proc offers nothing to wait on: a process stops (or goes on) when the kernel next
    runs it after the signal, so this re-reads /proc until it holds (``wait_until``).
    """

    def settled() -> dict[int, str] | None:
        states = member_states(pgid)
        held = [state == "T" for state in states.values()]
        return states if held and (all(held) if stopped else not any(held)) else None

    what = "stopped" if stopped else "running"
    return wait_until(settled, 10, message=f"every process of group {pgid} {what}")


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
    assert "pid " not in row.summary.value  # stale once it has ended: the exit instead
    assert row.stop_button not in row.widget.children  # not a disabled red button
    wait_widget(panel.counts, lambda: "stopped 1" in panel.counts.value)
    assert "running" not in panel.counts.value
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
        assert row.stop_button not in row.widget.children
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
    assert row.stop_button not in row.widget.children


def test_failed_job_shows_its_error(service: WorkerService, panel: JobPanel) -> None:
    worker = service.start("pyhton-does-not-exist --version")
    worker.wait(10)
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.FAILED)
    assert worker.error
    assert "command not found" in worker.error
    assert "command not found" in row.summary.value
    assert row.stop_button not in row.widget.children


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
    assert row.widget.children == finished_children(row)
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


def finished_children(row: JobRow) -> tuple[Any, ...]:
    """What the row of an ended job holds: no Stop or Pause; Re-run, Remove, Output."""
    return (row.summary, row.rerun_button, row.remove_button, row.output_toggle)


def wait_pause_button(row: JobRow) -> Any:
    """The row's Pause button: the panel's runtime tick adds it once its job has run
    ``PAUSE_AFTER`` seconds (a job that ends sooner never costs a message for it)."""
    wait_widget(row.widget, lambda: row.pause_button is not None, names=["children"])
    return row.pause_button


def test_rows_share_their_layout_and_style_widgets(service: WorkerService, panel: JobPanel) -> None:
    # Every widget is a comm_open for the kernel: a row makes its own 4 (summary, Stop,
    # Output, the row's box) and nothing else; 1 more (Pause) once its job runs, 1 more
    # (its output widget) when shown.
    service.pause(group="held")  # its jobs stay queued: they never run
    before = set(widget_instances)
    held = service.start(py(SLEEPER), group="held")
    held_row = wait_row(panel, held.id or 0)
    assert held.state is JobState.QUEUED
    assert len(set(widget_instances) - before) == 4
    other = service.start("true", group="held")
    other_row = wait_row(panel, other.id or 0)
    assert len(set(widget_instances) - before) == 8
    assert held_row.summary.layout is other_row.summary.layout
    assert held_row.summary.style is other_row.summary.style
    assert held_row.stop_button.style is other_row.stop_button.style
    assert held_row.output_toggle.style is other_row.output_toggle.style
    assert held_row.widget.layout is other_row.widget.layout
    assert held_row.stop_button.layout is held_row.output_toggle.layout

    running = service.start(py(SLEEPER))
    row = wait_row(panel, running.id or 0)
    wait_state(row, JobState.RUNNING)
    assert row.pause_button is None  # not before the job has run a second
    assert len(set(widget_instances) - before) == 12
    wait_pause_button(row)
    assert len(set(widget_instances) - before) == 13
    assert row.pause_button.layout is row.stop_button.layout
    assert row.pause_button.style is held_row.stop_button.style

    row.show_output()
    assert len(set(widget_instances) - before) == 14
    assert row.output.style is row.summary.style
    for worker in (held, other, running):
        worker.stop()


def test_panel_displays_as_a_widget(service: WorkerService, panel: JobPanel) -> None:
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.model_id
    assert isinstance(panel, ipywidgets.VBox)
    assert panel.widget is panel  # for code written before the panel was the widget
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
    wait_widget(row.summary, lambda: shown_runtime(row) >= 2.0, timeout=10, names=["value"])
    # 0.x s -> 1.x s -> 2.x s: one message per second of runtime, no more.
    assert 1 <= len(values) <= 3
    worker.stop()
    wait_state(row, JobState.STOPPED)


# -- the queue and pausing ----------------------------------------------------------------


def test_queued_rows_say_why_they_wait_and_move_up_without_an_event_of_their_own(
    service: WorkerService, panel: JobPanel
) -> None:
    service.set_group("g", 1)
    first = service.start(py(PAUSER), group="g")
    second = service.start(py(PAUSER), group="g")
    third = service.start(py(PAUSER), group="g")
    plain = service.start("true")
    rows = [wait_row(panel, w.id or 0) for w in (first, second, third)]
    wait_state(rows[0], JobState.RUNNING)
    wait_ready(first)
    assert (second.state, third.state) == (JobState.QUEUED, JobState.QUEUED)
    wait_text(rows[1], "1st in group g (1/1 running)")
    wait_text(rows[2], "2nd in group g (1/1 running)")
    for row in rows[1:]:
        assert row_state(row) == "queued"
        assert "pid " not in row.summary.value  # the reason takes the pid's place
        assert row.pause_button is None  # a queued job is not paused: its group is
        assert row.widget.children == (row.summary, row.stop_button, row.output_toggle)
    for row in rows:
        assert '<span class="jobmagic-group" title="group g"' in row.summary.value
        assert ">g</span>" in row.summary.value
    plain_row = wait_row(panel, plain.id or 0)
    assert "jobmagic-group" not in plain_row.summary.value  # "default" goes without saying

    # The first ends, the second starts: the third, which heard nothing, is now 1st.
    first.stop()
    wait_state(rows[1], JobState.RUNNING)
    wait_text(rows[2], "1st in group g (1/1 running)")
    assert row_state(rows[2]) == "queued"
    for worker in (second, third):
        worker.stop()


def test_row_of_a_job_in_a_paused_group_says_so_and_runs_once_it_is_resumed(
    service: WorkerService, panel: JobPanel
) -> None:
    service.pause(group="held")
    worker = service.start(py(PAUSER), group="held")
    row = wait_row(panel, worker.id or 0)
    wait_text(row, "group held is paused")
    assert row_state(row) == "queued"
    assert row.pause_button is None

    service.resume(group="held")
    wait_state(row, JobState.RUNNING)
    assert "group held is paused" not in row.summary.value
    assert wait_pause_button(row).description == "Pause"
    assert row.widget.children == (
        row.summary,
        row.pause_button,
        row.stop_button,
        row.output_toggle,
    )
    worker.stop()


def test_pause_button_holds_the_whole_job_still_and_resume_lets_it_go_on(
    service: WorkerService, panel: JobPanel, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    worker = service.start(py(FAMILY) + " " + shlex.quote(str(fifo)))
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.RUNNING)
    wait_ready(worker)
    assert worker.pid is not None
    button = wait_pause_button(row)
    assert (button.description, button.icon, button.disabled) == ("Pause", "pause", False)
    assert row.widget.children.index(button) + 1 == row.widget.children.index(row.stop_button)
    assert len(member_states(worker.pid)) >= 2  # the program (the job's leader), its child

    button.click()
    assert worker.state is JobState.PAUSED
    assert set(wait_members(worker.pid, stopped=True).values()) == {"T"}
    wait_state(row, JobState.PAUSED)
    assert (button.description, button.icon, button.disabled) == ("Resume", "play", False)
    assert ">PAUSED</span>" in row.summary.value
    assert f"pid {worker.pid}" in row.summary.value
    assert f">{format_runtime(worker.runtime)}<" in row.summary.value  # frozen there
    assert not row.stop_button.disabled
    wait_widget(panel.counts, lambda: "paused 1" in panel.counts.value)
    assert "running" not in panel.counts.value  # only the states that have jobs
    assert not panel.stop_all_button.disabled  # a paused job has not ended

    button.click()
    assert worker.state is JobState.RUNNING
    wait_members(worker.pid, stopped=False)
    wait_state(row, JobState.RUNNING)
    assert (button.description, button.icon, button.disabled) == ("Pause", "pause", False)
    with open(fifo, "w") as f:  # the program goes on: it reads this and says so
        f.write("go")
    wait_ready(worker, b"resumed\n")
    wait_widget(panel.counts, lambda: "running 1" in panel.counts.value)
    worker.stop()
    assert_gone(worker.pid)


def test_paused_row_keeps_its_runtime_while_a_running_row_ticks(
    service: WorkerService, panel: JobPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused, running = service.start(py(PAUSER)), service.start(py(PAUSER))
    paused_row, running_row = wait_row(panel, paused.id or 0), wait_row(panel, running.id or 0)
    wait_ready(paused)
    wait_ready(running)
    wait_state(paused_row, JobState.RUNNING)
    wait_pause_button(paused_row).click()
    # A barrier: once the panel shows a job added after the pause, it has also rendered
    # the pause's event (its events are applied in order).
    barrier = service.start("true")
    wait_row(panel, barrier.id or 0)
    assert row_state(paused_row) == "paused"
    frozen = paused.runtime
    assert frozen is not None
    shown = paused_row.summary.value
    assert f">{format_runtime(frozen)}<" in shown
    changes: list[str] = []
    paused_row.summary.observe(lambda change: changes.append(change["new"]), names="value")
    renders = []
    render = paused_row.refresh

    def counted_render() -> None:
        renders.append(time.monotonic())
        render()

    monkeypatch.setattr(paused_row, "refresh", counted_render)

    # Two ticks of the running row's clock (it shows a second more at each) ...
    start = shown_runtime(running_row)
    wait_widget(running_row.summary, lambda: shown_runtime(running_row) >= start + 1.5)
    # ... and none of the paused one's: its runtime and its row stand still.
    assert renders == []
    assert changes == []
    assert paused_row.summary.value == shown
    assert paused.runtime == frozen
    for worker in (paused, running, barrier):
        worker.stop()


def test_stop_button_stops_a_paused_job(service: WorkerService, panel: JobPanel) -> None:
    worker = service.start(py(PAUSER))
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.RUNNING)
    wait_ready(worker)
    assert worker.pid is not None
    wait_pause_button(row).click()
    wait_members(worker.pid, stopped=True)
    wait_state(row, JobState.PAUSED)

    row.stop_button.click()
    assert row.stop_button.disabled
    assert row.pause_button.disabled  # a job being stopped is not resumed from here
    wait_state(row, JobState.STOPPED)
    assert worker.state is JobState.STOPPED
    assert worker.exit_code == -15  # let go on to hear SIGTERM, not killed at the deadline
    assert_gone(worker.pid)
    assert "killed by SIGTERM" in row.summary.value
    assert row.widget.children == finished_children(row)
    wait_widget(panel.counts, lambda: "stopped 1" in panel.counts.value)
    assert "paused" not in panel.counts.value
    assert panel.stop_all_button.disabled


def test_pause_of_a_job_that_ended_meanwhile_is_logged_and_shown(
    service: WorkerService, caplog: pytest.LogCaptureFixture
) -> None:
    # A row no panel refreshes: it still offers Pause for a job that has ended since.
    worker = service.start(py(PAUSER))
    wait_ready(worker)
    # Past PAUSE_AFTER, a new row offers Pause at once (the threshold is in runtime).
    wait_until(lambda: (worker.runtime or 0) >= PAUSE_AFTER, 10, message="a second of runtime")
    shared = SharedParts()
    row = JobRow(worker, 10, shared)
    try:
        assert row.pause_button is not None
        worker.stop()
        assert worker.state is JobState.STOPPED
        assert not row.pause_button.disabled

        with caplog.at_level(logging.WARNING, logger="jobmagic.notebook.panel_row"):
            row.pause_button.click()  # does not raise
        assert [r.getMessage() for r in caplog.records] == [
            f"pausing job {worker.id} failed: job {worker.id} has already ended (stopped)"
        ]
        assert row_state(row) == "stopped"
        # A row made without ``remove`` offers no Remove.
        assert row.remove_button is None
        assert row.widget.children == (row.summary, row.rerun_button, row.output_toggle)
    finally:
        row.close()
        shared.close()


# -- the panel as a widget, finished rows, header, filter, progress ------------------------


def test_panel_is_a_vbox_that_goes_into_another_box_and_closes_all_it_made(
    service: WorkerService,
) -> None:
    listeners = service.listener_count
    box = ipywidgets.VBox([ipywidgets.HTML("my dashboard")])
    before = set(widget_instances)
    panel = JobPanel(service)
    box.children = (*box.children, panel)
    try:
        assert isinstance(panel, ipywidgets.VBox)
        assert box.children[1] is panel
        assert panel.children == (panel._header, panel.rows_box)
        worker = service.start(py("print('hi')"))
        worker.wait(10)
        row = wait_row(panel, worker.id or 0)
        wait_state(row, JobState.SUCCEEDED)
        assert service.listener_count == listeners + 1
        made = set(widget_instances) - before
        assert panel.model_id in made
        assert row.widget.model_id in made

        panel.close()
        assert service.listener_count == listeners
        assert panel.comm is None
        # Every widget it made is closed: rows, buttons, boxes, shared layouts and styles.
        assert made & set(widget_instances) == set()
        assert "jobmagic-panel" not in [t.name for t in threading.enumerate()]
    finally:
        panel.close()
        for child in box.children:
            child.close()
        box.close()


def test_finished_row_offers_rerun_and_remove_instead_of_stop(
    service: WorkerService, panel: JobPanel
) -> None:
    worker = service.start(py("import sys; sys.exit(3)"), name="three")
    worker.wait(10)
    row = wait_row(panel, worker.id or 0)
    wait_state(row, JobState.FAILED)
    assert row.widget.children == finished_children(row)
    assert (row.rerun_button.description, row.remove_button.description) == ("Re-run", "Remove")
    assert "pid " not in row.summary.value
    assert "exit code 3" in row.summary.value
    assert ">just now<" in row.summary.value  # when it started
    # Named: the name, and the command shortened beside it (in full on hover).
    assert ">three<" in row.summary.value
    assert 'class="jobmagic-command"' in row.summary.value

    row.rerun_button.click()
    new_id = wait_until(
        lambda: next((i for i in panel.rows if i != worker.id), None), 10, message="a new row"
    )
    record = service.store.get(new_id)
    assert record is not None
    assert record.restarted_from == worker.id
    assert record.command == worker.command
    new_row = wait_row(panel, new_id)
    wait_state(new_row, JobState.FAILED)
    assert new_row.rerun_button is not None

    row.remove_button.click()
    assert service.store.get(worker.id or 0) is None
    assert not worker.log_path.exists()
    wait_widget(panel.rows_box, lambda: worker.id not in panel.rows, names=["children"])
    assert panel.rows_box.children == (new_row.widget,)


def test_remove_that_fails_is_logged_in_one_line(
    service: WorkerService, caplog: pytest.LogCaptureFixture
) -> None:
    worker = service.start("true")
    worker.wait(10)
    shared = SharedParts()
    row = JobRow(worker, 10, shared, remove=service.remove)
    try:
        service.remove(worker.id or 0)  # gone meanwhile (another panel, the command line)
        with caplog.at_level(logging.WARNING, logger="jobmagic.notebook.panel_row"):
            row.remove_button.click()  # does not raise
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 1
        assert messages[0].startswith(f"removing job {worker.id} failed: ")
        assert "\n" not in messages[0]
    finally:
        row.close()
        shared.close()


def test_header_counts_only_the_states_that_have_jobs(
    service: WorkerService, panel: JobPanel
) -> None:
    assert "none" in panel.counts.value
    assert "running" not in panel.counts.value
    worker = service.start("true")
    worker.wait(10)
    wait_widget(panel.counts, lambda: "succeeded 1" in panel.counts.value)
    for state in JobState:
        if state is not JobState.SUCCEEDED:
            assert f"{state.value} " not in panel.counts.value


def test_filter_shows_only_unfinished_rows_and_all_again(
    service: WorkerService, panel: JobPanel
) -> None:
    done = service.start("true")
    done.wait(10)
    running = service.start(py(SLEEPER))
    done_row, running_row = wait_row(panel, done.id or 0), wait_row(panel, running.id or 0)
    wait_state(done_row, JobState.SUCCEEDED)
    assert panel.rows_box.children == (done_row.widget, running_row.widget)

    panel.filter.value = "running"
    wait_widget(panel.rows_box, lambda: panel.rows_box.children == (running_row.widget,))
    assert set(panel.rows) == {done.id, running.id}  # out of view, not gone
    running.stop()  # it ends: the filter takes it out of view too
    wait_widget(panel.rows_box, lambda: panel.rows_box.children == ())

    panel.filter.value = "all"
    wait_widget(
        panel.rows_box,
        lambda: panel.rows_box.children == (done_row.widget, running_row.widget),
    )


def test_clear_finished_takes_ended_rows_out_but_keeps_their_records(
    service: WorkerService, panel: JobPanel, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    done = service.start("true")
    done.wait(10)
    later = service.start(py(WAIT_FOR_FIFO) + " " + shlex.quote(str(fifo)))
    done_row, later_row = wait_row(panel, done.id or 0), wait_row(panel, later.id or 0)
    wait_state(done_row, JobState.SUCCEEDED)
    wait_ready(later)

    panel.clear_button.click()
    wait_widget(panel.rows_box, lambda: panel.rows_box.children == (later_row.widget,))
    assert set(panel.rows) == {later.id}
    assert service.store.get(done.id or 0) is not None  # only out of this panel
    assert done.log_path.exists()
    assert "succeeded" not in panel.counts.value

    with open(fifo, "w") as f:  # the other job ends after the clear: it stays shown
        f.write("go")
    wait_state(later_row, JobState.SUCCEEDED)
    assert panel.rows_box.children == (later_row.widget,)
    wait_widget(panel.counts, lambda: "succeeded 1" in panel.counts.value)
    panel.clear_button.click()
    wait_widget(panel.rows_box, lambda: panel.rows_box.children == ())
    assert service.store.get(later.id or 0) is not None


# Writes a progress line ending in \r, as progress bars do, then blocks until a signal.
PROGRESS = (
    "import signal, sys\n"
    "sys.stdout.write('step 1\\nprogress 12%\\r progress 45%\\r'); sys.stdout.flush()\n"
    "signal.pause()\n"
)
# A real tqdm bar at 50 of 100 (on stderr, merged in the log), then blocks until a signal.
TQDM = (
    "import signal; from tqdm import tqdm\n"
    "bar = tqdm(total=100, mininterval=0); bar.update(50); bar.refresh()\n"
    "signal.pause()\n"
)


def shown_percent(row: JobRow) -> int | None:
    match = re.search(r'class="jobmagic-progress" data-percent="(\d+)"', row.summary.value)
    return int(match.group(1)) if match else None


@pytest.mark.parametrize("program", [PROGRESS, TQDM], ids=["percent-line", "tqdm"])
def test_progress_bar_shows_the_latest_percentage_while_the_job_runs(
    service: WorkerService, panel: JobPanel, program: str
) -> None:
    if program is TQDM:
        pytest.importorskip("tqdm")
    worker = service.start(py(program))
    row = wait_row(panel, worker.id or 0)
    assert not row.output_toggle.value  # read from the log, with the output hidden
    wait_widget(row.summary, lambda: shown_percent(row) is not None, names=["value"])
    percent = shown_percent(row)
    assert percent is not None
    assert 40 <= percent <= 60
    assert f"width:{percent}%" in row.summary.value
    assert row.progress is not None

    worker.stop()
    wait_state(row, JobState.STOPPED)
    assert shown_percent(row) is None  # only while it runs
    assert row.progress is None


@pytest.mark.parametrize(
    ("text", "percent"),
    [
        (" 45%|████▌     | 45/100 [00:01<00:01, 44.9it/s]", 45.0),  # tqdm
        ("\r 10%|#         |\r 46%|####6     | 46/100", 46.0),  # tqdm, ASCII, \r updates
        ("file.iso   45%[=====>      ]  45.2M  10.2MB/s    eta 5s    ", 45.0),  # wget
        ("######################                       45.3%", 45.3),  # curl -#
        ("\x1b[32mprogress 50 %\x1b[0m\r", 50.0),  # coloured, ending in \r
        ("downloading 99%\ndone\n", None),  # the last line says no percentage
        ("ratio 250% then 30%", 30.0),  # more than 100 is no progress
        ("", None),
    ],
)
def test_latest_percent_reads_the_last_line(text: str, percent: float | None) -> None:
    assert latest_percent(text) == percent


def test_started_ago_wording_moves_once_a_minute_at_most() -> None:
    now = 1_000_000.0
    assert started_ago(None, now) == ""
    assert started_ago(now - 59, now) == "just now"
    assert started_ago(now + 5, now) == "just now"  # a clock a little ahead
    assert started_ago(now - 180, now) == "3 min ago"
    assert started_ago(now - 2 * 3600 - 5, now) == "2 h ago"
    assert started_ago(now - 5 * 86400, now) == "5 d ago"


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
        # Nothing changed since: no further flush (the flusher waits untimed).
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


def test_shown_outputs_of_all_panels_share_one_flush_thread_and_budget(
    service: WorkerService,
) -> None:
    writer = py(
        "import itertools, time\n"
        "for i in itertools.count():\n"
        "    print(i, 'x' * 60, flush=True)\n"
        "    time.sleep(0.001)\n"
    )
    workers = [service.start(writer) for _ in range(8)]
    threads_before = set(threading.enumerate())
    panels = [JobPanel(service, tail_lines=20) for _ in range(2)]
    updates: list[tuple[float, int, int]] = []  # (time, output, size)
    changed = threading.Condition()

    def recorder(index: int) -> Callable[[Any], None]:
        def on_change(change: Any) -> None:
            with changed:
                updates.append((time.monotonic(), index, len(change["new"])))
                changed.notify_all()

        return on_change

    outputs = []
    try:
        for p in panels:
            for w in workers:
                p.show_output(w.id or 0)
        for p in panels:
            for w in workers:
                row = wait_row(p, w.id or 0)
                wait_widget(row.widget, lambda row=row: row.output is not None)
                outputs.append(row.output)
        handlers = [p.rows[w.id or 0].handler for p in panels for w in workers]
        assert len({id(h) for h in handlers}) == 16
        flushers = {id(h.flusher) for h in handlers if h is not None}
        assert len(flushers) == 1  # one thread, one throttle, one budget for all 16
        for index, output in enumerate(outputs):
            output.observe(recorder(index), names="value")
        with changed:
            assert changed.wait_for(
                lambda: all(sum(1 for u in updates if u[1] == i) >= 3 for i in range(16)),
                timeout=30,
            )
            seen = list(updates)
        flush_threads = [t for t in threading.enumerate() if t.name == "jobmagic-output-flush"]
        assert len(flush_threads) == 1
        new_threads = set(threading.enumerate()) - threads_before
        assert len(new_threads) <= 3  # the two panels' threads and, at most, that one
        # 16 busy outputs send what the process budget lets one send (100 kB/s), give or
        # take the last round of one update each.
        sent = sum(size for _at, _i, size in seen)
        last_round = 16 * max(size for _at, _i, size in seen)
        assert sent - last_round <= 100_000 * (seen[-1][0] - seen[0][0])
    finally:
        for p in panels:
            p.close()
        for w in workers:
            w.stop()
    # Gone with the last handler (unless some other test left one attached before).
    assert all(not t.is_alive() for t in flush_threads if t not in threads_before)


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


def test_the_panels_plain_text_says_what_to_do_when_it_cannot_be_drawn(panel: JobPanel) -> None:
    bundle = panel._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == (
        "jobmagic panel: its kernel has restarted (or this view cannot show "
        "widgets): run %job panel"
    )
    assert "application/vnd.jupyter.widget-view+json" in data
