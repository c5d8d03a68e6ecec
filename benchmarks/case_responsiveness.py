"""Case 5, responsiveness: does a kernel running noisy jobs still answer quickly?

Round-trip time of executing ``1+1`` in a real kernel (jupyter_client, over TCP) while
8 jobs write text at full speed with the panel open (every job's output shown), against
the same kernel idle.
Goal: ratio of medians <= 1.5. Phases alternate (idle, jobmagic, idle, reference...).

Two reference rows run the same 8 writers as plain shell redirects started outside the
kernel, at normal priority and under ``nice -n 10``: on a 2-core machine 8 writers
saturate the CPU, so the first is the part of the slowdown that is CPU contention rather
than jobmagic, and the second shows what lowering the jobs' priority would buy.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time

from benchmarks.harness import Context, fresh_dir, panel_missing
from benchmarks.kernel import Kernel
from benchmarks.report import Goal, Row, median

WRITERS = 8
SAMPLES = 30  # per phase, at most
WINDOW = 3.0  # seconds a phase may take: the writers must still be writing at its end
GAP = 0.01  # seconds between samples
WRITER = "yes 'jobmagic benchmark line: the quick brown fox jumps over the lazy dog' | head -c 1G"

KERNEL_SETUP = """
import os
from IPython.display import display
from jobmagic import get_service
from jobmagic.errors import JobNotFound
from benchmarks.harness import open_panel

_service = get_service()
_panel = open_panel(_service)
display(_panel)
_service.start("true").wait()

def _bench_cleanup():
    workers = [w for w in _service.list() if w.command != "true"]
    still_running = sum(1 for w in workers if not w.state.is_finished)
    _service.stop_all()
    for w in workers:
        path = w.log_path
        try:
            _service.remove(w.id)
        except JobNotFound:  # already pruned by the store's retention (max_log_bytes)
            pass
        if os.path.exists(path):
            os.unlink(path)
    return still_running
"""


def _samples(kernel: Kernel) -> list[float]:
    pause = threading.Event()
    rtts: list[float] = []
    deadline = time.monotonic() + WINDOW
    while len(rtts) < SAMPLES and time.monotonic() < deadline:
        rtts.append(kernel.execute("1+1")[1] * 1000)
        pause.wait(GAP)  # a frontend's think time; the benchmark's own timed wait
    return rtts


def _reference_load(kernel: Kernel, workdir: str, prefix: str = "") -> tuple[list[float], int]:
    procs = [
        subprocess.Popen(
            f"{prefix}sh -c {shlex.quote(f'{WRITER} > {workdir}/ref{i}.txt')}",
            shell=True,
            start_new_session=True,
        )
        for i in range(WRITERS)
    ]
    try:
        rtts = _samples(kernel)
        return rtts, sum(1 for p in procs if p.poll() is None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for i in range(WRITERS):
            os.unlink(f"{workdir}/ref{i}.txt")


def run(ctx: Context) -> list[Row]:
    name = f"responsiveness: `1+1` RTT, {WRITERS} writers + panel"
    repeats = ctx.repeats(1)  # one round of 5 interleaved phases; the samples are many
    missing = panel_missing()
    if missing:
        return [Row(name, missing=missing, goal=Goal("ratio", 1.5))]
    idle, loaded, starts = [], [], []
    references: dict[str, list[float]] = {"": [], "nice -n 10 ": []}
    still_running: dict[str, list[int]] = {"jobmagic": [], "": [], "nice -n 10 ": []}
    with fresh_dir(ctx, "responsiveness-") as workdir, Kernel(ctx, workdir / "home") as kernel:
        kernel.execute(KERNEL_SETUP)
        _samples(kernel)  # warm-up
        for _ in range(repeats):
            idle += _samples(kernel)
            start_cell = (
                f"for _ in range({WRITERS}): _panel.show_output(_service.start({WRITER!r}).id)"
            )
            starts.append(kernel.execute(start_cell)[1])
            loaded += _samples(kernel)
            still_running["jobmagic"].append(kernel.evaluate("_left = _bench_cleanup()", "_left"))
            idle += _samples(kernel)
            for prefix, rtts in references.items():
                more, left = _reference_load(kernel, str(workdir), prefix)
                rtts.extend(more)
                still_running[prefix].append(left)
    left = ", ".join(f"{k.strip() or 'plain'} {min(v)}" for k, v in still_running.items())
    note = (
        f"RTT samples: idle {len(idle)}, loaded {len(loaded)}; "
        f"writers (of {WRITERS}) still running when sampling ended, at least: {left}"
    )
    rows = [
        Row(
            name, median(loaded), "ms", median(idle), "idle", Goal("ratio", 1.5), repeats, note=note
        ),
        Row(
            f"responsiveness: the cell starting the {WRITERS} writers (panel open)",
            median(starts),
            "s",
            repeats=repeats,
        ),
    ]
    for prefix, rtts in references.items():
        rows.append(
            Row(
                f"responsiveness: `1+1` RTT, {WRITERS} {prefix}shell-redirect writers (reference)",
                median(rtts),
                "ms",
                median(idle),
                "idle",
                repeats=repeats,
            )
        )
    return rows
