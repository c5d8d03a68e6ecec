"""Case 12, Ray: jobmagic's Ray backend and Ray's own ``JobSubmissionClient``, side by side.

A local Ray head (``tests/ray_head.py``, on free ports) serves both sides in the same run;
each side runs in a fresh interpreter.

- Submit to first line: the time from asking for a job until its first output line is in
  hand (jobmagic: ``svc.start`` then ``Worker.stream()``, i.e. in the local log; Ray:
  ``submit_job`` then ``tail_job_logs``). It holds Ray's PENDING -> RUNNING time; jobmagic
  does not tell PENDING from RUNNING yet, so this stands for "submit to RUNNING".
- Line to local log: a job prints a line every 0.3 s with the time it printed it; p50 of
  the delay until the line is in the local log (Ray: until ``tail_job_logs`` yields it).
- Kernel CPU: 20 jobs print 1 MB/s each for 8 s (1,000-character lines); the CPU time of
  the process that follows them all, per second of wall time, in % of one core.

Without Ray installed (``pip install 'jobmagic[ray]'``) the rows say so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, engine_missing, run_child
from benchmarks.report import Goal, Row, median

FIRSTS = 3
LINES = 15
STREAMS = 20
SECONDS = 8
# Prints "<n> <epoch seconds>" every 0.3 s.
TICKER = f'for n in $(seq {LINES}); do echo "$n $(date +%s.%N)"; sleep 0.3; done'
# 1 MB/s for SECONDS: 1,000 lines of 1,000 characters a second.
STREAMER = (
    f"{sys.executable} -u -c 'import time\n"
    'line = "x" * 999 + "\\n"\n'
    f"for _ in range({SECONDS} * 10):\n"
    "    t = time.monotonic()\n"
    '    print(line * 100, end="", flush=True)\n'
    "    time.sleep(max(0, 0.1 - (time.monotonic() - t)))'"
)


def _delays(text: str, seen: float, found: dict[str, float]) -> None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            found.setdefault(parts[0], seen - float(parts[1]))


def measure_jobmagic(address: str) -> dict:
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        firsts = []
        for _ in range(FIRSTS):
            begin = time.perf_counter()
            worker = service.start("echo first", backend="ray", address=address)
            next(iter(worker.stream()))
            firsts.append(time.perf_counter() - begin)
            worker.wait(60)
        worker = service.start(TICKER, backend="ray", address=address)
        found: dict[str, float] = {}
        for chunk in worker.stream():
            _delays(chunk.decode(), time.time(), found)
        workers = [service.start(STREAMER, backend="ray", address=address) for _ in range(STREAMS)]
        for w in workers:  # every job under way
            next(iter(w.stream()))
        cpu, wall = time.process_time(), time.monotonic()
        for w in workers:
            w.wait(120)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        sizes = [len(w.output()) for w in workers]
        return {"first": firsts, "follow": list(found.values()), "cpu": cpu / wall, "sizes": sizes}
    finally:
        service.shutdown()


def measure_ray(address: str) -> dict:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)

    async def first_chunk(submission_id: str) -> None:
        async for _ in client.tail_job_logs(submission_id):
            return

    async def follow(submission_id: str, found: dict[str, float]) -> None:
        async for text in client.tail_job_logs(submission_id):
            _delays(text, time.time(), found)

    firsts = []
    for _ in range(FIRSTS):
        begin = time.perf_counter()
        submission_id = client.submit_job(entrypoint="echo first")
        asyncio.run(first_chunk(submission_id))
        firsts.append(time.perf_counter() - begin)
    found: dict[str, float] = {}
    asyncio.run(follow(client.submit_job(entrypoint=TICKER), found))
    return {"first": firsts, "follow": list(found.values())}


def run(ctx: Context) -> list[Row]:
    names = (
        "ray: submit -> first output line",
        "ray: output line -> local log, p50",
        f"ray: kernel CPU, {STREAMS} jobs streaming 1 MB/s each",
    )
    missing = engine_missing() or (
        "" if importlib.util.find_spec("ray") else "n/a (pip install 'jobmagic[ray]')"
    )
    goals = (Goal("ratio", 1.1), Goal("value", 1.5), Goal("value", 5.0))
    if missing:
        return [
            Row(name, missing=missing, goal=goal) for name, goal in zip(names, goals, strict=True)
        ]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from ray_head import ray_head

    with ray_head() as address:
        ray = run_child(ctx, f"{__name__}:measure_ray", timeout=300, address=address)
        ours = run_child(ctx, f"{__name__}:measure_jobmagic", timeout=600, address=address)
    complete = all(size == SECONDS * 10 * 100 * 1000 for size in ours["sizes"])
    return [
        Row(
            names[0],
            median(ours["first"]),
            "s",
            median(ray["first"]),
            "JobSubmissionClient",
            goals[0],
            FIRSTS,
        ),
        Row(
            names[1],
            statistics.median(ours["follow"]),
            "s",
            statistics.median(ray["follow"]),
            "tail_job_logs",
            goals[1],
            LINES,
            note=f"max: jobmagic {max(ours['follow']):.2f} s, Ray {max(ray['follow']):.2f} s",
        ),
        Row(
            names[2],
            ours["cpu"] * 100,
            "%",
            None,
            "",
            goals[2],
            1,
            note="every log complete" if complete else f"log sizes {ours['sizes']}",
        ),
    ]
