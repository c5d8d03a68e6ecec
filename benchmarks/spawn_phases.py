"""Where a spawn's time goes: the median of each phase of ``start("true").wait()``.

Not a case (no row, no goal): a look inside the spawn case, run on demand::

    .venv/bin/python benchmarks/spawn_phases.py [JOBS]      # JOBMAGIC_CGROUPS=off: none

It starts and waits for JOBS ``true`` jobs (default 1000) one after the other in a fresh
job home, with a timestamp taken on entry to (or return from) the engine methods that
begin each phase, and prints each phase's median and its share of the median job. Then
the floor (``spawn_floor.py``) the same way, split at its ``start()``'s return. The marks
wrap methods by name: a renamed method makes this fail at once, never measure nothing.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/...`

#: (from mark, to mark, what happens between), in the order they begin. Two overlap:
#: the job runs (from the spawner's answer) while start() commits its record.
PHASES = [
    ("called", "record", "start(): checks, the Worker, up to the store's write"),
    ("record", "launch", "the record inserted, its log made, its lifecycle bound"),
    ("launch", "request", "the backend: cgroup made, the job's argv, up to the spawner request"),
    ("request", "answer", "the spawner: request read, posix_spawn, answer back"),
    ("answer", "started", "the record's running fields written, the commit, start() returns"),
    ("answer", "exited", "the job runs; the spawner reaps it, the watcher hears of it"),
    ("exited", "writing", "the outcome read, handed to the end writer, cgroup removed"),
    ("writing", "written", "the end's store write (one transaction)"),
    ("written", "woken", "back on the watcher thread, the waiter woken, wait() returns"),
]

_marks: list[tuple[str, float]] = []


def _mark(owner: Any, name: str, *, before: str | None = None, after: str | None = None) -> None:
    function = getattr(owner, name)  # AttributeError: the engine changed, fix the marks

    @functools.wraps(function)
    def marked(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            _marks.append((before, time.monotonic()))
        result = function(*args, **kwargs)
        if after is not None:
            _marks.append((after, time.monotonic()))
        return result

    setattr(owner, name, marked)


def _install() -> None:
    from jobmagic.backends.local import leaders, process, spawner_client
    from jobmagic.engine import starting
    from jobmagic.store import job_store

    _mark(job_store.JobStore, "create_started", before="record")
    _mark(process.LocalExecutor, "launch", before="launch")
    _mark(spawner_client._SpawnerProcess, "spawn", before="request", after="answer")  # noqa: SLF001
    _mark(starting.Starting, "start", after="started")
    _mark(leaders.SpawnedLeader, "ended", before="exited")
    _mark(job_store.JobStore, "finish_many", before="writing", after="written")


def _phases(jobs: int) -> list[dict[str, float]]:
    """Each job's marks, in seconds since its start() was called."""
    from jobmagic import WorkerService

    service = WorkerService()
    try:
        service.start("true").wait()  # the spawner, the watcher and the store exist now
        _install()
        runs = []
        for _ in range(jobs):
            _marks.clear()
            begin = time.monotonic()
            if service.start("true").wait(timeout=30) != 0:
                raise RuntimeError("`true` did not succeed")
            _marks.append(("woken", time.monotonic()))
            seen: dict[str, float] = {"called": 0.0}
            for name, at in _marks:
                seen.setdefault(name, at - begin)  # the first of each: this job's
            runs.append(seen)
        return runs
    finally:
        service.shutdown()


def _floor(jobs: int) -> tuple[float, float]:
    """The floor's median start() and wait, in seconds."""
    from benchmarks.spawn_floor import Floor

    floor = Floor(Path.cwd() / "floor-home")
    try:
        floor.start("true").wait()
        starts, waits = [], []
        for _ in range(jobs):
            begin = time.monotonic()
            done = floor.start("true")
            started = time.monotonic()
            if not done.wait(30):
                raise RuntimeError("a floor job did not end")
            starts.append(started - begin)
            waits.append(time.monotonic() - started)
        return statistics.median(starts), statistics.median(waits)
    finally:
        floor.close()


def _show(runs: list[dict[str, float]], floor: tuple[float, float]) -> None:
    total = statistics.median(run["woken"] for run in runs)
    print(f"jobmagic, {len(runs)} jobs, median {total * 1000:.2f} ms a job:")
    for since, until, what in PHASES:
        median = statistics.median(run[until] - run[since] for run in runs)
        print(f"  {median * 1000:6.3f} ms {median / total:6.1%}  {since} -> {until}: {what}")
    start, wait = floor
    print(
        f"the floor: start() {start * 1000:.3f} ms, then the wait {wait * 1000:.3f} ms "
        f"(a job {(start + wait) * 1000:.2f} ms)"
    )


def main(argv: list[str]) -> int:
    jobs = int(argv[1]) if len(argv) > 1 else 1000
    with tempfile.TemporaryDirectory(prefix="jobmagic-phases-") as home:
        os.environ["JOBMAGIC_HOME"] = home
        os.chdir(home)
        runs = _phases(jobs)
        floor = _floor(jobs)
    _show(runs, floor)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
