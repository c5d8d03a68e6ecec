"""The panel in a real JupyterLab, driven by headless Chromium.

A notebook runs ``%load_ext jobmagic`` and ``%job panel``, then starts a job in another
cell: its row shows RUNNING, its output appears, and clicking its Stop button in the page
stops it (the row shows STOPPED and the process is gone).
"""

from __future__ import annotations

import json
import os
import sys
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
    assert row.locator("button.jobmagic-stop").is_disabled()
    page.screenshot(path=str(lab_server.root_dir.parent / "panel-stopped.png"))

    final = JobStore().get(record.id)
    assert final is not None
    assert final.state is JobState.STOPPED
    assert final.stop_requested_by == "ui"
    with pytest.raises(ProcessLookupError):
        os.kill(record.pid, 0)
    assert live_group_members(record.pid) == []
