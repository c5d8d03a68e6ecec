"""Case 13, log view: is JupyterLab's page still responsive while a job writes 50 MB/s?

A real ``jupyter lab`` and headless Chromium (Playwright, Debian's ``/usr/bin/chromium``).
A job writes about 50 MB/s of log lines (coloured numbers, 100 bytes a line) for 10 s
with its log view open (opened before the job starts writing: the job waits on a FIFO
until then, and the open itself is a row of its own), and the page counts its
main-thread long tasks (a ``PerformanceObserver`` of type ``longtask``: tasks of 50 ms or
more) and times its animation frames (the interval between two ``requestAnimationFrame`` callbacks).
Baseline: the same page for 10 s with the log view open on an ended job (nothing to
follow), measured in the same run, before the load. A contention reference: the same job
with its log view not open (the page shows the ended job's), so that a long task the
machine's load causes (the job, the server and the browser share 2 cores) reads as such.

Rows: the number of long tasks under load (goal 0: "no main-thread task of 50 ms or more",
the issue's 60 fps-class responsiveness), the longest long task and their p99 (0 when
there is none), the frame interval p99 and max; and how much the view was given to draw
(the bytes of its log requests per second, with the job's own rate as the baseline), how
long it took, once the job had ended, to show the log's end, and how long the open
command took.

The job runs under a ``WorkerService`` in a separate process (the jobs' "kernel"), which
prints the job's id when it starts and its exit code and log size when it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchError, Context, engine_missing, fresh_dir
from benchmarks.jupyter_app import jupyter_app
from benchmarks.report import Goal, Row, percentile

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
RATE = 50e6  # bytes per second the job writes
SECONDS = 10.0  # how long it writes; also how long the idle page is measured
CATCH_UP = 60.0  # seconds the view gets to show the log's end once the job has ended

#: Prints "ready", waits until its FIFO (argv[1]) is opened, then writes RATE bytes/s of
#: 100-byte lines (a green counter, then text) for SECONDS.
FAST_JOB = f"""
import sys, time
lines = [f"\\x1b[32m{{i:08d}}\\x1b[0m step loss=0.{{i % 9973:04d}} ".ljust(91, "x") + "\\n"
         for i in range(10_000)]
block = "".join(lines).encode()
print("ready", flush=True)
open(sys.argv[1]).read()
out = sys.stdout.buffer
start, written = time.monotonic(), 0
while (elapsed := time.monotonic() - start) < {SECONDS}:
    while written < {RATE} * elapsed:
        out.write(block[:65536])
        out.write(block[65536:131072])
        written += 131072
    time.sleep(0.002)
out.write(b"\\nthe end\\n")
"""
#: An ended job for the baseline: 2,000 lines.
IDLE_JOB = "for i in range(2000): print(f'line {i:04d}')"

#: The page's probes: long tasks, frame intervals, a resource-timing buffer that keeps
#: every log request.
PROBES = """
window.__bench = { longtasks: [], frames: [] };
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__bench.longtasks.push([e.startTime, e.duration]);
}).observe({ type: 'longtask', buffered: true });
performance.setResourceTimingBufferSize(1000000);
let last = performance.now();
const tick = t => {
  window.__bench.frames.push([t, t - last]);
  last = t;
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
"""
#: What the probes saw between performance.now() ``start`` and ``end`` (ms).
COLLECT = """
([start, end]) => {
  const b = window.__bench;
  const logs = performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/log?') && e.responseEnd >= start && e.responseEnd <= end);
  return {
    longtasks: b.longtasks.filter(([t]) => t >= start && t <= end).map(([, d]) => d),
    starts: b.longtasks.filter(([t]) => t >= start && t <= end).map(([t]) => t),
    frames: b.frames.filter(([t]) => t >= start && t <= end).map(([, d]) => d),
    logBytes: logs.reduce((sum, e) => sum + e.encodedBodySize, 0),
    logRequests: logs.length,
  };
}
"""
_JOB_MAIN = "import sys; from benchmarks.case_logview import run_job; run_job(*sys.argv[1:])"


def run_job(home: str, code: str, *args: str) -> None:
    """The jobs' "kernel" (its own process): run ``python -c code ARGS`` as a job.

    Prints ``started ID`` when the job has started and ``ended CODE SIZE`` when it has
    ended (its exit code, the bytes of its log).
    """
    import shlex

    from jobmagic import WorkerService

    service = WorkerService(home=home)
    try:
        argv = [sys.executable, "-c", code, *args]
        worker = service.start(shlex.join(argv))
        print(f"started {worker.id}", flush=True)
        code = worker.wait(120)
        print(f"ended {code} {worker.log_path.stat().st_size}", flush=True)
    finally:
        service.shutdown(timeout=1)


@contextlib.contextmanager
def _job(
    ctx: Context, home: Path, code: str, *args: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Start ``code`` as a job from a separate process; yield its id and that process."""
    process = subprocess.Popen(
        [sys.executable, "-c", _JOB_MAIN, str(home), code, *args],
        env=ctx.env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        word, job_id = process.stdout.readline().split()
        if word != b"started":
            raise BenchError(f"the job did not start: {word!r}")
        yield int(job_id), process
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)  # it shuts its service down after the job's end
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()


def _ended(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int]:
    """Wait for the job's ``ended CODE SIZE`` line; return its exit code and log size."""
    assert process.stdout is not None
    timer = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
    timer.start()
    try:
        line = process.stdout.readline().split()
    finally:
        timer.cancel()
    if len(line) != 3 or line[0] != b"ended" or line[1] == b"None":
        raise BenchError(f"the job did not end: {line!r}")
    return int(line[1]), int(line[2])


@contextlib.contextmanager
def _lab(ctx: Context, workdir: Path) -> Iterator[tuple[str, Path]]:
    """A running ``jupyter lab``; yields its URL with the token, and the job home."""
    home = workdir / "home"
    # window.jupyterapp, to open the log view.
    with jupyter_app(ctx, workdir, home, args=["--LabApp.expose_app_in_browser=True"]) as app:
        yield app.url("lab"), home


def _open_log(page: Any, job_id: int) -> float:
    """Open the job's log view; return how long the command took (s), as the page saw it."""
    # The command resolves with the panel: return a number, not the widget to serialize.
    took = page.evaluate(
        "async id => { const start = performance.now();"
        " await window.jupyterapp.commands.execute('jobmagic:open-log', {id});"
        " return performance.now() - start; }",
        job_id,
    )
    page.wait_for_selector(f'.jp-JobLog[data-job-id="{job_id}"] .xterm-screen', timeout=30_000)
    return float(took) / 1000


def _wait_line(page: Any, job_id: int, text: str, timeout: float) -> None:
    """Wait until the terminal of the job's log view has a line ``text``."""
    page.wait_for_function(
        "([id, text]) => [...window.jupyterapp.shell.widgets('main')]"
        ".find(w => w.id === `jobmagic-log-${id}`)?.content.bufferLines().includes(text)",
        arg=[job_id, text],
        timeout=timeout * 1000,
    )


def _wait_complete(page: Any, job_id: int, timeout: float) -> None:
    page.wait_for_selector(
        f'.jp-JobLog[data-job-id="{job_id}"][data-complete="true"]',
        state="attached",
        timeout=timeout * 1000,
    )


def _idle(ctx: Context, page: Any, home: Path) -> dict[str, Any]:
    """The baseline: the page for SECONDS with the log view open on an ended job."""
    with _job(ctx, home, IDLE_JOB) as (job_id, process):
        _ended(process, 60)
    opened = _open_log(page, job_id)
    _wait_complete(page, job_id, 30)
    page.wait_for_timeout(1000)
    start = page.evaluate("performance.now()")
    page.wait_for_timeout(SECONDS * 1000)
    idle = dict(page.evaluate(COLLECT, [start, page.evaluate("performance.now()")]))
    idle["open"] = opened
    return idle


def _unwatched(ctx: Context, page: Any, home: Path, workdir: Path) -> dict[str, Any]:
    """The contention reference: the same job, its log view not open (the idle one shows)."""
    go = workdir / "unwatched.fifo"
    os.mkfifo(go)
    with _job(ctx, home, FAST_JOB, str(go)) as (_, process):
        start = page.evaluate("performance.now()")
        with go.open("w") as fifo:
            fifo.write("go")
        code, _ = _ended(process, SECONDS + 60)
        end = page.evaluate("performance.now()")
    if code != 0:
        raise BenchError(f"the writing job exited {code}")
    return dict(page.evaluate(COLLECT, [start, end]))


def _load(ctx: Context, page: Any, home: Path, workdir: Path) -> dict[str, Any]:
    """The load: the page while the fast job writes, its log view open before it starts."""
    go = workdir / "go.fifo"
    os.mkfifo(go)
    with _job(ctx, home, FAST_JOB, str(go)) as (job_id, process):
        opened = _open_log(page, job_id)
        _wait_line(page, job_id, "ready", 30)
        page.wait_for_timeout(1000)  # the open's own work is not measured
        start = page.evaluate("performance.now()")
        began = time.monotonic()
        with go.open("w") as fifo:
            fifo.write("go")
        code, size = _ended(process, SECONDS + 60)
        wrote = time.monotonic() - began
        end = page.evaluate("performance.now()")
    if code != 0:
        raise BenchError(f"the writing job exited {code}")
    ended = time.monotonic()
    _wait_complete(page, job_id, CATCH_UP)
    load = dict(page.evaluate(COLLECT, [start, end]))
    load["catch_up"] = time.monotonic() - ended
    load["seconds"] = (end - start) / 1000
    load["job_rate"] = size / wrote
    load["open"] = opened
    load["starts"] = [round(t - start) for t in load.pop("starts")]
    return load


def _measure(ctx: Context) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with (
        fresh_dir(ctx, "logview-") as workdir,
        _lab(ctx, workdir) as (url, home),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.add_init_script(PROBES)
            page.goto(url)
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
            page.evaluate("async () => { await window.jupyterapp.restored; }")
            return {
                "idle": _idle(ctx, page, home),
                "unwatched": _unwatched(ctx, page, home, workdir),
                "load": _load(ctx, page, home, workdir),
            }
        finally:
            browser.close()


def _longest(durations: list[float]) -> float:
    return max(durations, default=0.0) / 1000


def _p99(durations: list[float]) -> float:
    return percentile(durations, 0.99) / 1000 if durations else 0.0


def run(ctx: Context) -> list[Row]:
    count_name = "logview: long tasks (>= 50 ms) while a job writes 50 MB/s"
    missing = engine_missing()
    if not missing and not CHROMIUM.exists():
        missing = f"n/a ({CHROMIUM} missing)"
    if not missing:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "n/a (playwright missing)"
    if missing:
        return [Row(count_name, missing=missing, goal=Goal("value", 0))]
    result = _measure(ctx)
    idle, unwatched, load = result["idle"], result["unwatched"], result["load"]
    note = (
        f"{load['seconds']:.1f} s of load: {len(load['frames'])} frames, "
        f"{load['logRequests']} log requests; idle {len(idle['frames'])} frames; "
        "long tasks are PerformanceObserver 'longtask' entries (0 s = none); "
        f"they began at {load['starts']} ms of the load"
    )
    return [
        Row(
            count_name,
            len(load["longtasks"]),
            "",
            len(idle["longtasks"]),
            "idle page",
            Goal("value", 0),
            note=note,
        ),
        Row(
            "logview: long tasks (>= 50 ms) while the job writes, its log view not open",
            len(unwatched["longtasks"]),
            "",
            len(idle["longtasks"]),
            "idle page",
            note="the machine's own contention (the job and the server share its cores)",
        ),
        Row(
            "logview: longest long task",
            _longest(load["longtasks"]),
            "s",
            _longest(idle["longtasks"]),
            "idle page",
        ),
        Row(
            "logview: long task p99",
            _p99(load["longtasks"]),
            "s",
            _p99(idle["longtasks"]),
            "idle page",
        ),
        Row(
            "logview: frame interval p99",
            percentile(load["frames"], 0.99) / 1000,
            "s",
            percentile(idle["frames"], 0.99) / 1000,
            "idle page",
        ),
        Row(
            "logview: longest frame interval",
            max(load["frames"]) / 1000,
            "s",
            max(idle["frames"]) / 1000,
            "idle page",
        ),
        Row(
            "logview: log bytes the view read per second",
            load["logBytes"] / load["seconds"],
            "B",
            load["job_rate"],
            "the job's write rate",
        ),
        Row("logview: time to show the end once the job ended", load["catch_up"], "s"),
        Row(
            "logview: opening the log view (the command, in the page)",
            load["open"],
            "s",
            idle["open"],
            "on an ended job",
        ),
    ]
