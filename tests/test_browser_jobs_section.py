"""The Jobs section of the Running sidebar in a real browser: its height, the finished
jobs beyond the latest ten collapsed into "N more finished", the notebook in a job's
tooltip, and a stop's "stopping" state with the grace time left (sidebar and status bar).

Jobs are started in the test process with the engine, against the lab server's store.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from helpers import python_cmd
from test_browser_sidebar import (
    SLEEPER,
    UI_TIMEOUT,
    job_item,
    open_lab,
    open_running_sidebar,
    stop_from_sidebar,
)

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Page

    from jobmagic.engine.service import WorkerService

pytestmark = [pytest.mark.browser]

#: A job that says it is ready and then ignores SIGTERM: its stop lasts the whole grace.
STUBBORN = python_cmd(
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(60)"
)


@pytest.fixture
def notebook_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerService]:
    """A WorkerService as a notebook's kernel has it: Jupyter names the notebook."""
    from jobmagic.engine.service import WorkerService

    monkeypatch.setenv("JPY_SESSION_NAME", "work/train.ipynb")
    svc = WorkerService()
    try:
        yield svc
    finally:
        svc.shutdown()


def wait_ready(worker: object) -> None:
    """Wait until the job printed its first line (it is past its signal setup)."""
    for chunk in worker.stream():  # type: ignore[attr-defined]
        if b"ready" in chunk:
            return
    raise AssertionError("the job ended before it was ready")


@pytest.mark.timeout(240)
def test_the_jobs_section_is_the_tallest_and_collapses_older_finished_jobs(
    lab_server: LabServer, browser_page: Page, notebook_service: WorkerService
) -> None:
    from playwright.sync_api import expect

    service = notebook_service
    for i in range(14):  # one after the other: they end in this order
        assert service.start(f"exit {i % 2}", name=f"done-{i}").wait(timeout=30) == i % 2
    live = service.start(SLEEPER, name="live")
    browser_page.set_viewport_size({"width": 1400, "height": 900})
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    expect(job_item(browser_page, live.id)).to_be_visible(timeout=UI_TIMEOUT)

    # The Jobs section has four times the share of each other section.
    heights = {
        title: box["height"]
        for title, box in browser_page.evaluate(
            """() => Array.from(document.querySelectorAll(
                   '#jp-running-sessions .lm-AccordionPanel-title')).map(t => {
                 const section = t.nextElementSibling.getBoundingClientRect();
                 return [t.getAttribute('aria-label'), {height: section.height}];
               })"""
        )
    }
    jobs_height = heights.pop("Jobs Section")
    assert heights, "the sidebar has other sections"
    assert jobs_height >= 3 * max(heights.values()), (jobs_height, heights)

    items = browser_page.locator(".jp-JobmagicItem")
    more = browser_page.locator(".jp-JobmagicMore")
    expect(items).to_have_count(1 + 10, timeout=UI_TIMEOUT)
    expect(more.locator(".jp-RunningSessions-itemLabel")).to_have_text("4 more finished")
    # The latest to end come first; the four oldest are behind "4 more finished".
    labels = items.locator(".jp-RunningSessions-itemLabel")
    expect(labels).to_have_text(["live", *[f"done-{i}" for i in range(13, 3, -1)]])
    more.locator(".jp-RunningSessions-itemLabel").click()
    expect(labels).to_have_text(["live", *[f"done-{i}" for i in range(13, -1, -1)]])
    expect(more.locator(".jp-RunningSessions-itemLabel")).to_have_text("Show fewer finished")
    more.locator(".jp-RunningSessions-itemLabel").click()
    expect(items).to_have_count(11)

    # The tooltip names the notebook that started the job, then its kernel.
    title = job_item(browser_page, live.id).locator(".jp-RunningSessions-itemLabel")
    expect(title).to_have_attribute(
        "title", re.compile(r"^Notebook: work/train\.ipynb$", re.MULTILINE)
    )
    expect(title).to_have_attribute("title", re.compile(r"^Kernel: \S+:\d+$", re.MULTILINE))
    live.stop()


@pytest.mark.timeout(240)
def test_a_stop_shows_stopping_with_the_grace_left_until_the_job_ends(
    lab_server: LabServer, browser_page: Page, notebook_service: WorkerService
) -> None:
    from playwright.sync_api import expect

    service = notebook_service
    worker = service.start(STUBBORN, name="stubborn")
    wait_ready(worker)
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    item = job_item(browser_page, worker.id)
    detail = item.locator(".jp-RunningSessions-itemDetail")
    expect(detail).to_contain_text("running", timeout=UI_TIMEOUT)
    status = browser_page.locator(".jp-JobmagicStatus")
    expect(status).to_have_text("1 job running", timeout=UI_TIMEOUT)

    # The server's stop gives the job 5 s (JobmagicServer.stop_timeout) before SIGKILL.
    stop_from_sidebar(browser_page, worker.id)
    expect(item).to_have_class(re.compile(r"\bjp-mod-stopping\b"), timeout=UI_TIMEOUT)
    expect(detail).to_have_text(re.compile(r"^stopping [1-5]s left$"))
    expect(status).to_have_text("1 job running, 1 stopping")
    # A stopping job has no stop button: a second stop would change nothing.
    item.hover()
    expect(item.locator(".jp-RunningSessions-itemShutdown")).to_have_count(0)
    # The count goes down with the page's clock, second by second.
    first = detail.inner_text()
    expect(detail).not_to_have_text(first, timeout=UI_TIMEOUT)

    assert worker.wait(timeout=30) == -signal.SIGKILL
    expect(item).to_have_class(re.compile(r"\bjp-mod-stopped\b"), timeout=UI_TIMEOUT)
    expect(detail).to_contain_text("stopped")
    expect(status).to_be_hidden(timeout=UI_TIMEOUT)
