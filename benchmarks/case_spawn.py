"""Case 1, spawn: start and wait 500 ``true`` jobs, one after the other.

Baseline: ``subprocess.Popen("true", shell=True, start_new_session=True)`` plus
``wait()``, the physical limit for "start a shell command in its own session". Each
side runs in a fresh interpreter; the sides alternate so drift hits both equally.

A third side, the floor (``spawn_floor.py``), is no jobmagic: the least a design that
keeps the goal's promises can cost (a store write per start and per end, a spawner that
outlives the kernel and writes the status, no store write on the thread that sees
exits). Its ratio to Popen says how far the 1.5 goal is from what such a design can do.
"""

from __future__ import annotations

import subprocess
import time

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median

JOBS = 500


def measure_popen(jobs: int) -> dict:
    subprocess.Popen("true", shell=True, start_new_session=True).wait()  # warm the path
    start = time.perf_counter()
    for _ in range(jobs):
        subprocess.Popen("true", shell=True, start_new_session=True).wait()
    return {"seconds": time.perf_counter() - start}


def measure_jobmagic(jobs: int) -> dict:
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        service.start("true").wait()  # the watcher thread and the store exist from here on
        start = time.perf_counter()
        for _ in range(jobs):
            worker = service.start("true")
            if worker.wait(timeout=30) != 0:
                raise RuntimeError(f"true ended {worker.state.value}: {worker.error}")
        return {"seconds": time.perf_counter() - start}
    finally:
        service.shutdown()


def run(ctx: Context) -> list[Row]:
    name = f"spawn: {JOBS} x start+wait `true`"
    repeats = ctx.repeats(3)
    missing = engine_missing()
    if missing:
        return [Row(name, missing=missing, goal=Goal("ratio", 1.5))]
    baseline, candidate, floor = [], [], []
    for _ in range(repeats):
        baseline.append(run_child(ctx, f"{__name__}:measure_popen", jobs=JOBS)["seconds"])
        candidate.append(run_child(ctx, f"{__name__}:measure_jobmagic", jobs=JOBS)["seconds"])
        floor.append(run_child(ctx, "benchmarks.spawn_floor:measure", jobs=JOBS)["seconds"])
    return [
        Row(
            name,
            median(candidate),
            "s",
            median(baseline),
            "Popen+wait",
            Goal("ratio", 1.5),
            repeats,
            note=f"per job: jobmagic {median(candidate) / JOBS * 1000:.2f} ms, "
            f"Popen {median(baseline) / JOBS * 1000:.2f} ms",
        ),
        Row(
            f"{name}, the design's floor (no jobmagic)",
            median(floor),
            "s",
            median(baseline),
            "Popen+wait",
            repeats=repeats,
            note=f"per job: {median(floor) / JOBS * 1000:.2f} ms; jobmagic "
            f"{median(candidate) / median(floor):.2f}x the floor",
        ),
    ]
