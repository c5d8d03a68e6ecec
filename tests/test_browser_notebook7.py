"""Jupyter Notebook 7 in a real browser: the tree page's Running tab lists jobmagic jobs,
and clicking one opens its live log as a new tab of the tree page.

A real ``jupyter notebook`` server (Notebook 7, fixture ``notebook_server``) and a real
job started in the test process with the engine, which prints a line and then blocks on
a FIFO until the test lets it exit. Every wait is Playwright's auto-waiting ``expect``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_browser_sidebar import UI_TIMEOUT, job_item, release

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import ConsoleMessage, Error, Locator, Page

    from jobmagic.engine.service import WorkerService

pytestmark = [pytest.mark.browser]

SHOTS = Path("/tmp/jobmagic-shots")
PLUGIN_ID = "jobmagic:plugin"
#: Where Notebook 7 serves the jobmagic frontend from (as JupyterLab does).
BUNDLE_PATH = "/lab/extensions/jobmagic/"
#: Prints a known line, then blocks until the test writes to the FIFO named by argv[1].
WAITING_JOB = "import sys; print('hello from the job', flush=True); open(sys.argv[1]).read()"


class PageProblems:
    """The page's uncaught errors, and its console errors and warnings, as they come."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", self._on_error)
        page.on("console", self._on_console)

    def _on_error(self, error: Error) -> None:
        self.errors.append(f"{error.message}\n{error.stack}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def of_jobmagic(self) -> list[str]:
        """The errors thrown in jobmagic's code and the console lines that name it.

        Notebook 7.6 itself throws one error on every page load ("Cannot read properties
        of undefined (reading 'schema')", from its shortcuts plugin), with or without
        jobmagic, so only jobmagic's own problems count.
        """
        thrown = [error for error in self.errors if BUNDLE_PATH in error]
        logged = [line for line in self.console if "jobmagic" in line.lower()]
        return thrown + logged


def open_tree(page: Page, server: LabServer) -> None:
    """Load Notebook 7's tree page and wait until its plugins have started."""
    page.goto(f"{server.url}tree?token={server.token}")
    page.wait_for_selector(".jp-TreePanel", timeout=120_000)
    # window.jupyterapp exists because the server runs with expose_app_in_browser.
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")


def tree_tab(page: Page, label: str) -> Locator:
    """The tab of the tree page's tab bar whose label is ``label``."""
    return page.locator(".jp-TreePanel > .lm-TabBar .lm-TabBar-tab").filter(
        has=page.locator(".lm-TabBar-tabLabel", has_text=label)
    )


@pytest.mark.timeout(240)
def test_clicking_a_job_in_the_running_tab_opens_its_log_in_a_tree_tab(
    notebook_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState

    go = tmp_path / "go.fifo"
    os.mkfifo(go)
    script = tmp_path / "waiting_job.py"
    script.write_text(WAITING_JOB)
    worker = service.start(f"{sys.executable} {script} {go}", name="nb7-job")

    page = browser_page
    problems = PageProblems(page)
    open_tree(page, notebook_server)
    state = page.evaluate(
        """(id) => ({
            name: window.jupyterapp.name,
            activated: window.jupyterapp.isPluginActivated(id),
        })""",
        PLUGIN_ID,
    )
    assert state == {"name": "Jupyter Notebook", "activated": True}
    assert problems.of_jobmagic() == []
    # Notebook 7 has no status bar: the plugin goes without its item.
    expect(page.locator(".jp-JobmagicStatus")).to_have_count(0)

    tree_tab(page, "Running").click()
    item = job_item(page, worker.id)
    expect(item.locator(".jp-RunningSessions-itemLabel")).to_have_text(
        "nb7-job", timeout=UI_TIMEOUT
    )
    item.locator(".jp-RunningSessions-itemLabel").click()

    log_tab = tree_tab(page, "Log: nb7-job")
    expect(log_tab).to_have_class(re.compile(r"\blm-mod-current\b"), timeout=UI_TIMEOUT)
    log = page.locator(f'.jp-TreePanel .jp-JobLog[data-job-id="{worker.id}"]')
    expect(log).to_be_visible()
    expect(log).to_contain_text("hello from the job", timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-state")).to_have_text("running")

    # A second click shows the same tab again rather than opening another.
    tree_tab(page, "Running").click()
    expect(log).to_be_hidden()
    item.locator(".jp-RunningSessions-itemLabel").click()
    expect(log).to_be_visible(timeout=UI_TIMEOUT)
    expect(log_tab).to_have_count(1)

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.screenshot(path=str(SHOTS / "notebook7-log-tab.png"))

    release(go)
    assert worker.wait(timeout=30) == 0
    assert worker.state is JobState.SUCCEEDED
    expect(log.locator(".jp-JobLog-state")).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(log).to_contain_text("exit code 0")

    # Its tab closes like Notebook 7's own (Settings) tabs, and a click opens it anew.
    log_tab.locator(".lm-TabBar-tabCloseIcon").click()
    expect(log_tab).to_have_count(0)
    expect(log).to_have_count(0)
    tree_tab(page, "Running").click()
    item.locator(".jp-RunningSessions-itemLabel").click()
    expect(log).to_contain_text("hello from the job", timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-state")).to_have_text("succeeded")
    expect(log_tab).to_have_count(1)

    assert problems.of_jobmagic() == []
