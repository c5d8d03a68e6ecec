"""Case 8, queue: the shared queue's costs at 0 and at 10,000 queued jobs.

Measured in a fresh interpreter: the cost of enqueueing a job into a full group (a group
of parallel 1 whose slot a sleeping job holds) while the queue holds 0 jobs, and again
while it holds 10,000 (goal: flat, ratio <= 1.2); the time from one queued job's end to
the next one's start as the queue drains (p50 <= 10 ms, p99 <= 50 ms), with 10,000
queued; and the CPU the process uses while 10,000 jobs wait (goal <= 1 % of a core).
The baseline of the enqueue row is the cost at 0 queued, measured in the same run.

pueue is not installable here (no crates.io, no package), so it is compared with its own
published figures (pueue issue #573): 500 adds take 2.3 s on an empty queue and 12.2 s
with 2,000 queued (5.3 times slower), and its daemon admits queued tasks on a 300 ms
loop. The same 500 adds are timed here, at 0 and at 2,000 queued.
"""

from __future__ import annotations

import itertools
import threading
import time

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median, percentile

QUEUED = 10_000
BATCH = 200  # jobs whose enqueue cost is timed at each size
PUEUE_ADDS, PUEUE_QUEUED = 500, 2_000  # pueue #573's measurement
PUEUE_EMPTY, PUEUE_FULL = 2.3, 12.2  # its seconds for those 500 adds
PUEUE_LOOP = 0.300  # its daemon's admission loop period, seconds
DRAIN = BATCH  # queued jobs whose handoffs are timed (the first batch)
IDLE = 10.0  # seconds


def measure(queued: int) -> dict:
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        service.set_group("full", 1)
        holder = service.start("sleep 600", group="full")

        def enqueue(n: int) -> list:
            return [service.start("true", group="full") for _ in range(n)]

        start = time.perf_counter()
        first = enqueue(PUEUE_ADDS)
        adds_at_zero = time.perf_counter() - start
        at_zero = adds_at_zero / PUEUE_ADDS
        while service.scheduler.queued < PUEUE_QUEUED:
            enqueue(500)
        start = time.perf_counter()
        enqueue(PUEUE_ADDS)
        adds_at_pueue_queued = time.perf_counter() - start
        while service.scheduler.queued < queued:
            enqueue(1000)
        start = time.perf_counter()
        enqueue(BATCH)
        at_full = (time.perf_counter() - start) / BATCH
        cpu = time.process_time()
        threading.Event().wait(IDLE)  # the one timed wait: the idle window itself
        idle = (time.process_time() - cpu) / IDLE * 100
        holder.stop(timeout=0.1)
        for worker in first[:DRAIN]:
            worker.wait(60)
        gaps = [
            later.started_at - earlier.ended_at
            for earlier, later in itertools.pairwise(first[:DRAIN])
        ]

        return {
            "at_zero": at_zero,
            "at_full": at_full,
            "idle": idle,
            "gaps": gaps,
            "adds_at_zero": adds_at_zero,
            "adds_at_pueue_queued": adds_at_pueue_queued,
        }
    finally:
        service.shutdown(timeout=1)


def run(ctx: Context) -> list[Row]:
    prefix = f"queue, {QUEUED:,} queued"
    missing = engine_missing()
    if missing:
        return [Row(f"{prefix}: enqueue", missing=missing)]
    runs = [run_child(ctx, f"{__name__}:measure", queued=QUEUED, timeout=600)]
    gaps = runs[0]["gaps"]
    return [
        Row(
            f"{prefix}: enqueue into a full group",
            median([r["at_full"] for r in runs]),
            "s",
            median([r["at_zero"] for r in runs]),
            "the same at 0 queued",
            goal=Goal("ratio", 1.2),
        ),
        Row(
            f"{prefix}: slot freed -> next running, p50",
            median(gaps),
            "s",
            goal=Goal("value", 0.010),
        ),
        Row(
            f"{prefix}: slot freed -> next running, p99",
            percentile(gaps, 0.99),
            "s",
            goal=Goal("value", 0.050),
        ),
        Row(f"{prefix}: idle CPU", median([r["idle"] for r in runs]), "%", goal=Goal("value", 1.0)),
        Row(
            f"queue: {PUEUE_ADDS} adds at {PUEUE_QUEUED:,} queued",
            median([r["adds_at_pueue_queued"] for r in runs]),
            "s",
            median([r["adds_at_zero"] for r in runs]),
            "the same at 0 queued",
        ),
        Row(
            f"queue: pueue, {PUEUE_ADDS} adds at {PUEUE_QUEUED:,} queued (issue #573 figures)",
            PUEUE_FULL,
            "s",
            PUEUE_EMPTY,
            "the same at 0 queued",
            note="pueue is not installable here: its published figures, not a run",
        ),
        Row(
            "queue: pueue, slot freed -> next running (its admission loop period)",
            PUEUE_LOOP,
            "s",
            note="pueue is not installable here: its published figures, not a run",
        ),
    ]
