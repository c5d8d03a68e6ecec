"""The JupyterLab frontend in a real browser: the job context menu on log tabs (by mouse
and keyboard) and the command palette's "Jobs" commands.

Jobs are started in the test process with the engine (same job home as the server); a job
that must still run blocks on a FIFO or waits for a signal.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import python_cmd
from test_browser_notify import exits_when_released, make_fifo, wait_until_listed
from test_browser_sidebar import UI_TIMEOUT, job_item, open_lab, open_running_sidebar

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Locator, Page

    from jobmagic.engine.service import WorkerService
    from jobmagic.engine.worker import Worker

pytestmark = [pytest.mark.browser]


def log_tab(page: Page, worker: Worker) -> Locator:
    """Open the job's log from the sidebar; return its tab in the main area."""
    from playwright.sync_api import expect

    job_item(page, worker.id).locator(".jp-RunningSessions-itemLabel").click()
    tab = page.locator(f'.lm-TabBar-tab.jp-JobmagicLogTab[data-jobmagic-job="{worker.id}"]')
    expect(tab).to_be_visible(timeout=UI_TIMEOUT)
    return tab


def menu_entry(page: Page, command: str) -> Locator:
    """The entry of ``command`` in the context menu that is open."""
    from playwright.sync_api import expect

    menu = page.locator(".lm-Menu")
    expect(menu).to_be_visible(timeout=UI_TIMEOUT)
    return menu.locator(f'.lm-Menu-item[data-command="{command}"]')


def clipboard(page: Page) -> str:
    """The text on the system clipboard."""
    text = page.evaluate("navigator.clipboard.readText()")
    assert isinstance(text, str)
    return text


@pytest.mark.timeout(240)
def test_log_tab_menu_copies_the_command_and_log_path_and_stops_the_job(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState

    browser_page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=lab_server.url.rstrip("/")
    )
    go = make_fifo(tmp_path, "go")
    worker = service.start(exits_when_released(go, 0), name="copied")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    tab = log_tab(browser_page, worker)

    tab.click(button="right")
    menu_entry(browser_page, "jobmagic:copy-command").click()
    assert clipboard(browser_page) == worker.command

    # From the keyboard: Shift+F10 on the focused tab, arrows to the entry, Enter.
    tab.focus()
    browser_page.keyboard.press("Shift+F10")
    entry = menu_entry(browser_page, "jobmagic:copy-log-path")
    for _ in range(20):
        if "lm-mod-active" in (entry.get_attribute("class") or ""):
            break
        browser_page.keyboard.press("ArrowDown")
    expect(entry).to_have_class(re.compile(r"\blm-mod-active\b"))
    browser_page.keyboard.press("Enter")
    record = service.store.get(worker.id or 0)
    assert record is not None
    assert record.log_path is not None
    expect(browser_page.locator(".lm-Menu")).to_have_count(0)
    assert clipboard(browser_page) == record.log_path

    tab.click(button="right")
    menu_entry(browser_page, "jobmagic:stop").click()
    assert worker.wait(timeout=30) == -signal.SIGTERM
    assert worker.state is JobState.STOPPED
    wait_until_listed(browser_page, worker.id, "stopped")


@pytest.mark.timeout(240)
def test_log_tab_menu_removes_a_finished_job_and_its_log(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    worker = service.start(python_cmd("print('bye')"), name="done")
    assert worker.wait(timeout=30) == 0
    record = service.store.get(worker.id or 0)
    assert record is not None
    assert record.log_path is not None
    log = Path(record.log_path)
    assert log.read_bytes() == b"bye\n"
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    tab = log_tab(browser_page, worker)

    # The sidebar item's menu, opened from the keyboard, offers it too.
    job_item(browser_page, worker.id).focus()
    browser_page.keyboard.press("Shift+F10")
    disabled = re.compile(r"\blm-mod-disabled\b")
    expect(menu_entry(browser_page, "jobmagic:remove-job")).not_to_have_class(disabled)
    expect(menu_entry(browser_page, "jobmagic:stop")).to_have_class(disabled)
    browser_page.keyboard.press("Escape")
    expect(browser_page.locator(".lm-Menu")).to_have_count(0)

    tab.click(button="right")
    menu_entry(browser_page, "jobmagic:remove-job").click()
    dialog = browser_page.locator(".jp-Dialog")
    expect(dialog).to_contain_text(f"Remove job done (#{worker.id})?")
    dialog.locator("button.jp-mod-warn").click()

    expect(job_item(browser_page, worker.id)).to_have_count(0, timeout=UI_TIMEOUT)
    expect(tab).to_have_count(0)  # its log is gone: so is its tab
    assert service.store.get(worker.id or 0) is None
    assert not log.exists()


@pytest.mark.timeout(240)
def test_palette_stops_all_running_jobs_and_opens_a_chosen_log(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    sleeper = python_cmd("import signal; signal.pause()")
    first = service.start(sleeper, name="first")
    second = service.start(sleeper, name="second")
    done = service.start(python_cmd("pass"), name="done")
    assert done.wait(timeout=30) == 0
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    wait_until_listed(browser_page, second.id, "running")

    # JupyterLab focuses the Launcher of an empty main area a moment after the page is
    # restored, which closes a palette opened before: open it once that has happened.
    browser_page.wait_for_function(
        "document.activeElement.closest('.jp-Launcher') !== null", timeout=UI_TIMEOUT
    )
    palette = browser_page.locator("#command-palette")
    browser_page.keyboard.press("Control+Shift+C")
    expect(palette).to_be_visible(timeout=UI_TIMEOUT)
    browser_page.keyboard.type("Stop all running")
    entry = palette.locator('.lm-CommandPalette-item[data-command="jobmagic:stop-all"]')
    expect(entry).to_contain_text("Stop all running")
    expect(palette.locator(".lm-CommandPalette-header").first).to_contain_text("Jobs")
    browser_page.keyboard.press("Enter")
    dialog = browser_page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Stop 2 jobs?")
    dialog.locator("button.jp-mod-warn").click()
    assert first.wait(timeout=30) == -signal.SIGTERM
    assert second.wait(timeout=30) == -signal.SIGTERM
    wait_until_listed(browser_page, first.id, "stopped")

    browser_page.keyboard.press("Control+Shift+C")
    expect(palette).to_be_visible(timeout=UI_TIMEOUT)
    browser_page.keyboard.type("Open log of")
    browser_page.keyboard.press("Enter")
    choice = browser_page.locator(".jp-Dialog select")
    expect(choice).to_be_visible(timeout=UI_TIMEOUT)
    labels = choice.locator("option").all_inner_texts()
    assert labels == [
        f"done (#{done.id}) succeeded",
        f"second (#{second.id}) stopped (killed by SIGTERM)",
        f"first (#{first.id}) stopped (killed by SIGTERM)",
    ]
    choice.select_option(label=labels[2])
    browser_page.keyboard.press("Enter")
    log = browser_page.locator(f'.jp-JobLog[data-job-id="{first.id}"]')
    expect(log).to_be_visible(timeout=UI_TIMEOUT)
