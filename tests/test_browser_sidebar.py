"""The JupyterLab frontend in a real browser: the Jobs section of the Running sidebar,
its stop buttons, the live log panel and the status bar count.

Jobs are started in the test process with the engine (same job home as the server) or,
for the killed-kernel case, by a separate Python process that is then SIGKILLed. Every
wait is Playwright's auto-waiting ``expect`` or a handshake (a FIFO the job blocks on).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import python_cmd

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Locator, Page

    from jobmagic.engine.service import WorkerService

pytestmark = [pytest.mark.browser]

SHOTS = Path("/tmp/jobmagic-shots")
#: How long the UI may take to show a change (the change feed delivers in well under 1 s;
#: the margin is for a loaded CI machine).
UI_TIMEOUT = 10_000  # ms
#: A job that prints a line and then waits for a signal.
SLEEPER = python_cmd("import signal; print('ready', flush=True); signal.pause()")


@pytest.fixture
def service() -> Iterator[WorkerService]:
    """A WorkerService of this test process (same job home as the lab server)."""
    from jobmagic.engine.service import WorkerService

    svc = WorkerService()
    try:
        yield svc
    finally:
        svc.shutdown()


def open_lab(page: Page, server: LabServer) -> None:
    """Load JupyterLab and wait until it has restored its layout."""
    page.goto(f"{server.url}lab?token={server.token}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")


def open_running_sidebar(page: Page) -> Locator:
    """Click the Running tab of the left sidebar; return the Jobs section's header.

    The header (an accordion title) holds the section's name and its toolbar, with
    "Shut Down All"; the items are in the section it controls.
    """
    from playwright.sync_api import expect

    page.click('.jp-SideBar.jp-mod-left [data-id="jp-running-sessions"]')
    sidebar = page.locator("#jp-running-sessions")
    expect(sidebar).to_be_visible(timeout=UI_TIMEOUT)
    header = sidebar.locator('.lm-AccordionPanel-title[aria-label="Jobs Section"]')
    expect(header).to_be_visible(timeout=UI_TIMEOUT)
    expect(header).to_have_attribute("aria-expanded", "true")
    return header


def job_item(page: Page, job_id: int | None) -> Locator:
    """The Running-sidebar item of a job."""
    return page.locator(f'.jp-JobmagicItem[data-context="jobmagic-job-{job_id}"]')


def stop_from_sidebar(page: Page, job_id: int | None) -> None:
    """Hover a job's item (its stop button only shows on hover) and click the button."""
    item = job_item(page, job_id)
    item.hover()
    item.locator(".jp-RunningSessions-itemShutdown").click()


def assert_process_gone(pid: int | None) -> None:
    """The process has exited (a zombie nobody reaped yet counts as gone)."""
    assert pid is not None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return
    state = stat.rsplit(")", 1)[1].split()[0]
    assert state == "Z", f"pid {pid} is still running (state {state})"


@pytest.mark.timeout(240)
def test_running_job_is_listed_and_its_stop_button_stops_it(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState

    worker = service.start(SLEEPER, name="sleeper")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)

    item = job_item(browser_page, worker.id)
    expect(item).to_be_visible(timeout=UI_TIMEOUT)
    expect(item.locator(".jp-RunningSessions-itemLabel")).to_have_text("sleeper")
    expect(item.locator(".jp-RunningSessions-itemDetail")).to_contain_text("running")

    stop_from_sidebar(browser_page, worker.id)

    assert worker.wait(timeout=30) == -signal.SIGTERM
    assert worker.state is JobState.STOPPED
    assert_process_gone(worker.pid)
    expect(item.locator(".jp-RunningSessions-itemDetail")).to_contain_text(
        "stopped", timeout=UI_TIMEOUT
    )
    expect(item).to_have_class(re.compile(r"\bjp-mod-stopped\b"), timeout=UI_TIMEOUT)
    # A finished job has nothing left to stop.
    expect(item.locator(".jp-RunningSessions-itemShutdown")).to_have_count(0)


@pytest.mark.timeout(240)
def test_status_bar_counts_running_jobs_and_shut_down_all_stops_them(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    open_lab(browser_page, lab_server)
    header = open_running_sidebar(browser_page)
    status = browser_page.locator(".jp-JobmagicStatus")
    expect(status).to_be_hidden()  # no job runs yet

    first = service.start(SLEEPER, name="first")
    expect(status).to_have_text("1 job running", timeout=UI_TIMEOUT)
    second = service.start(SLEEPER, name="second")
    expect(status).to_have_text("2 jobs running", timeout=UI_TIMEOUT)
    expect(job_item(browser_page, second.id)).to_be_visible(timeout=UI_TIMEOUT)

    first.stop()
    expect(status).to_have_text("1 job running", timeout=UI_TIMEOUT)
    third = service.start(SLEEPER, name="third")
    expect(status).to_have_text("2 jobs running", timeout=UI_TIMEOUT)
    expect(job_item(browser_page, third.id)).to_be_visible(timeout=UI_TIMEOUT)

    header.locator(".jp-RunningSessions-shutdownAll").click()
    dialog = browser_page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Stop 2 jobs?")
    dialog.locator("button.jp-mod-warn").click()

    assert second.wait(timeout=30) == -signal.SIGTERM
    assert third.wait(timeout=30) == -signal.SIGTERM
    assert_process_gone(second.pid)
    assert_process_gone(third.pid)
    expect(status).to_be_hidden(timeout=UI_TIMEOUT)
    for worker in (first, second, third):
        expect(job_item(browser_page, worker.id)).to_contain_text("stopped", timeout=UI_TIMEOUT)


#: Prints a first line, a collapsed progress bar and a red line, then blocks on a FIFO
#: until the test lets it print a second line; then blocks again until told to finish.
LIVE_LOG_JOB = textwrap.dedent(
    """
    import sys
    go, done = sys.argv[1], sys.argv[2]
    print('first line', flush=True)
    sys.stdout.write('progress 10%\\rprogress 50%\\rprogress 100%\\n')
    sys.stdout.write('\\x1b[31mred text\\x1b[0m plain text\\n')
    sys.stdout.flush()
    open(go).read()
    print('second line', flush=True)
    open(done).read()
    print('last line', flush=True)
    """
)


def release(fifo: Path) -> None:
    """Let a job blocked on reading ``fifo`` go on (opening blocks until it reads)."""
    with open(fifo, "w") as f:
        f.write("go")


@pytest.mark.timeout(240)
def test_log_panel_follows_the_log_live(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState

    go, done = tmp_path / "go.fifo", tmp_path / "done.fifo"
    os.mkfifo(go)
    os.mkfifo(done)
    script = tmp_path / "live_log_job.py"
    script.write_text(LIVE_LOG_JOB)
    worker = service.start(f"{sys.executable} {script} {go} {done}", name="live-log")

    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    job_item(browser_page, worker.id).locator(".jp-RunningSessions-itemLabel").click()

    log = browser_page.locator(f'.jp-JobLog[data-job-id="{worker.id}"]')
    text = log.locator(".jp-JobLog-text")
    expect(text).to_contain_text("first line", timeout=UI_TIMEOUT)
    expect(text).to_contain_text("progress 100%")
    expect(text).not_to_contain_text("progress 10%")  # the \r overwrites are collapsed
    red = text.locator(".jp-JobLog-fg1")
    expect(red).to_have_text("red text")
    expect(red).to_have_css("color", "rgb(231, 92, 88)")
    expect(text).not_to_contain_text("\x1b")
    expect(text).not_to_contain_text("second line")
    expect(log.locator(".jp-JobLog-state")).to_have_text("running")

    release(go)
    expect(text).to_contain_text("second line", timeout=UI_TIMEOUT)
    assert text.inner_text().splitlines() == [
        "first line",
        "progress 100%",
        "red text plain text",
        "second line",
    ]

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser_page.set_viewport_size({"width": 1280, "height": 720})
    browser_page.screenshot(path=str(SHOTS / "sidebar-and-log.png"))

    release(done)
    assert worker.wait(timeout=30) == 0
    assert worker.state is JobState.SUCCEEDED
    expect(text).to_contain_text("last line", timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-state")).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-details")).to_contain_text("exit code 0")
    expect(log).to_have_attribute("data-complete", "true", timeout=UI_TIMEOUT)


#: Starts a job (not detached) through the engine, reports it, then waits for stdin.
ORPHAN_PARENT = textwrap.dedent(
    """
    import sys
    from jobmagic.engine.service import WorkerService
    worker = WorkerService().start(sys.argv[1], name='orphan', detach=False)
    print(worker.id, worker.pid, flush=True)
    sys.stdin.read()
    """
)


@contextlib.contextmanager
def job_of_a_killed_process(command: str) -> Iterator[tuple[int, int]]:
    """Start ``command`` as a job from a separate Python process, then SIGKILL that process.

    Yields the job's (id, pid); the job outlives its owner.
    """
    owner = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        job_id, pid = map(int, owner.stdout.readline().split())
    finally:
        owner.kill()  # SIGKILL: no chance to stop its jobs
        owner.wait(10)
        for stream in (owner.stdin, owner.stdout):
            if stream is not None:
                stream.close()
    try:
        yield job_id, pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the job leads its own process group


@pytest.mark.timeout(240)
def test_job_of_a_killed_kernel_is_listed_and_can_be_stopped(
    lab_server: LabServer, browser_page: Page
) -> None:
    from playwright.sync_api import expect

    with job_of_a_killed_process(SLEEPER) as (job_id, pid):
        os.kill(pid, 0)  # still alive after its owner was killed

        open_lab(browser_page, lab_server)
        open_running_sidebar(browser_page)
        item = job_item(browser_page, job_id)
        expect(item).to_be_visible(timeout=UI_TIMEOUT)
        expect(item.locator(".jp-RunningSessions-itemLabel")).to_have_text("orphan")
        expect(item.locator(".jp-RunningSessions-itemDetail")).to_contain_text(
            "orphaned", timeout=UI_TIMEOUT
        )

        stop_from_sidebar(browser_page, job_id)
        expect(item.locator(".jp-RunningSessions-itemDetail")).to_contain_text(
            "stopped", timeout=UI_TIMEOUT
        )
        assert_process_gone(pid)
