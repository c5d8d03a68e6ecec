"""Case 3, follow latency: how late does a ``stream()`` reader see a line?

A job writes ``time.time_ns()`` on its own line every 10 ms for 5 s; the reader
subtracts it from the time it received the line. Baseline: the same writer on a pipe
read with ``os.read`` (the physical limit for "see output as it is written").
Goals: p50 <= 5 ms, p99 <= 50 ms (each the median over the repeats).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median, percentile

LINES = 500  # one every 10 ms: 5 s
WRITER = shlex.join(
    [
        sys.executable,
        "-c",
        f"""
import os, time
start = time.monotonic()
for i in range({LINES}):
    delay = start + i * 0.01 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    os.write(1, b"%d\\n" % time.time_ns())
""",
    ]
)


def _latencies(chunks: Iterable[bytes]) -> list[float]:
    """Milliseconds from each line's timestamp to the moment its chunk arrived."""
    delays, partial = [], b""
    for chunk in chunks:
        now = time.time_ns()
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        delays += [(now - int(line)) / 1e6 for line in lines if line]
    return delays


def _pipe_chunks(proc: subprocess.Popen) -> Iterable[bytes]:
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 65536):
        yield chunk


def measure_pipe() -> dict:
    proc = subprocess.Popen(WRITER, shell=True, stdout=subprocess.PIPE, start_new_session=True)
    delays = _latencies(_pipe_chunks(proc))
    proc.wait()
    return {"delays": delays}


def measure_jobmagic() -> dict:
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        service.start("true").wait()
        worker = service.start(WRITER)
        delays = _latencies(worker.stream())
        worker.wait(timeout=30)
        return {"delays": delays}
    finally:
        service.shutdown()


def run(ctx: Context) -> list[Row]:
    repeats = ctx.repeats(2)
    goals = {"p50": Goal("value", 5.0), "p99": Goal("value", 50.0)}
    missing = engine_missing()
    if missing:
        return [Row(f"follow latency {p}", missing=missing, goal=g) for p, g in goals.items()]
    base, cand = [], []
    for _ in range(repeats):
        base.append(run_child(ctx, f"{__name__}:measure_pipe")["delays"])
        cand.append(run_child(ctx, f"{__name__}:measure_jobmagic")["delays"])
    rows = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        rows.append(
            Row(
                f"follow latency {label}",
                median([percentile(d, fraction) for d in cand]),
                "ms",
                median([percentile(d, fraction) for d in base]),
                "pipe",
                goals[label],
                repeats,
            )
        )
    worst, worst_pipe = median([max(d) for d in cand]), median([max(d) for d in base])
    rows[-1].note = f"max {worst:.1f} ms (pipe {worst_pipe:.1f} ms)"
    lost = [LINES - len(d) for d in cand if len(d) != LINES]
    if lost:
        rows[-1].note += f"; lines missing from stream(): {lost}"
    return rows
