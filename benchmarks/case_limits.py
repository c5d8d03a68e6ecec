"""Case 9, limits: what a cgroup per job costs, how fast a big job is stopped, usage reads.

- Spawn: 300 ``true`` jobs started and waited for one after the other, each in a cgroup
  of its own (mkdir, limits, join, rmdir), against the same with cgroups turned off
  (``JOBMAGIC_CGROUPS=off``) in the same interpreter, alternating (goal: ratio <= 1.3).
- Stop: a job of 1,000 processes, 100 of them ``setsid``'ed out of its process group;
  the time ``stop()`` takes and the processes left afterwards (goal: <= 1 s, 0 left).
  Baseline: the same job's stop with cgroups off, where the 100 escape (they are counted,
  then killed by the bench).
- Usage: ``Worker.usage()`` of 200 running jobs once a second for 10 s; the CPU the
  kernel spends on it beyond the same 10 s without reading (goal: <= 1 % of a core).

Needs a machine where jobmagic gets cgroups (root on cgroup v1, or a delegated v2
subtree); elsewhere the rows say why they were not measured.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median

SPAWNS = 300
PROCESSES, ESCAPED = 1_000, 100
READ_JOBS, READ_SECONDS = 200, 10

# Forks PROCESSES - 1 sleeps (ESCAPED of them setsid'ed), then says so and waits.
BIG_JOB = f"""
import signal, subprocess
for i in range({PROCESSES - 1}):
    subprocess.Popen(["sleep", "1000"], start_new_session=i < {ESCAPED})
print("ready", flush=True)
signal.pause()
"""


def _service(cgroups: str):
    from jobmagic import WorkerService

    os.environ["JOBMAGIC_CGROUPS"] = cgroups
    return WorkerService()


def measure_spawn(jobs: int) -> dict:
    from jobmagic.backends.local.cgroup_layout import detect

    layout, why = detect("auto")
    if layout is None:
        return {"missing": why}
    seconds: dict[str, list[float]] = {"auto": [], "off": []}
    services = {mode: _service(mode) for mode in seconds}
    try:
        for service in services.values():
            service.start("true").wait()  # warm: the watcher and the store exist
        for _ in range(3):
            for mode, service in services.items():
                start = time.perf_counter()
                for _ in range(jobs // 3):
                    worker = service.start("true")
                    if worker.wait(timeout=30) != 0:
                        raise RuntimeError(f"true ended {worker.state.value}: {worker.error}")
                seconds[mode].append(time.perf_counter() - start)
        return {mode: sum(values) for mode, values in seconds.items()} | {"layout": layout.name}
    finally:
        for service in services.values():
            service.shutdown()


def _leftovers(marker_pids: list[int]) -> list[int]:
    from jobmagic.core.process_identity import stat_fields

    left = []
    for pid in marker_pids:
        fields = stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            left.append(pid)
    return left


def _sleeps_of(pid: int) -> list[int]:
    """The live ``sleep 1000`` processes whose session or parent is the big job's."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if f.read() != b"sleep\x001000\x00":
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != b"Z":  # its parent is the job's python
            found.append(int(entry.name))
    return found


def measure_stop(cgroups: str) -> dict:
    from benchmarks.harness import become_subreaper

    become_subreaper()  # setsid'ed sleeps stay findable (their parent stays the job's)
    service = _service(cgroups)
    try:
        worker = service.start(f"{sys.executable} -c '{BIG_JOB}'")
        for chunk in worker.stream():
            if b"ready" in chunk:
                break
        python = list(_job_pythons(worker.pid))
        sleeps = _sleeps_of(python[0]) if python else []
        start = time.perf_counter()
        worker.stop(timeout=5)
        seconds = time.perf_counter() - start
        left = _leftovers(sleeps)
        for pid in left:  # what escaped the stop: the bench cleans up after it
            os.kill(pid, signal.SIGKILL)
        return {"seconds": seconds, "left": len(left), "sleeps": len(sleeps)}
    finally:
        service.shutdown()


def _job_pythons(wrapper: int | None) -> list[int]:
    from jobmagic.core.process_identity import stat_fields

    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == wrapper and int(entry.name) != wrapper:
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        if b"python" in f.read().split(b"\0")[0]:
                            found.append(int(entry.name))
                except OSError:
                    continue
    return found


def measure_usage(jobs: int, seconds: int) -> dict:
    service = _service("auto")
    try:
        workers = [service.start("sleep 600") for _ in range(jobs)]
        for worker in workers:
            worker.usage()  # every job runs
        tick = threading.Event()
        cpu = time.process_time()
        tick.wait(seconds)  # the idle window: the baseline
        idle = time.process_time() - cpu
        cpu = time.process_time()
        for _ in range(seconds):
            for worker in workers:
                if worker.usage() is None:
                    raise RuntimeError(f"job {worker.id} has no usage")
            tick.wait(1.0)  # the reader's 1 Hz tick
        reading = time.process_time() - cpu
        return {"idle": idle / seconds * 100, "reading": reading / seconds * 100}
    finally:
        service.stop_all()
        service.shutdown()


def run(ctx: Context) -> list[Row]:
    missing = engine_missing()
    spawn_name = f"limits: {SPAWNS} x start+wait `true`, a cgroup each"
    stop_name = f"limits: stop a job of {PROCESSES:,} processes ({ESCAPED} setsid'ed)"
    usage_name = f"limits: usage of {READ_JOBS} running jobs at 1 Hz, kernel CPU"
    if missing:
        return [Row(name, missing=missing) for name in (spawn_name, stop_name, usage_name)]
    spawn = run_child(ctx, f"{__name__}:measure_spawn", jobs=SPAWNS, timeout=300)
    if "missing" in spawn:
        why = f"no cgroups here: {spawn['missing']}"
        return [Row(name, missing=why) for name in (spawn_name, stop_name, usage_name)]
    stops = [run_child(ctx, f"{__name__}:measure_stop", cgroups="auto", timeout=120)]
    stops += [run_child(ctx, f"{__name__}:measure_stop", cgroups="auto", timeout=120)]
    without = run_child(ctx, f"{__name__}:measure_stop", cgroups="off", timeout=120)
    usage = run_child(
        ctx, f"{__name__}:measure_usage", jobs=READ_JOBS, seconds=READ_SECONDS, timeout=300
    )
    return [
        Row(
            f"{spawn_name} ({spawn['layout']})",
            spawn["auto"],
            "s",
            spawn["off"],
            "cgroups off",
            Goal("ratio", 1.3),
        ),
        Row(
            stop_name,
            median([s["seconds"] for s in stops]),
            "s",
            without["seconds"],
            "cgroups off",
            Goal("value", 1.0),
        ),
        Row(
            f"{stop_name}: processes left",
            float(max(s["left"] for s in stops)),
            "",
            float(without["left"]),
            "cgroups off",
            Goal("value", 0.0),
        ),
        Row(
            usage_name,
            usage["reading"] - usage["idle"],
            "%",
            goal=Goal("value", 1.0),
        ),
    ]
