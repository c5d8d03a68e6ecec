"""The JupyterLab frontend in a real browser: "job finished" notifications and their
settings (the context menus and the palette: ``test_browser_job_menus.py``).

Jobs are started in the test process with the engine (same job home as the server) or,
for the killed-kernel case, by a separate Python process that is then SIGKILLed. A job
blocks on a FIFO until the test lets it end, so the test knows when it ends. Settings are
the user settings file, written before the page loads.

Headless Chromium shows no desktop notification and never hides a page (a page behind
another, or in a minimized window, stays "visible"), so the desktop test records what the
page asks of ``window.Notification`` and has ``document.hidden`` say what the test sets.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import python_cmd, wait_until
from test_browser_sidebar import (
    UI_TIMEOUT,
    job_item,
    job_of_a_killed_process,
    open_lab,
    open_running_sidebar,
    release,
)

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Locator, Page

    from jobmagic.engine.service import WorkerService

pytestmark = [pytest.mark.browser]


#: The longest a toast may take after a job's exit (the issue's goal).
TOAST_TIMEOUT = 2_000  # ms
#: The default of the "only jobs that ran at least" setting, in seconds.
DEFAULT_MIN_RUNTIME = 10.0

#: Wraps ``window.Notification`` to record the page's desktop notifications (headless
#: Chromium shows none), and lets the test say whether the page is hidden.
DESKTOP_RECORDER = """
(() => {
  const Real = window.Notification;
  const record = { notices: [], closed: 0, asked: 0, hidden: false };
  window.__jobmagicDesktop = record;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      record.notices.push({ title, body: options && options.body, notice: this });
    }
    close() {
      record.closed += 1;
      super.close();
    }
  }
  Object.defineProperty(Recorded, 'permission', { get: () => Real.permission });
  Recorded.requestPermission = (...args) => {
    record.asked += 1;
    return Real.requestPermission(...args);
  };
  window.Notification = Recorded;
  Object.defineProperty(Document.prototype, 'hidden', { get: () => record.hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', {
    get: () => (record.hidden ? 'hidden' : 'visible')
  });
  record.setHidden = hidden => {
    record.hidden = hidden;
    document.dispatchEvent(new Event('visibilitychange'));
  };
})();
"""


def write_settings(tmp_path: Path, **values: Any) -> None:
    """Write the user's settings of ``jobmagic:notifications`` (``lab_server``'s settings)."""
    folder = tmp_path / "lab-state" / "settings" / "jobmagic"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notifications.jupyterlab-settings").write_text(json.dumps(values))


def make_fifo(tmp_path: Path, name: str) -> Path:
    """A FIFO a job blocks on until ``release``."""
    fifo = tmp_path / f"{name}.fifo"
    os.mkfifo(fifo)
    return fifo


def exits_when_released(fifo: Path, code: int) -> str:
    """A command that waits for ``release(fifo)``, then exits with ``code``."""
    return python_cmd(f"import sys; open(sys.argv[1]).read(); sys.exit({code})") + f" {fifo}"


def toast(page: Page, job_name: str, job_id: int | None) -> Locator:
    """The toast about the end of a job, found by the name it gives the job."""
    return page.locator(".Toastify__toast", has_text=f"{job_name} (#{job_id}) ")


def wait_until_listed(page: Page, worker_id: int | None, state: str) -> None:
    """Wait until the sidebar shows the job in ``state`` (the page's model has it so)."""
    from playwright.sync_api import expect

    expect(job_item(page, worker_id)).to_have_class(
        re.compile(rf"\bjp-mod-{state}\b"), timeout=UI_TIMEOUT
    )


@pytest.mark.timeout(240)
def test_a_job_that_fails_shows_a_toast_whose_open_log_opens_its_log(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    write_settings(tmp_path, minRuntime=0)
    go = make_fifo(tmp_path, "go")
    worker = service.start(exits_when_released(go, 3), name="failing")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    wait_until_listed(browser_page, worker.id, "running")
    notice = toast(browser_page, "failing", worker.id)
    expect(notice).to_have_count(0)

    release(go)  # the job exits as soon as it has read this
    expect(notice).to_be_visible(timeout=TOAST_TIMEOUT)

    assert worker.wait(timeout=30) == 3
    expect(notice).to_contain_text(
        re.compile(rf"^failing \(#{worker.id}\) failed: exit code 3 after \d+\.\ds")
    )
    expect(notice.get_by_role("button", name="Re-run")).to_be_visible()
    notice.get_by_role("button", name="Open log").click()
    log = browser_page.locator(f'.jp-JobLog[data-job-id="{worker.id}"]')
    expect(log).to_be_visible(timeout=UI_TIMEOUT)
    expect(log.locator(".jp-JobLog-state")).to_have_text("failed", timeout=UI_TIMEOUT)


@pytest.mark.timeout(240)
def test_with_failures_only_a_succeeding_job_shows_no_toast(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    write_settings(tmp_path, notifyOn="failures", minRuntime=0)
    ok_go, bad_go = make_fifo(tmp_path, "ok"), make_fifo(tmp_path, "bad")
    ok = service.start(exits_when_released(ok_go, 0), name="fine")
    bad = service.start(exits_when_released(bad_go, 4), name="broken")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    wait_until_listed(browser_page, bad.id, "running")

    release(ok_go)
    assert ok.wait(timeout=30) == 0
    wait_until_listed(browser_page, ok.id, "succeeded")
    release(bad_go)
    assert bad.wait(timeout=30) == 4

    # The failure's toast comes after the success was seen: the success had its chance.
    notice = toast(browser_page, "broken", bad.id)
    expect(notice).to_be_visible(timeout=UI_TIMEOUT)
    expect(toast(browser_page, "fine", ok.id)).to_have_count(0)

    # "Re-run" starts it again as a new job, which blocks on the same FIFO.
    notice.get_by_role("button", name="Re-run").click()
    again = wait_until(
        lambda: [r for r in service.store.list() if r.restarted_from == bad.id],
        timeout=30,
        message="the re-run job",
    )[0]
    assert again.command == bad.command
    release(bad_go)
    expect(toast(browser_page, "broken", again.id)).to_be_visible(timeout=UI_TIMEOUT)


@pytest.mark.timeout(240)
def test_a_job_of_a_killed_kernel_notifies_when_it_ends(
    lab_server: LabServer, browser_page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    write_settings(tmp_path, minRuntime=0)
    go = make_fifo(tmp_path, "go")
    with job_of_a_killed_process(exits_when_released(go, 3)) as (job_id, _pid):
        open_lab(browser_page, lab_server)
        open_running_sidebar(browser_page)
        expect(job_item(browser_page, job_id)).to_contain_text("orphaned", timeout=UI_TIMEOUT)

        release(go)

        notice = toast(browser_page, "orphan", job_id)
        expect(notice).to_be_visible(timeout=UI_TIMEOUT)
        expect(notice).to_contain_text(f"orphan (#{job_id}) failed: exit code 3 after ")


@pytest.mark.timeout(240)
def test_by_default_a_job_shorter_than_10_s_shows_no_toast(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    go = make_fifo(tmp_path, "go")  # no settings file: the defaults
    long = service.start(exits_when_released(go, 3), name="long")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    wait_until_listed(browser_page, long.id, "running")
    short = service.start(
        python_cmd("import sys, time; time.sleep(0.1); sys.exit(3)"), name="short"
    )
    assert short.wait(timeout=30) == 3
    wait_until_listed(browser_page, short.id, "failed")

    # The long job ends once it has run the minimum: its toast is the handshake.
    assert long.started_at is not None
    remaining = long.started_at + DEFAULT_MIN_RUNTIME + 0.5 - time.time()
    browser_page.wait_for_timeout(max(0.0, remaining) * 1000)
    release(go)
    assert long.wait(timeout=30) == 3

    expect(toast(browser_page, "long", long.id)).to_be_visible(timeout=UI_TIMEOUT)
    expect(toast(browser_page, "short", short.id)).to_have_count(0)


@pytest.mark.timeout(300)
def test_desktop_notification_while_the_page_is_hidden_opens_the_log_when_clicked(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    write_settings(tmp_path, minRuntime=0, desktop=True)
    context = browser_page.context
    context.grant_permissions(["notifications"], origin=lab_server.url.rstrip("/"))
    context.add_init_script(DESKTOP_RECORDER)
    seen_go, hidden_go = make_fifo(tmp_path, "seen"), make_fifo(tmp_path, "hidden")
    seen = service.start(exits_when_released(seen_go, 3), name="seen")
    hidden = service.start(exits_when_released(hidden_go, 3), name="unseen")
    open_lab(browser_page, lab_server)
    open_running_sidebar(browser_page)
    wait_until_listed(browser_page, hidden.id, "running")
    desktop = "window.__jobmagicDesktop"

    # While the page is visible, a toast only.
    release(seen_go)
    expect(toast(browser_page, "seen", seen.id)).to_be_visible(timeout=UI_TIMEOUT)
    assert browser_page.evaluate(f"{desktop}.notices.length") == 0

    browser_page.evaluate(f"{desktop}.setHidden(true)")
    release(hidden_go)
    browser_page.wait_for_function(f"{desktop}.notices.length > 0", timeout=UI_TIMEOUT)
    [notice] = browser_page.evaluate(
        f"{desktop}.notices.map(({{ title, body }}) => ({{ title, body }}))"
    )
    assert notice["title"] == "JupyterLab job ended"
    assert re.fullmatch(
        rf"unseen \(#{hidden.id}\) failed: exit code 3 after \d+\.\ds", notice["body"]
    )
    # The permission was granted: the page had no reason to ask.
    assert browser_page.evaluate(f"{desktop}.asked") == 0

    # A click brings the page forward and opens the job's log.
    browser_page.evaluate(f"{desktop}.setHidden(false)")
    browser_page.evaluate(f"{desktop}.notices[0].notice.dispatchEvent(new Event('click'))")
    log = browser_page.locator(f'.jp-JobLog[data-job-id="{hidden.id}"]')
    expect(log).to_be_visible(timeout=UI_TIMEOUT)
    assert browser_page.evaluate(f"{desktop}.closed") == 1


def setting_field(page: Page, key: str) -> Locator:
    """The Settings Editor's field of the ``jobmagic:notifications`` setting ``key``."""
    return page.locator(f'[id="jp-SettingsEditor-jobmagic:notifications_{key}"]')


@pytest.mark.timeout(240)
def test_settings_editor_shows_the_settings_and_turning_desktop_on_asks_permission(
    lab_server: LabServer, browser_page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    browser_page.context.add_init_script(DESKTOP_RECORDER)  # no permission granted
    open_lab(browser_page, lab_server)
    browser_page.evaluate(
        "window.jupyterapp.commands.execute('settingeditor:open', {query: 'Job Notifications'})"
    )
    editor = browser_page.locator(".jp-SettingsPanel")
    expect(editor).to_contain_text("Job Notifications", timeout=UI_TIMEOUT)
    for title in ("Notify when", "Only jobs that ran at least (seconds)"):
        expect(editor).to_contain_text(title)
    # The defaults: every outcome, jobs of 10 s or more, no desktop notifications.
    expect(setting_field(browser_page, "notifyOn").locator("option:checked")).to_have_text("all")
    expect(setting_field(browser_page, "minRuntime")).to_have_value("10")
    desktop_box = browser_page.get_by_role("checkbox", name="Desktop notifications")
    expect(desktop_box).not_to_be_checked()
    desktop = "window.__jobmagicDesktop"
    assert browser_page.evaluate(f"{desktop}.asked") == 0

    desktop_box.check()

    # The page takes the new setting at once and asks the browser's permission.
    browser_page.wait_for_function(f"{desktop}.asked === 1", timeout=UI_TIMEOUT)
    saved = tmp_path / "lab-state" / "settings" / "jobmagic" / "notifications.jupyterlab-settings"
    wait_until(
        lambda: saved.exists() and '"desktop": true' in saved.read_text(),
        timeout=30,
        message="the settings file to say desktop: true",
    )
