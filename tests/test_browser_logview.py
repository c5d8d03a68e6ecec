"""The log view in a real browser: a real terminal (xterm), search, the bounded tail with
its download link, following the end, tab titles and themes.

Jobs run in this test process's ``WorkerService`` (same job home as the lab server); the
page opens a log with the ``jobmagic:open-log`` command. What the terminal shows is read
from its buffer through the log view (``bufferLines()``, ``terminal``), after the view
marks the log complete (``data-complete``) or with Playwright's auto-waiting. Waits are
handshakes: jobs that must pause block on FIFOs the test opens.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import python_cmd, wait_until
from test_browser_sidebar import open_lab, release

if TYPE_CHECKING:
    from conftest import LabServer
    from playwright.sync_api import Locator, Page

    from jobmagic.engine.service import WorkerService

pytestmark = [pytest.mark.browser]

UI_TIMEOUT = 10_000  # ms; a loaded 2-core machine included
#: The most bytes the view reads (logview.ts DEFAULT_WINDOW_BYTES).
WINDOW_BYTES = 8 * 1024 * 1024
#: The most lines its terminal keeps besides the screen (xtermview.ts SCROLLBACK_LINES).
SCROLLBACK = 5000

#: The log view of job ``id``, as a JavaScript expression of ``id``.
VIEW = (
    "[...window.jupyterapp.shell.widgets('main')].find(w => w.id === `jobmagic-log-${id}`).content"
)


def open_log(page: Page, job_id: int | None) -> Locator:
    """Open the job's log view (the sidebar's command) and wait for its terminal."""
    from playwright.sync_api import expect

    # The command resolves with the panel: return nothing, not the widget to serialize.
    page.evaluate(
        "async id => { await window.jupyterapp.commands.execute('jobmagic:open-log', {id}); }",
        job_id,
    )
    log = page.locator(f'.jp-JobLog[data-job-id="{job_id}"]')
    expect(log.locator(".xterm-screen")).to_be_visible(timeout=UI_TIMEOUT)
    return log


def on_view(page: Page, job_id: int | None, body: str) -> Any:
    """Evaluate ``body`` (JavaScript using ``view``) with the job's log view as ``view``."""
    return page.evaluate(f"id => {{ const view = {VIEW}; {body} }}", job_id)


def buffer_lines(page: Page, job_id: int | None) -> list[str]:
    """The lines of the job's terminal buffer (scrollback and screen)."""
    lines = on_view(page, job_id, "return view.bufferLines();")
    assert isinstance(lines, list)
    return lines


def wait_for_line(page: Page, job_id: int | None, text: str) -> None:
    """Wait until a line of the job's terminal buffer is ``text``."""
    page.wait_for_function(
        f"([id, text]) => {{ const view = {VIEW}; return view.bufferLines().includes(text); }}",
        arg=[job_id, text],
        timeout=UI_TIMEOUT,
    )


def viewport(page: Page, job_id: int | None) -> dict[str, int]:
    """Where the terminal's viewport is: its top line, the last top line, its rows."""
    return on_view(
        page,
        job_id,
        "const b = view.terminal.buffer.active;"
        "return {top: b.viewportY, bottom: b.baseY, rows: view.terminal.rows};",
    )


def wait_complete(log: Locator) -> None:
    """Wait until the view has read the whole log of an ended job into its terminal."""
    from playwright.sync_api import expect

    expect(log).to_have_attribute("data-complete", "true", timeout=UI_TIMEOUT)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Two tqdm bars, position 0 and 1 (tqdm moves the cursor up to redraw the outer one),
#: updated 200 times, closed outer first: a terminal then shows exactly the two bars.
TWO_BARS = textwrap.dedent(
    """
    import sys
    from tqdm import tqdm
    fmt = "{desc}: {percentage:3.0f}%|{bar:10}| {n_fmt}/{total_fmt}"
    print("start", flush=True)
    common = dict(file=sys.stdout, bar_format=fmt, ascii=False, mininterval=0, miniters=1)
    outer = tqdm(total=4, desc="outer", position=0, **common)
    inner = tqdm(total=200, desc="inner", position=1, **common)
    for _ in range(4):
        for _ in range(50):
            inner.update(1)
        outer.update(1)
    outer.close()
    inner.close()
    """
)


@pytest.mark.timeout(240)
def test_two_tqdm_bars_end_as_two_lines(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    script = tmp_path / "bars.py"
    script.write_text(TWO_BARS)
    worker = service.start(f"{sys.executable} {script}", name="bars")
    assert worker.wait(timeout=60) == 0
    log_bytes = worker.output()
    assert log_bytes.count(b"\x1b[A") >= 200  # the bars do move the cursor up
    assert log_bytes.count(b"inner:") > 200

    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    wait_complete(log)

    assert buffer_lines(browser_page, worker.id) == [
        "start",
        "outer: 100%|██████████| 4/4",
        "inner: 100%|██████████| 200/200",
    ]
    # The whole log is shown: no notice of earlier output.
    expect(log.locator(".jp-JobLog-omitted")).to_be_hidden()


#: Prints ``line 0001 of 3500`` ... ``line 3500 of 3500``.
NUMBERED = python_cmd("for i in range(1, 3501): print(f'line {i:04d} of 3500')")


@pytest.mark.timeout(240)
def test_ctrl_f_finds_a_line_3000_lines_back(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    worker = service.start(NUMBERED)
    assert worker.wait(timeout=60) == 0
    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    wait_complete(log)
    lines = buffer_lines(browser_page, worker.id)
    assert len(lines) == 3500
    target = "line 0500 of 3500"
    row = lines.index(target)
    assert len(lines) - row > 3000
    start = viewport(browser_page, worker.id)
    assert start["top"] == start["bottom"]  # it shows the end, far from the target

    log.locator(".xterm-screen").click()
    browser_page.keyboard.press("Control+f")
    box = log.locator(".jp-JobLog-search")
    expect(box).to_be_visible(timeout=UI_TIMEOUT)
    field = box.locator("input")
    expect(field).to_be_focused()
    field.fill(target)
    field.press("Enter")

    expect(box.locator(".jp-JobLog-searchCount")).to_have_text("1 of 1", timeout=UI_TIMEOUT)
    assert on_view(browser_page, worker.id, "return view.terminal.getSelection();") == target
    view = viewport(browser_page, worker.id)
    assert view["top"] <= row < view["top"] + view["rows"], (row, view)

    # Typing searches as it goes: "line 050" still matches where the selection is, and
    # nine lines more; Enter goes to the next match, Shift+Enter back.
    field.fill("line 050")
    count = box.locator(".jp-JobLog-searchCount")
    expect(count).to_have_text("1 of 10", timeout=UI_TIMEOUT)
    selected = "return view.terminal.getSelectionPosition().start.y;"
    assert on_view(browser_page, worker.id, selected) == row
    assert on_view(browser_page, worker.id, "return view.terminal.getSelection();") == "line 050"
    field.press("Enter")
    expect(count).to_have_text("2 of 10")
    assert on_view(browser_page, worker.id, selected) == row + 1
    field.press("Shift+Enter")
    expect(count).to_have_text("1 of 10")
    assert on_view(browser_page, worker.id, selected) == row

    # Escape closes the box and gives the terminal its focus back; Ctrl+C copies the
    # selection (to a program, xterm would send ^C).
    field.press("Escape")
    expect(box).to_be_hidden()
    expect(log.locator(".xterm-helper-textarea")).to_be_focused()
    browser_page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    browser_page.keyboard.press("Control+c")
    assert browser_page.evaluate("() => navigator.clipboard.readText()") == "line 050"


def download(server: LabServer, job_id: int | None, token: bool) -> tuple[int, bytes]:
    """GET the job's log download, with the token or with no credentials at all."""
    path = f"jobmagic/api/jobs/{job_id}/log/download"
    url = server.api_url(path) if token else f"{server.url}{path}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


#: 12 MB of random bytes (every byte value, escape sequences included), more than the
#: view reads.
RANDOM_LOG = python_cmd(
    "import random, sys; sys.stdout.buffer.write(random.Random(7).randbytes(12_000_000))"
)


@pytest.mark.timeout(240)
def test_full_log_downloads_byte_for_byte_with_auth_only(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    worker = service.start(RANDOM_LOG)
    assert worker.wait(timeout=60) == 0
    log_bytes = worker.output()
    assert len(log_bytes) == 12_000_000

    status, body = download(lab_server, worker.id, token=True)
    assert status == 200
    assert sha256(body) == sha256(log_bytes)
    status, body = download(lab_server, worker.id, token=False)
    assert status == 403
    assert len(body) < 10_000

    # The page's link works with the page's own credentials (its Jupyter cookie).
    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    link = log.locator(".jp-JobLog-omitted a.jp-JobLog-download")
    expect(link).to_be_visible(timeout=UI_TIMEOUT)
    with browser_page.expect_download(timeout=60_000) as info:
        link.click()
    saved = tmp_path / "saved.log"
    info.value.save_as(saved)
    assert info.value.suggested_filename == f"job-{worker.id}.log"
    assert sha256(saved.read_bytes()) == sha256(log_bytes)


#: 100,000 lines of 100 bytes: 10 MB, more than the view reads.
BIG_TEXT_LOG = python_cmd(
    "import sys\nfor i in range(100_000): sys.stdout.write(f'{i:07d} ' + 'x' * 91 + '\\n')"
)


@pytest.mark.timeout(240)
def test_a_log_larger_than_the_window_says_what_is_not_shown(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from jobmagic.core.limits import format_size

    worker = service.start(BIG_TEXT_LOG, name="big")
    assert worker.wait(timeout=60) == 0
    log_bytes = worker.output()
    assert len(log_bytes) == 10_000_000

    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    wait_complete(log)
    # The view reads the last 8 MiB from the first line that starts in them.
    first_shown = log_bytes.index(b"\n", len(log_bytes) - WINDOW_BYTES) + 1
    notice = log.locator(".jp-JobLog-omitted")
    expect(notice).to_have_text(
        f"Earlier output not shown: {format_size(first_shown)}, and all but the last "
        f"{SCROLLBACK:,} lines of the rest. Download the full log"
    )
    # A link that looks like one (JupyterLab unsets the style of links in its panels).
    link = notice.locator("a")
    expect(link).to_have_css("color", "rgb(13, 71, 161)")  # --jp-content-link-color
    expect(link).to_have_css("text-decoration-line", "underline")
    lines = buffer_lines(browser_page, worker.id)
    assert lines[-1] == "0099999 " + "x" * 91
    rows = viewport(browser_page, worker.id)["rows"]
    assert SCROLLBACK <= len(lines) <= SCROLLBACK + rows
    assert lines == [f"{i:07d} " + "x" * 91 for i in range(100_000 - len(lines), 100_000)]

    with browser_page.expect_download(timeout=60_000) as info:
        link.click()
    saved = tmp_path / "saved.log"
    info.value.save_as(saved)
    assert info.value.suggested_filename == f"job-{worker.id}-big.log"
    assert sha256(saved.read_bytes()) == sha256(log_bytes)


#: Prints 200 lines, then 50 more each time the test writes to a FIFO, then ends.
STAGES = textwrap.dedent(
    """
    import sys
    for i in range(200):
        print(f"line {i:04d}", flush=True)
    for fifo in sys.argv[1:]:
        open(fifo).read()
        for i in range(50):
            print(f"{fifo[-7:-5]} {i:04d}", flush=True)
    """
)


@pytest.mark.timeout(240)
def test_follows_the_end_unless_scrolled_up(
    lab_server: LabServer, browser_page: Page, service: WorkerService, tmp_path: Path
) -> None:
    import os

    fifos = [tmp_path / f"s{n}.fifo" for n in (1, 2, 3)]
    for fifo in fifos:
        os.mkfifo(fifo)
    script = tmp_path / "stages.py"
    script.write_text(STAGES)
    worker = service.start(f"{sys.executable} {script} {' '.join(map(str, fifos))}")

    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    wait_for_line(browser_page, worker.id, "line 0199")
    at_start = viewport(browser_page, worker.id)
    assert at_start["top"] == at_start["bottom"] > 0

    # Following: new lines show at the bottom.
    release(fifos[0])
    wait_for_line(browser_page, worker.id, "s1 0049")
    followed = viewport(browser_page, worker.id)
    assert followed["top"] == followed["bottom"] == at_start["bottom"] + 50
    assert buffer_lines(browser_page, worker.id)[-1] == "s1 0049"

    # Scrolled up (the mouse wheel): new output leaves the viewport where it is.
    log.locator(".xterm-screen").hover()
    browser_page.mouse.wheel(0, -600)
    browser_page.wait_for_function(
        f"id => {{ const b = {VIEW}.terminal.buffer.active; return b.viewportY < b.baseY; }}",
        arg=worker.id,
        timeout=UI_TIMEOUT,
    )
    scrolled = viewport(browser_page, worker.id)
    release(fifos[1])
    wait_for_line(browser_page, worker.id, "s2 0049")
    after = viewport(browser_page, worker.id)
    assert after["top"] == scrolled["top"]
    assert after["bottom"] == followed["bottom"] + 50

    # The keys a pager has scroll it too: Page Up a screen, End to the bottom.
    log.locator(".xterm-screen").click()
    browser_page.keyboard.press("PageUp")
    browser_page.wait_for_function(
        f"([id, top]) => {VIEW}.terminal.buffer.active.viewportY < top",
        arg=[worker.id, after["top"]],
        timeout=UI_TIMEOUT,
    )
    paged = viewport(browser_page, worker.id)
    assert paged["top"] == after["top"] - (paged["rows"] - 1), (paged, after)

    # Back at the bottom, it follows again.
    browser_page.keyboard.press("End")
    browser_page.wait_for_function(
        f"id => {{ const b = {VIEW}.terminal.buffer.active; return b.viewportY === b.baseY; }}",
        arg=worker.id,
        timeout=UI_TIMEOUT,
    )
    release(fifos[2])
    assert worker.wait(timeout=60) == 0
    wait_complete(log)
    final = viewport(browser_page, worker.id)
    assert final["top"] == final["bottom"] == after["bottom"] + 50


@pytest.mark.timeout(240)
def test_two_jobs_of_one_name_open_two_tabs(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    first = service.start(python_cmd("print('first')"), name="train")
    assert first.wait(timeout=60) == 0
    second = service.start(python_cmd("print('second')"), name="train")
    assert second.wait(timeout=60) == 0
    unnamed = service.start(python_cmd("print('third')"))
    assert unnamed.wait(timeout=60) == 0

    open_lab(browser_page, lab_server)
    for worker, title in (
        (first, f"Log: train (#{first.id})"),
        (second, f"Log: train (#{second.id})"),
        (unnamed, f"Log: job {unnamed.id}"),
    ):
        open_log(browser_page, worker.id)
        # The tab carries the job id as `data-jobmagic-job` (the title's dataset).
        tab = browser_page.locator(
            f'.lm-TabBar-tab.jp-JobmagicLogTab[data-jobmagic-job="{worker.id}"]'
        )
        expect(tab).to_have_count(1, timeout=UI_TIMEOUT)
        expect(tab.locator(".lm-TabBar-tabLabel")).to_have_text(title, timeout=UI_TIMEOUT)

    # After a reload JupyterLab restores the three tabs, two of them hidden; a hidden
    # one draws its log once it is shown. (JupyterLab saves its layout a moment after a
    # change: the reload waits until the workspace holds the three.)
    def saved() -> bool:
        with urllib.request.urlopen(lab_server.api_url("lab/api/workspaces/default")) as r:
            data = json.load(r)["data"]
        return all(f"jobmagic-log:{w.id}" in data for w in (first, second, unnamed))

    wait_until(saved, timeout=UI_TIMEOUT / 1000, message="the layout saved")
    open_lab(browser_page, lab_server)
    tab = browser_page.locator(f'.lm-TabBar-tab.jp-JobmagicLogTab[data-jobmagic-job="{first.id}"]')
    expect(tab).to_have_count(1, timeout=UI_TIMEOUT)
    expect(browser_page.locator(".lm-TabBar-tab.jp-JobmagicLogTab")).to_have_count(3)
    tab.click()
    log = browser_page.locator(f'.jp-JobLog[data-job-id="{first.id}"]')
    expect(log.locator(".xterm-rows")).to_have_text("first", timeout=UI_TIMEOUT)


@pytest.mark.timeout(240)
def test_terminal_takes_the_jupyterlab_theme_and_follows_its_changes(
    lab_server: LabServer, browser_page: Page, service: WorkerService
) -> None:
    from playwright.sync_api import expect

    worker = service.start(python_cmd("print('\\x1b[31mred text\\x1b[0m plain')"))
    assert worker.wait(timeout=60) == 0
    open_lab(browser_page, lab_server)
    log = open_log(browser_page, worker.id)
    wait_complete(log)
    rows = log.locator(".xterm-rows")
    red = rows.locator("span", has_text="red text")
    # Light: JupyterLab's black on white; red from the notebook outputs' palette.
    expect(rows).to_have_css("color", "rgb(0, 0, 0)")
    expect(red).to_have_css("color", "rgb(231, 92, 88)")
    expect(log.locator(".xterm-viewport")).to_have_css("background-color", "rgb(255, 255, 255)")

    browser_page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme', "
        "{theme: 'JupyterLab Dark'})"
    )
    expect(browser_page.locator("body")).to_have_attribute(
        "data-jp-theme-light", "false", timeout=UI_TIMEOUT
    )
    # Dark: --jp-layout-color0 #111 and --jp-ui-font-color0 #fff.
    expect(rows).to_have_css("color", "rgb(255, 255, 255)", timeout=UI_TIMEOUT)
    expect(log.locator(".xterm-viewport")).to_have_css(
        "background-color", "rgb(17, 17, 17)", timeout=UI_TIMEOUT
    )
    theme = on_view(browser_page, worker.id, "return view.terminal.options.theme;")
    assert (theme["background"], theme["foreground"]) == ("#111", "#fff")
    expect(red).to_have_css("color", "rgb(231, 92, 88)")
