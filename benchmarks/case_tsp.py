"""Case 11, task-spooler: jobmagic and ``tsp`` side by side, in the same run.

task-spooler (Debian's ``task-spooler``, ``tsp``) is the classic "queue a shell command"
tool; a notebook user would call it as ``!tsp CMD``. Each side runs in a fresh
interpreter; tsp gets a private server (``TS_SOCKET``) and output directory, killed at
the end (``tsp -K``).

- Add to start: the time from asking for a job until its command runs, read as the
  moment the command's ``echo go > FIFO`` reaches the bench (a handshake, no clock
  inside the job). jobmagic: ``svc.start``; tsp: the ``tsp CMD`` client.
- Spawn: 200 x ``true`` added and waited for, one after the other (``tsp -w``).
- Follow: a job prints a line every 20 ms with the time it printed it; the follower
  reads it as it comes (jobmagic: ``Worker.stream()``; tsp: ``tsp -t``, which runs
  ``tail -f`` on the job's output file): p50 of the delay.

Without ``tsp`` installed the rows say how to get it (``apt-get install task-spooler``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median

STARTS = 50
SPAWNS = 200
LINES = 50
TICK = 0.02  # seconds between the follow job's lines
# Prints "<epoch seconds>\n" every TICK seconds, LINES times.
TICKER = (
    f"{sys.executable} -u -c 'import time\n"
    f"for _ in range({LINES}):\n"
    f"    print(repr(time.time()), flush=True); time.sleep({TICK})'"
)


def _tsp_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TS_SOCKET"] = str(workdir / "tsp.socket")
    env["TMPDIR"] = str(workdir)  # where tsp writes its jobs' output files
    env["TS_SLOTS"] = "1"
    return env


def _tsp(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["tsp", *args], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def _fifo_latency(start: callable, fifo: Path) -> float:  # type: ignore[valid-type]
    begin = time.perf_counter()
    start()
    with fifo.open("rb") as f:  # opens once the job's echo opens its end
        f.read()
    return time.perf_counter() - begin


def measure_tsp(starts: int, spawns: int) -> dict:
    workdir = Path.cwd()
    env = _tsp_env(workdir)
    fifo = workdir / "go"
    os.mkfifo(fifo)
    try:
        _tsp(env, "true")
        _tsp(env, "-w")
        latencies = [
            _fifo_latency(lambda: _tsp(env, "sh", "-c", f"echo go > {fifo}"), fifo)
            for _ in range(starts)
        ]
        _tsp(env, "-w")
        begin = time.perf_counter()
        for _ in range(spawns):
            job = _tsp(env, "true")
            _tsp(env, "-w", job)
        spawn = time.perf_counter() - begin
        # `tsp -t` of a job that is not running yet ends at once: the ticker waits on the
        # FIFO, whose opening for writing returns once the job runs (it opened its end).
        job = _tsp(env, "sh", "-c", f"read go < {fifo}; {TICKER}")
        with fifo.open("w") as go:
            follower = subprocess.Popen(
                ["tsp", "-t", job], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            go.write("go\n")
        assert follower.stdout is not None
        delays = []
        for line in follower.stdout:
            seen = time.time()
            try:
                delays.append(seen - float(line))
            except ValueError:
                continue
            if len(delays) == LINES:
                break
        follower.kill()
        follower.wait()
        return {"start": latencies, "spawn": spawn, "follow": delays}
    finally:
        subprocess.run(["tsp", "-K"], env=env, capture_output=True, check=False)


def measure_jobmagic(starts: int, spawns: int) -> dict:
    from jobmagic import WorkerService

    workdir = Path.cwd()
    fifo = workdir / "go"
    os.mkfifo(fifo)
    service = WorkerService()
    try:
        service.start("true").wait()
        latencies = [
            _fifo_latency(lambda: service.start(f"echo go > {fifo}"), fifo) for _ in range(starts)
        ]
        begin = time.perf_counter()
        for _ in range(spawns):
            service.start("true").wait(30)
        spawn = time.perf_counter() - begin
        worker = service.start(TICKER)
        delays, pending = [], b""
        for chunk in worker.stream():
            seen = time.time()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            delays.extend(seen - float(line) for line in lines if line)
        return {"start": latencies, "spawn": spawn, "follow": delays[:LINES]}
    finally:
        service.shutdown()


def run(ctx: Context) -> list[Row]:
    names = (
        "tsp: add -> command running, p50",
        f"tsp: spawn {SPAWNS} x start+wait `true`",
        "tsp: follow latency p50",
    )
    missing = engine_missing()
    if not missing and shutil.which("tsp") is None:
        missing = "n/a (task-spooler missing: apt-get install task-spooler)"
    if missing:
        return [Row(name, missing=missing) for name in names]
    # The sides alternate, so that this machine's swings (2x within minutes) hit both.
    repeats = ctx.repeats(3)
    tsp: dict[str, list] = {"start": [], "spawn": [], "follow": []}
    ours: dict[str, list] = {"start": [], "spawn": [], "follow": []}
    for _ in range(repeats):
        for side, target in ((tsp, "measure_tsp"), (ours, "measure_jobmagic")):
            got = run_child(ctx, f"{__name__}:{target}", starts=STARTS, spawns=SPAWNS, timeout=300)
            side["start"] += got["start"]
            side["spawn"].append(got["spawn"])
            side["follow"] += got["follow"]
    return [
        Row(
            names[0],
            statistics.median(ours["start"]),
            "s",
            statistics.median(tsp["start"]),
            "tsp",
            repeats=repeats,
            note=f"jobmagic p50 vs tsp p50 over {repeats} x {STARTS} starts (echo into a FIFO)",
        ),
        # The performance issue's goal: jobmagic spawns faster than tsp, in the same run.
        Row(
            names[1],
            median(ours["spawn"]),
            "s",
            median(tsp["spawn"]),
            "tsp",
            Goal("ratio", 1.0),
            repeats,
        ),
        Row(
            names[2],
            median(ours["follow"]),
            "s",
            median(tsp["follow"]),
            "tsp -t (tail -f)",
            repeats=repeats,
        ),
    ]
