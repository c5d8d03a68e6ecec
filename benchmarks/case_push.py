"""Case 13, push: from a job's exit to its new state in JupyterLab's sidebar.

A real ``jupyter lab`` with jobmagic and headless Chromium (Playwright, Debian's
``/usr/bin/chromium``). A separate process (a ``WorkerService``, the jobs' "kernel")
starts ~30 jobs, each blocked on a FIFO; one at a time, the benchmark releases a job,
whose last act is to write the time (``date +%s%N``), and the page notes when the job's
sidebar item gets its ``jp-mod-succeeded`` class (a ``MutationObserver``; the page and
this process read one clock: ``performance.timeOrigin + performance.now()``).

The baseline, measured side by side in the same page and for the same exits: the old
path, a long-poll of the change feed (``GET jobs?wait_for=VERSION``, then again with the
new version) as the sidebar used to follow it, timed to the answer that shows the job
ended (no rendering: the old sidebar's drawing would come on top). For reference, not
measured: JupyterLab refreshes its own kernels and sessions every 10 s, and
jupyter-scheduler's job list never refreshes by itself.

Rows: push p50 (goal <= 100 ms) and p99, each against the long-poll's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import Context, engine_missing, fresh_dir
from benchmarks.jupyter_app import jupyter_app
from benchmarks.report import Goal, Row, percentile

if TYPE_CHECKING:
    from playwright.sync_api import Page

JOBS = 30
WARM_UP = 3  # jobs released first, not measured
CHROMIUM = Path("/usr/bin/chromium")
UI_WAIT = 10_000  # ms the page gets to show one change
_KERNEL_MAIN = "import sys; from benchmarks.case_push import kernel; kernel(*sys.argv[1:])"

#: Follows the change feed as the old sidebar did; notes when each job is seen ended.
_LONG_POLL = """
([token]) => {
  window.__longPollSeen = {};
  const url = query => `/jobmagic/api/jobs${query}`;
  const ask = async query => {
    const reply = await fetch(url(query), { headers: { Authorization: `token ${token}` } });
    return reply.json();
  };
  (async () => {
    let version = (await ask('')).version;
    for (;;) {
      const list = await ask(`?wait_for=${version}&timeout=30`);
      const at = performance.timeOrigin + performance.now();
      version = list.version;
      for (const job of list.jobs) {
        if (job.state === 'succeeded' && !(job.id in window.__longPollSeen)) {
          window.__longPollSeen[job.id] = at;
        }
      }
    }
  })();
}
"""
#: Notes when a job's item first has the class ``jp-mod-succeeded``.
_WATCH = """
([jobId]) => {
  window.__pushSeen = window.__pushSeen || {};
  const selector = `.jp-JobmagicItem[data-context="jobmagic-job-${jobId}"]`;
  const observer = new MutationObserver(() => {
    const item = document.querySelector(selector);
    if (item && item.classList.contains('jp-mod-succeeded')) {
      window.__pushSeen[jobId] = performance.timeOrigin + performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['class']
  });
}
"""


def kernel(home: str, fifo_dir: str, jobs: str) -> None:
    """The jobs' "kernel" (its own process): start the jobs, print their ids, wait.

    Job ``n`` waits on ``<fifo_dir>/<n>.fifo`` and then writes its end time to
    ``<n>.fifo.ended``. Ends (stopping what still runs) when its stdin closes.
    """
    from jobmagic import WorkerService

    service = WorkerService(home=home)
    try:
        for n in range(int(jobs)):
            fifo = Path(fifo_dir) / f"{n}.fifo"
            worker = service.start(f"read x < {fifo}; date +%s%N > {fifo}.ended", name=f"push-{n}")
            print(worker.id, flush=True)
        sys.stdin.read()
    finally:
        service.shutdown(timeout=1)


@contextlib.contextmanager
def _lab(ctx: Context, workdir: Path, home: Path) -> Iterator[tuple[int, str]]:
    """A ``jupyter lab`` on a free port of 127.0.0.1: yields (port, token)."""
    with jupyter_app(ctx, workdir, home, args=["--LabApp.expose_app_in_browser=True"]) as app:
        yield app.port, app.token


def _measure(ctx: Context, workdir: Path) -> tuple[list[float], list[float]]:
    """(push latencies, long-poll latencies) in seconds, one per measured job."""
    from playwright.sync_api import sync_playwright

    home, fifos = workdir / "home", workdir / "fifos"
    fifos.mkdir()
    for n in range(JOBS):
        os.mkfifo(fifos / f"{n}.fifo")
    with _lab(ctx, workdir, home) as (port, token):
        jobs = subprocess.Popen(
            [sys.executable, "-c", _KERNEL_MAIN, str(home), str(fifos), str(JOBS)],
            env=ctx.env(home),
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert jobs.stdin is not None
        assert jobs.stdout is not None
        try:
            ids = [int(jobs.stdout.readline()) for _ in range(JOBS)]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
                )
                try:
                    page = browser.new_page()
                    page.goto(f"http://127.0.0.1:{port}/lab?token={token}")
                    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
                    page.evaluate("async () => { await window.jupyterapp.restored; }")
                    page.click('.jp-SideBar.jp-mod-left [data-id="jp-running-sessions"]')
                    last = f'.jp-JobmagicItem[data-context="jobmagic-job-{ids[-1]}"]'
                    page.wait_for_selector(last, timeout=UI_WAIT * 6)
                    page.evaluate(_LONG_POLL, [token])
                    return _releases(page, fifos, ids)
                finally:
                    browser.close()
        finally:
            jobs.stdin.close()
            jobs.wait(60)
            jobs.stdout.close()


def _releases(page: Page, fifos: Path, ids: list[int]) -> tuple[list[float], list[float]]:
    """Release the jobs one by one; the latency of each seen by both paths."""
    push: list[float] = []
    poll: list[float] = []
    for n, job_id in enumerate(ids):
        page.evaluate(_WATCH, [job_id])
        fifo = fifos / f"{n}.fifo"
        with fifo.open("w") as go:
            go.write("go\n")
        page.wait_for_function(
            f"() => window.__pushSeen[{job_id}] !== undefined"
            f" && window.__longPollSeen[{job_id}] !== undefined",
            timeout=UI_WAIT,
        )
        ended = int(Path(f"{fifo}.ended").read_text()) / 1e9
        seen = page.evaluate(f"[window.__pushSeen[{job_id}], window.__longPollSeen[{job_id}]]")
        if n >= WARM_UP:
            push.append(seen[0] / 1000 - ended)
            poll.append(seen[1] / 1000 - ended)
    return push, poll


def run(ctx: Context) -> list[Row]:
    p50_name, p99_name = "push: job exit -> sidebar p50", "push: job exit -> sidebar p99"
    missing = engine_missing()
    if not missing and not CHROMIUM.exists():
        missing = f"n/a ({CHROMIUM} missing)"
    if not missing:
        try:
            import playwright  # noqa: F401
        except ImportError:
            missing = "n/a (playwright missing)"
    if missing:
        return [
            Row(p50_name, missing=missing, goal=Goal("value", 0.100)),
            Row(p99_name, missing=missing),
        ]
    with fresh_dir(ctx, "push-") as workdir:
        push, poll = _measure(ctx, workdir)
    label = "long-poll wait_for (old path, no drawing)"
    note = (
        f"{len(push)} jobs released one at a time (after {WARM_UP} unmeasured); for reference,"
        " JupyterLab refreshes its kernels and sessions every 10 s"
    )
    return [
        Row(
            p50_name,
            percentile(push, 0.50),
            "s",
            percentile(poll, 0.50),
            label,
            Goal("value", 0.100),
            note=note,
        ),
        Row(p99_name, percentile(push, 0.99), "s", percentile(poll, 0.99), label),
    ]
