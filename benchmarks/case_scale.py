"""Case 4, scale: 1000 concurrent ``sleep 60`` jobs in one service.

Measured in a fresh interpreter each: time to start them all; threads of the process
before and after (goal: flat, i.e. no growth); RSS growth per job (``VmRSS``, goal
<= 100 kB); CPU time of the process while the jobs sit idle for 10 s (goal <= 1 % of a
core); ``stop_all()`` time (goal <= 0.5 s); and processes left in the jobs' sessions
afterwards (goal: none). Baseline: 1000 ``Popen(..., start_new_session=True)`` held in a
list, stopped with ``killpg`` + ``wait``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from benchmarks.harness import (
    Context,
    engine_missing,
    processes_in_groups,
    rss_bytes,
    run_child,
    thread_count,
)
from benchmarks.report import Goal, Row, median

JOBS = 1000
IDLE = 10.0  # seconds
STOP_BOUND = 20.0  # seconds stop_all() may take before we give up (40x its goal)


def _idle_cpu_percent() -> float:
    cpu = time.process_time()
    threading.Event().wait(IDLE)  # the one timed wait: the idle window itself
    return (time.process_time() - cpu) / IDLE * 100


def measure_popen(jobs: int) -> dict:
    subprocess.Popen("true", shell=True, start_new_session=True).wait()
    threads, rss = thread_count(), rss_bytes()
    start = time.perf_counter()
    procs = [subprocess.Popen("sleep 60", shell=True, start_new_session=True) for _ in range(jobs)]
    result = {
        "start": time.perf_counter() - start,
        "threads": [threads, thread_count()],
        "rss_per_job": (rss_bytes() - rss) / jobs,
        "idle_cpu": _idle_cpu_percent(),
    }
    start = time.perf_counter()
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.wait()
    result["stop"] = time.perf_counter() - start
    result["left"] = len(processes_in_groups({proc.pid for proc in procs}))
    return result


def measure_jobmagic(jobs: int) -> dict:
    from jobmagic import JobState, WorkerService

    service = WorkerService()
    try:
        service.start("true").wait()
        threads, rss = thread_count(), rss_bytes()
        start = time.perf_counter()
        workers = [service.start("sleep 60") for _ in range(jobs)]
        started = time.perf_counter() - start
        not_running = [w.state.value for w in workers if w.state is not JobState.RUNNING]
        if not_running:
            raise RuntimeError(f"{len(not_running)} jobs not running: {set(not_running)}")
        sessions = {os.getsid(w.pid) for w in workers}
        result = {
            "start": started,
            "threads": [threads, thread_count()],
            "rss_per_job": (rss_bytes() - rss) / jobs,
            "idle_cpu": _idle_cpu_percent(),
        }
    except BaseException:
        service.shutdown()
        raise
    stopper = threading.Thread(target=service.stop_all, daemon=True)
    start = time.perf_counter()
    stopper.start()
    stopper.join(STOP_BOUND)
    result["stop"] = None if stopper.is_alive() else time.perf_counter() - start
    result["left"] = len(processes_in_groups(sessions))
    if stopper.is_alive():
        # Given up: kill the jobs ourselves; the child exits without shutdown() (which
        # would wait for the same stop_all()).
        for session in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
    else:
        service.shutdown()
    return result


def run(ctx: Context) -> list[Row]:
    repeats = ctx.repeats(1)
    goals = {
        "threads": Goal("value", 0),
        "rss": Goal("value", 100_000),
        "idle": Goal("value", 1.0),
        "stop": Goal("value", 0.5),
        "left": Goal("value", 0),
    }
    prefix = f"scale {JOBS} x `sleep 60`"
    missing = engine_missing()
    if missing:
        return [Row(f"{prefix}: {key}", missing=missing, goal=goal) for key, goal in goals.items()]
    base, cand = [], []
    for _ in range(repeats):
        base.append(run_child(ctx, f"{__name__}:measure_popen", jobs=JOBS))
        cand.append(run_child(ctx, f"{__name__}:measure_jobmagic", jobs=JOBS, timeout=300))

    def med(runs: list[dict], key: str) -> float:
        return median([r[key] for r in runs])

    def growth(runs: list[dict]) -> float:
        return median([r["threads"][1] - r["threads"][0] for r in runs])

    threads = cand[0]["threads"]
    gave_up = any(r["stop"] is None for r in cand)
    return [
        Row(
            f"{prefix}: start all",
            med(cand, "start"),
            "s",
            med(base, "start"),
            "Popen",
            repeats=repeats,
        ),
        Row(
            f"{prefix}: thread growth",
            growth(cand),
            "threads",
            growth(base),
            "Popen",
            goals["threads"],
            repeats,
            note=f"threads {threads[0]} before, {threads[1]} with the jobs",
        ),
        Row(
            f"{prefix}: RSS per job",
            med(cand, "rss_per_job"),
            "B",
            med(base, "rss_per_job"),
            "Popen",
            goals["rss"],
            repeats,
        ),
        Row(
            f"{prefix}: idle CPU over {IDLE:g} s",
            med(cand, "idle_cpu"),
            "%",
            med(base, "idle_cpu"),
            "Popen",
            goals["idle"],
            repeats,
        ),
        Row(
            f"{prefix}: stop_all()",
            None if gave_up else med(cand, "stop"),
            "s",
            med(base, "stop"),
            "killpg+wait",
            goals["stop"],
            repeats,
            text=f"> {STOP_BOUND:g} s (given up, jobs killed by the benchmark)" if gave_up else "",
        ),
        Row(
            f"{prefix}: pids left after stop",
            med(cand, "left"),
            "pids",
            goal=goals["left"],
            note=f"counted when stop_all() was given up at {STOP_BOUND:g} s" if gave_up else "",
            repeats=repeats,
        ),
    ]
