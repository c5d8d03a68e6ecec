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
#: A program, not the shell's builtin ``true``: jobmagic's spawner starts it without a
#: shell (``spawn_direct.py``), as a plain ``python train.py`` is started.
PROGRAM = "/bin/true"


def measure_popen(jobs: int, program: bool = False) -> dict:
    """``true`` by ``sh -c``; with ``program``, ``/bin/true`` itself (no shell)."""
    command: str | list[str] = [PROGRAM] if program else "true"
    subprocess.Popen(command, shell=not program, start_new_session=True).wait()  # warm up
    start = time.perf_counter()
    for _ in range(jobs):
        subprocess.Popen(command, shell=not program, start_new_session=True).wait()
    return {"seconds": time.perf_counter() - start}


def measure_jobmagic(jobs: int, command: str = "true") -> dict:
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        service.start(command).wait()  # the watcher thread and the store exist from here on
        start = time.perf_counter()
        for _ in range(jobs):
            worker = service.start(command)
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
    baseline, candidate, floor, bare_program, program = [], [], [], [], []
    for _ in range(repeats):
        baseline.append(run_child(ctx, f"{__name__}:measure_popen", jobs=JOBS)["seconds"])
        candidate.append(run_child(ctx, f"{__name__}:measure_jobmagic", jobs=JOBS)["seconds"])
        floor.append(run_child(ctx, "benchmarks.spawn_floor:measure", jobs=JOBS)["seconds"])
        bare_program.append(
            run_child(ctx, f"{__name__}:measure_popen", jobs=JOBS, program=True)["seconds"]
        )
        program.append(
            run_child(ctx, f"{__name__}:measure_jobmagic", jobs=JOBS, command=PROGRAM)["seconds"]
        )
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
        Row(
            f"spawn: {JOBS} x start+wait `{PROGRAM}` (a program: no shell in between)",
            median(program),
            "s",
            median(bare_program),
            "Popen+wait, no shell",
            repeats=repeats,
            note=f"per job: jobmagic {median(program) / JOBS * 1000:.2f} ms, "
            f"Popen {median(bare_program) / JOBS * 1000:.2f} ms",
        ),
    ]
