"""The panel in a real JupyterLab, driven by headless Chromium.

A notebook runs ``%load_ext jobmagic`` and ``%job panel``, then starts a job in another
cell: its row shows RUNNING, its output appears, and clicking its Stop button in the page
stops it (the row shows STOPPED and the process is gone). A panel inside a ``VBox``
renders, its output follows the newest line until the user scrolls up and then keeps
their place, and a job whose output line shows 50% has a bar half full. A failing check
saves a screenshot and names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobmagic.core.state import JobState
from jobmagic.store.job_store import JobStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MARKER = "hello-from-the-job"
JOB = f"{sys.executable} -c \"print('{MARKER}', flush=True); import time; time.sleep(300)\""


def notebook(*cells: str) -> str:
    """A minimal nbformat 4 notebook with these code cells."""
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell-{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that still run (zombies are dead)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


# Waits for the notebook's kernel, then runs every cell (JupyterLab's own command).
RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await app.commands.execute("notebook:run-all-cells");
}"""


@pytest.mark.timeout(240)
def test_panel_shows_a_job_and_its_stop_button_stops_it(lab_server: Any, browser_page: Any) -> None:
    page = browser_page
    path = lab_server.root_dir / "panel.ipynb"
    path.write_text(
        notebook(
            "%load_ext jobmagic",
            "%job panel",
            f"job = %job start {JOB}\nprint('pid', job.pid)",
        )
    )
    page.set_default_timeout(60_000)
    page.goto(f"{lab_server.url}lab/tree/panel.ipynb?token={lab_server.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.evaluate(RUN_ALL)

    row = page.locator(".jobmagic-job-1")
    row.locator('.jobmagic-summary[data-state="running"]').wait_for()
    assert "RUNNING" in row.locator(".jobmagic-badge").inner_text()
    # RUNNING is in the store before the panel hears of it: the pid is there.
    records = JobStore().list()
    assert len(records) == 1
    record = records[0]
    assert record.state is JobState.RUNNING
    assert record.pid is not None
    assert f"pid {record.pid}" in row.locator(".jobmagic-summary").inner_text()

    row.locator("button.jobmagic-output-toggle").click()
    row.locator("pre", has_text=MARKER).wait_for()

    page.screenshot(path=str(lab_server.root_dir.parent / "panel-running.png"))
    row.locator("button.jobmagic-stop").click()
    row.locator('.jobmagic-summary[data-state="stopped"]').wait_for()
    assert "STOPPED" in row.locator(".jobmagic-badge").inner_text()
    # An ended job's row offers Re-run and Remove, not a disabled Stop; no stale pid.
    row.locator("button.jobmagic-rerun").wait_for()
    assert row.locator("button.jobmagic-remove").is_visible()
    assert row.locator("button.jobmagic-stop").count() == 0
    assert "pid " not in row.locator(".jobmagic-summary").inner_text()
    page.screenshot(path=str(lab_server.root_dir.parent / "panel-stopped.png"))

    final = JobStore().get(record.id)
    assert final is not None
    assert final.state is JobState.STOPPED
    assert final.stop_requested_by == "ui"
    with pytest.raises(ProcessLookupError):
        os.kill(record.pid, 0)
    assert live_group_members(record.pid) == []


@contextlib.contextmanager
def screenshot_on_failure(page: Any, path: Path) -> Iterator[None]:
    """On a failed check or a Playwright timeout, save a screenshot and name it."""
    try:
        yield
    except Exception as exc:
        page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{exc}\n(screenshot: {path})") from exc


def open_and_run(page: Any, lab_server: Any, name: str, *cells: str) -> None:
    """Write a notebook of these cells, open it in JupyterLab and run all its cells."""
    (lab_server.root_dir / name).write_text(notebook(*cells))
    page.set_default_timeout(60_000)
    page.goto(f"{lab_server.url}lab/tree/{name}?token={lab_server.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.evaluate(RUN_ALL)


def stop_all(page: Any, *job_ids: int) -> None:
    """Click the panel's Stop all and wait until each job's row shows it stopped."""
    page.locator("button.jobmagic-stop-all").click()
    for job_id in job_ids:
        page.locator(f'.jobmagic-job-{job_id} .jobmagic-summary[data-state="stopped"]').wait_for()


# In a dashboard of our own: a title above the panel, in one VBox.
IN_A_BOX = (
    "import ipywidgets\n"
    "from jobmagic.notebook.panel import JobPanel\n"
    "panel = JobPanel()\n"
    "panel.show_output(1)\n"
    "ipywidgets.VBox([ipywidgets.HTML('<b class=\"my-dashboard\">My dashboard</b>'), panel])"
)
# Prints a numbered line every 50 ms: the output box overflows within a second or two.
# One line of Python: a line magic ends at the newline.
TICKER = (
    f'{sys.executable} -c "import itertools, time; '
    "[print(f'line {i}', flush=True) or time.sleep(0.05) for i in itertools.count()]\""
)
# How far the end of the output text lies below the bottom of its scroll box, in pixels:
# about 0 while the box shows the newest line, more once the user scrolled up.
BELOW_BOTTOM = """el => {
  const pre = el.querySelector('pre');
  return pre.getBoundingClientRect().bottom - el.getBoundingClientRect().bottom;
}"""
# How much of the output text lies above the top of its scroll box, in pixels: it stays
# while the user reads lines above the newest (the browser anchors their place).
ABOVE_TOP = """el => {
  const pre = el.querySelector('pre');
  return el.getBoundingClientRect().top - pre.getBoundingClientRect().top;
}"""
# The box's scroll figures: scrollTop, clientHeight, scrollHeight.
SCROLL = "el => [el.scrollTop, el.clientHeight, el.scrollHeight]"


def last_line(output: Any) -> int:
    """The number of the last "line N" the output box shows."""
    text: str = output.locator("pre").inner_text()
    return int(text.strip().rsplit("line ", 1)[1])


@pytest.mark.timeout(240)
def test_panel_in_a_vbox_follows_the_output_until_the_user_scrolls_up(
    lab_server: Any, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    with screenshot_on_failure(page, tmp_path / "panel-scroll-failure.png"):
        open_and_run(
            page,
            lab_server,
            "scroll.ipynb",
            "%load_ext jobmagic",
            IN_A_BOX,
            f"job = %job start {TICKER}",
        )
        page.locator(".my-dashboard").wait_for()
        output = page.locator(".jobmagic-job-1 .jobmagic-output")
        output.locator("pre", has_text="line 60").wait_for()
        # The panel is inside our box, below our title.
        box = page.locator(".widget-vbox", has=page.locator(".my-dashboard")).first
        assert box.locator(".jobmagic-panel").count() == 1
        figures = output.evaluate(SCROLL)
        assert figures[2] > figures[1] + 100, f"the output does not overflow: {figures}"

        # While lines arrive, the newest stays in view (the box's bottom is the text's).
        for _ in range(3):
            shown = last_line(output)
            output.locator("pre", has_text=f"line {shown + 5}").wait_for()
            below = output.evaluate(BELOW_BOTTOM)
            assert abs(below) <= 2, f"{below} px below the bottom; scroll {output.evaluate(SCROLL)}"

        # The user scrolls up: their place stays while more lines arrive.
        output.hover()
        page.mouse.wheel(0, -150)
        page.wait_for_function(
            f"() => ({BELOW_BOTTOM})(document.querySelector('.jobmagic-job-1 .jobmagic-output'))"
            " > 100"
        )
        before, above = output.evaluate(SCROLL), output.evaluate(ABOVE_TOP)
        shown = last_line(output)
        output.locator("pre", has_text=f"line {shown + 10}").wait_for()  # 10 lines more
        after = output.evaluate(SCROLL)
        below = output.evaluate(BELOW_BOTTOM)
        assert after[2] > before[2], f"the text did not grow: {before} -> {after}"
        assert below > 100, f"jumped back to the bottom: {below} px below; {before} -> {after}"
        # The same lines in view: as much text above the box's top as before.
        moved = output.evaluate(ABOVE_TOP) - above
        assert abs(moved) <= 2, f"the view moved {moved} px; scroll {before} -> {after}"

        stop_all(page, 1)


# A real tqdm bar at 50 of 100 (on stderr, which the log merges), then blocks.
TQDM_HALF = (
    f'{sys.executable} -c "from tqdm import tqdm; import time; '
    'bar = tqdm(total=100, mininterval=0); bar.update(50); bar.refresh(); time.sleep(300)"'
)


@pytest.mark.timeout(240)
def test_a_job_halfway_shows_a_half_full_progress_bar(
    lab_server: Any, browser_page: Any, tmp_path: Path
) -> None:
    pytest.importorskip("tqdm")
    page = browser_page
    with screenshot_on_failure(page, tmp_path / "panel-progress-failure.png"):
        open_and_run(
            page,
            lab_server,
            "progress.ipynb",
            "%load_ext jobmagic",
            "%job panel",
            f"job = %job start {TQDM_HALF}",
        )
        row = page.locator(".jobmagic-job-1")
        bar = row.locator(".jobmagic-progress-bar")
        bar.wait_for()
        fill = bar.evaluate("el => el.getBoundingClientRect().width / el.parentElement.clientWidth")
        assert 0.4 <= fill <= 0.6, f"the bar is {fill:.0%} full"
        assert "50%" in row.locator(".jobmagic-summary").inner_text()
        page.screenshot(path=str(tmp_path / "panel-progress.png"))

        stop_all(page, 1)
        assert row.locator(".jobmagic-progress-bar").count() == 0  # only while it runs


# Starts "train" unless this kernel already has it (after a restart it re-attached it).
START_ONCE = (
    "from jobmagic import get_service\n"
    "if not any(w.name == 'train' for w in get_service().list()):\n"
    f"    job = %job start --name train {JOB}\n"
    "print('train is here')"
)
RESTART = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.sessionContext.session.kernel.restart();
  await panel.sessionContext.ready;
}"""


@pytest.mark.timeout(240)
def test_a_kernel_restart_keeps_the_job_and_the_new_kernels_panel_shows_it(
    lab_server: Any, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    with screenshot_on_failure(page, tmp_path / "panel-restart-failure.png"):
        open_and_run(page, lab_server, "restart.ipynb", "%load_ext jobmagic", START_ONCE)
        page.locator(".jp-OutputArea-output", has_text="train is here").wait_for()
        (before,) = JobStore().list()
        assert before.state is JobState.RUNNING
        assert before.session == str(lab_server.root_dir / "restart.ipynb")  # Jupyter named it

        page.evaluate(RESTART)  # what Kernel > Restart Kernel does once confirmed
        assert before.pid is not None
        assert live_group_members(before.pid), "the restart stopped the job"
        (lab_server.root_dir / "restart.ipynb").write_text(
            notebook("%load_ext jobmagic", START_ONCE, "%job panel")
        )
        page.reload()
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        page.evaluate(RUN_ALL)

        said = "re-attached 1 job from before the restart: train"
        page.locator(".jp-OutputArea-output", has_text=said).wait_for()
        row = page.locator(f".jobmagic-job-{before.id}")
        row.locator('.jobmagic-summary[data-state="running"]').wait_for()
        after = JobStore().get(before.id)
        assert after is not None
        assert (after.pid, after.state) == (before.pid, JobState.RUNNING)
        assert after.owner_pid != before.owner_pid  # the new kernel owns it now
        assert len(JobStore().list()) == 1  # and nothing was started twice

        row.locator("button.jobmagic-stop").click()
        row.locator('.jobmagic-summary[data-state="stopped"]').wait_for()
        assert live_group_members(before.pid) == []
