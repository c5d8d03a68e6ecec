"""Many realistic finished jobs, written to a job store in one transaction.

For the tests (and the benchmark) that need a store with a long history: rows as a
kernel would have left them (commands, names, times, exit codes, usage, a log path),
inserted through ``JobStore.write()`` with one ``executemany``, so that 10,000 jobs
take a fraction of a second and the store's triggers give each its revision.
"""

from __future__ import annotations

import json

from jobmagic.store.job_store import JobStore

_COMMANDS = [
    "python train.py --epochs {n} --lr 0.00{d} --data data/shard-{n:04d}",
    "pytest -q tests/test_model_{d}.py -k 'not slow'",
    "rsync -a --delete results/run-{n:05d}/ /mnt/backup/results/run-{n:05d}/",
    "jupyter nbconvert --to html --execute reports/week-{d}.ipynb",
    "python -m pip download torch=={d}.1.0 -d wheels/",
    "bash scripts/preprocess.sh raw/part-{n:05d}.csv clean/part-{n:05d}.parquet",
]
_NAMES = ["train-{n}", None, "sync-{n}", None, "report-{d}", None]
_OUTCOMES = [("succeeded", 0, None)] * 8 + [
    ("failed", 1, "exit code 1"),
    ("stopped", -15, "stopped from the UI (SIGTERM)"),
]


def insert_finished_jobs(store: JobStore, count: int, *, ended_before: float) -> list[int]:
    """Add ``count`` finished jobs that all ended before ``ended_before`` (epoch seconds).

    Returns their ids, ascending. One transaction: the store's readers see all of them,
    or none.
    """
    with store.write() as db:
        [(last,)] = db.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchall()
        rows = []
        for index in range(count):
            job_id = last + 1 + index
            n, d = job_id, job_id % 9 + 1
            state, exit_code, error = _OUTCOMES[job_id % len(_OUTCOMES)]
            ended = ended_before - (count - index) * 7.0
            started = ended - 60.0 - job_id % 600
            name = _NAMES[job_id % len(_NAMES)]
            rows.append(
                (
                    job_id,
                    None if name is None else name.format(n=n, d=d),
                    _COMMANDS[job_id % len(_COMMANDS)].format(n=n, d=d),
                    "/home/user/project",
                    json.dumps(["CUDA_VISIBLE_DEVICES"] if job_id % 3 == 0 else []),
                    state,
                    40_000 + job_id % 20_000,
                    started - 0.5,
                    started,
                    ended,
                    exit_code,
                    error,
                    f"workstation:{3000 + job_id % 40}",
                    str(store.log_path(job_id)),
                    1024 * (job_id % 500),
                    json.dumps({"pid": 40_000 + job_id % 20_000, "start": 1000 + job_id}),
                    "none",
                    (job_id % 64 + 1) << 20,
                    round((ended - started) * 0.8, 2),
                    f"notebooks/experiment-{job_id % 12}.ipynb",
                )
            )
        db.executemany(
            "INSERT INTO jobs (id, name, command, cwd, env_keys, state, pid, created_at,"
            " started_at, ended_at, exit_code, error, owner, log_path, log_size, backend_ref,"
            " containment, peak_memory, cpu_seconds, session)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return [row[0] for row in rows]
