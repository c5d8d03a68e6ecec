"""The JupyterLab frontend in a real browser: the Jobs section of the Running sidebar,
its stop buttons, its context menu (pause, resume, restart), its tree by queue group, the
live log panel and the status bar count.

Jobs are started in the test process with the engine (same job home as the server) or,
for the killed-kernel case, by a separate Python process that is then SIGKILLed. Every
wait is Playwright's auto-waiting ``expect`` or a handshake (a FIFO the job blocks on),
except for a job's processes acting on SIGSTOP / SIGCONT, which ``/proc`` shows within a
deadline (nothing offers a way to wait for another process's stop).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import python_cmd, wait_until

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


def expect_log_lines(page: Page, job_id: int | None, lines: list[str]) -> None:
    """Wait until the terminal of the job's log view holds exactly ``lines``.

    It reads the terminal's buffer (``bufferLines()`` of the view), not its DOM: xterm
    draws only the rows on screen.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    read = (
        "id => [...window.jupyterapp.shell.widgets('main')]"
        ".find(w => w.id === `jobmagic-log-${id}`)?.content.bufferLines()"
    )
    try:
        page.wait_for_function(
            f"([id, lines]) => JSON.stringify(({read})(id)) === JSON.stringify(lines)",
            arg=[job_id, lines],
            timeout=UI_TIMEOUT,
        )
    except PlaywrightTimeoutError:
        assert page.evaluate(read, job_id) == lines


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
    # The whole text, so no "progress 10%" (the \r overwrites are collapsed), no escape
    # sequence and no "second line" yet.
    expect_log_lines(
        browser_page, worker.id, ["first line", "progress 100%", "red text plain text"]
    )
    red = log.locator(".xterm-rows .xterm-fg-1")
    expect(red).to_have_text("red text")
    expect(red).to_have_css("color", "rgb(231, 92, 88)")
    expect(log.locator(".jp-JobLog-state")).to_have_text("running")
    # Its CPU and memory, read from the usage API while it runs ("CPU 0% · 9.5 MiB").
    usage = log.locator(".jp-JobLog-usage")
    expect(usage).to_have_text(re.compile(r"^CPU \d+% · [\d.]+ [KMG]iB$"), timeout=UI_TIMEOUT)

    release(go)
    expect_log_lines(
        browser_page,
        worker.id,
        ["first line", "progress 100%", "red text plain text", "second line"],
    )

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser_page.set_viewport_size({"width": 1280, "height": 720})
    browser_page.screenshot(path=str(SHOTS / "sidebar-and-log.png"))

    release(done)
    assert worker.wait(timeout=30) == 0
    assert worker.state is JobState.SUCCEEDED
    expect_log_lines(
        browser_page,
        worker.id,
        ["first line", "progress 100%", "red text plain text", "second line", "last line"],
    )
    expect(log.locator(".jp-JobLog-state")).to_have_text("succeeded", timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-details")).to_contain_text("exit code 0")
    expect(usage).to_be_hidden()  # no live usage once it has ended
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


def process_group_states(pgid: int | None) -> dict[int, str]:
    """The state letter (``/proc/<pid>/stat``) of each live process in group ``pgid``."""
    assert pgid is not None
    states = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            states[int(entry.name)] = state
    return states


def wait_for_processes(pgid: int | None, *, stopped: bool) -> dict[int, str]:
    """Wait until every process of group ``pgid`` is stopped (state T), or none is.

    ``kill()`` returns before the signal is acted on, and the kernel offers nothing to
    wait on for another process's stop, so this checks ``/proc`` within a deadline.
    """

    def settled() -> dict[int, str] | None:
        states = process_group_states(pgid)
        assert states, f"the processes of group {pgid} are gone"
        all_stopped = set(states.values()) == {"T"}
        none_stopped = "T" not in states.values()
        return states if (all_stopped if stopped else none_stopped) else None

    return wait_until(settled, timeout=10, message=f"group {pgid} stopped={stopped}")


def job_json(server: LabServer, job_id: int | None) -> dict[str, object]:
    """The job as the REST API sends it."""
    with urllib.request.urlopen(server.api_url(f"jobmagic/api/jobs/{job_id}"), timeout=10) as r:
        return dict(json.load(r))


def context_menu_entry(page: Page, job_id: int | None, command: str) -> Locator:
    """Right-click a job's item; return the entry of ``command`` in the menu that opens."""
    from playwright.sync_api import expect

    job_item(page, job_id).locator(".jp-RunningSessions-itemLabel").click(button="right")
    menu = page.locator(".lm-Menu")
    expect(menu).to_be_visible(timeout=UI_TIMEOUT)
    return menu.locator(f'.lm-Menu-item[data-command="{command}"]')


def close_menu(page: Page) -> None:
    """Close an open context menu without choosing anything: Escape, pressed in it.

    (On the menu, not wherever the keyboard's focus is: a sidebar that redraws while the
    menu is open can take the focus from it, and Lumino's menu hears only its own keys.
    CI saw an Escape go elsewhere once.)
    """
    from playwright.sync_api import expect

    menu = page.locator(".lm-Menu")
    menu.press("Escape")
    expect(menu).to_have_count(0, timeout=UI_TIMEOUT)


@pytest.mark.timeout(240)
def test_paused_job_shows_paused_and_its_runtime_stands_still(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState
    from jobmagic.text.describe import format_runtime

    paused = service.start(SLEEPER, name="paused")
    running = service.start(SLEEPER, name="running")
    service.pause(paused.id)
    assert paused.state is JobState.PAUSED
    wait_for_processes(paused.pid, stopped=True)

    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    item = job_item(browser_page, paused.id)
    expect(item).to_have_class(re.compile(r"\bjp-mod-paused\b"), timeout=UI_TIMEOUT)
    expect(
        item.locator('.jp-RunningSessions-icon svg[data-icon="ui-components:pause"]')
    ).to_have_count(1)
    # The server's runtime leaves the pause out and stands still; the page shows it as is.
    runtime = job_json(lab_server, paused.id)["runtime"]
    assert isinstance(runtime, float)
    detail = item.locator(".jp-RunningSessions-itemDetail")
    expect(detail).to_have_text(f"paused {format_runtime(runtime)}")

    # The running job's clock ticks (the whole list is drawn again each second): after
    # two ticks the paused job's runtime is still the server's figure.
    clock = job_item(browser_page, running.id).locator(".jp-RunningSessions-itemDetail")
    for _ in range(2):
        before = clock.inner_text()
        expect(clock).not_to_have_text(before, timeout=UI_TIMEOUT)
    expect(detail).to_have_text(f"paused {format_runtime(runtime)}")
    assert paused.state is JobState.PAUSED


@pytest.mark.timeout(240)
def test_context_menu_pauses_and_resumes_a_running_job(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    from jobmagic import JobState

    worker = service.start(SLEEPER, name="sleeper")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    item = job_item(browser_page, worker.id)
    expect(item).to_have_class(re.compile(r"\bjp-mod-running\b"), timeout=UI_TIMEOUT)

    # Only what applies to a running job is enabled.
    disabled = re.compile(r"\blm-mod-disabled\b")
    expect(context_menu_entry(browser_page, worker.id, "jobmagic:resume-job")).to_have_class(
        disabled
    )
    close_menu(browser_page)
    expect(context_menu_entry(browser_page, worker.id, "jobmagic:restart-job")).to_have_class(
        disabled
    )
    close_menu(browser_page)
    pause = context_menu_entry(browser_page, worker.id, "jobmagic:pause-job")
    expect(pause).to_have_text(re.compile("Pause Job"))
    expect(pause).not_to_have_class(disabled)
    pause.click()

    expect(item).to_have_class(re.compile(r"\bjp-mod-paused\b"), timeout=UI_TIMEOUT)
    expect(item.locator(".jp-RunningSessions-itemDetail")).to_contain_text("paused")
    record = service.store.get(worker.id or 0)
    assert record is not None
    assert record.state is JobState.PAUSED
    wait_for_processes(worker.pid, stopped=True)

    expect(context_menu_entry(browser_page, worker.id, "jobmagic:pause-job")).to_have_class(
        disabled
    )
    close_menu(browser_page)
    resume = context_menu_entry(browser_page, worker.id, "jobmagic:resume-job")
    expect(resume).not_to_have_class(disabled)
    resume.click()

    expect(item).to_have_class(re.compile(r"\bjp-mod-running\b"), timeout=UI_TIMEOUT)
    record = service.store.get(worker.id or 0)
    assert record is not None
    assert record.state is JobState.RUNNING
    wait_for_processes(worker.pid, stopped=False)

    worker.stop()
    assert worker.wait(timeout=30) == -signal.SIGTERM


@pytest.mark.timeout(240)
def test_tree_view_groups_jobs_by_queue_group(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    service.set_group("gpu", 1)
    train = service.start(SLEEPER, name="train", group="gpu")
    waiting = service.start(SLEEPER, name="waiting", group="gpu")
    prep = service.start(SLEEPER, name="prep")

    open_lab(browser_page, lab_server)
    header = open_running_sidebar(browser_page)
    # A section whose manager offers both views opens in JupyterLab's default, the tree:
    # the "default" group's jobs stand as in the list, each named group is an item.
    gpu = browser_page.locator('.jp-JobmagicGroup[data-context="jobmagic-group-gpu"]')
    gpu_label = gpu.locator("> .jp-RunningSessions-itemLabel")
    expect(gpu_label).to_have_text("gpu — 1 running, 1 queued", timeout=UI_TIMEOUT)
    expect(browser_page.locator(".jp-JobmagicGroup")).to_have_count(1)
    for child in (train, waiting):
        expect(job_item(browser_page, child.id)).to_be_visible()
        expect(
            gpu.locator(f'.jp-JobmagicItem[data-context="jobmagic-job-{child.id}"]')
        ).to_have_count(1)
    expect(job_item(browser_page, prep.id)).to_be_visible()
    expect(gpu.locator(f'[data-context="jobmagic-job-{prep.id}"]')).to_have_count(0)
    queued = job_item(browser_page, waiting.id)
    reason = "1st in group gpu (1/1 running)"
    expect(queued.locator(".jp-RunningSessions-itemDetail")).to_have_text(
        "1st in group gpu (1/1 r…"
    )
    expect(queued.locator(".jp-RunningSessions-itemLabel")).to_have_attribute(
        "title", re.compile(f"^Waiting: {re.escape(reason)}$", re.MULTILINE)
    )

    # A paused group says so (its queued job waits for it).
    service.pause(group="gpu")
    expect(gpu_label).to_have_text("gpu (paused) — 1 paused, 1 queued", timeout=UI_TIMEOUT)
    expect(gpu).to_have_class(re.compile(r"\bjp-mod-paused\b"))
    service.resume(group="gpu")
    expect(gpu_label).to_have_text("gpu — 1 running, 1 queued", timeout=UI_TIMEOUT)

    # The section header's view switch flattens the tree, and brings it back.
    switch = header.locator(".jp-RunningSessions-viewButton")
    expect(switch).to_be_visible()
    switch.click()
    expect(browser_page.locator(".jp-JobmagicGroup")).to_have_count(0, timeout=UI_TIMEOUT)
    for worker in (train, waiting, prep):
        expect(job_item(browser_page, worker.id)).to_be_visible()
    switch.click()
    expect(gpu_label).to_have_text("gpu — 1 running, 1 queued", timeout=UI_TIMEOUT)


@pytest.mark.timeout(240)
def test_context_menu_restarts_an_ended_job(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    first = service.start(python_cmd("print('hello')"), name="hello")
    assert first.wait(timeout=30) == 0
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    expect(job_item(browser_page, first.id)).to_have_class(
        re.compile(r"\bjp-mod-succeeded\b"), timeout=UI_TIMEOUT
    )

    disabled = re.compile(r"\blm-mod-disabled\b")
    expect(context_menu_entry(browser_page, first.id, "jobmagic:pause-job")).to_have_class(disabled)
    close_menu(browser_page)
    restart = context_menu_entry(browser_page, first.id, "jobmagic:restart-job")
    expect(restart).not_to_have_class(disabled)
    restart.click()

    # The new job is a copy of the old one that says where it came from.
    again = browser_page.locator(f'.jp-JobmagicItem:not([data-context="jobmagic-job-{first.id}"])')
    expect(again).to_have_count(1, timeout=UI_TIMEOUT)
    context = again.get_attribute("data-context") or ""
    new_id = int(context.removeprefix("jobmagic-job-"))
    new = job_json(lab_server, new_id)
    assert new["restarted_from"] == first.id
    assert new["command"] == first.command
    expect(again).to_have_class(re.compile(r"\bjp-mod-succeeded\b"), timeout=UI_TIMEOUT)
