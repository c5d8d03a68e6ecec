"""``JobRecord``: one job as the store keeps it, and the schema's migrations."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import time
from typing import Any

from jobmagic.core.limits import Limits, Usage
from jobmagic.core.process_identity import process_start_time, same_process
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState, run_seconds

# Each entry upgrades the schema by one version; the list index + 1 is the version it makes.
# Never edit an entry that has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        command TEXT NOT NULL,
        cwd TEXT,
        env_keys TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL,
        pid INTEGER,
        pid_start INTEGER,
        pgid INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        error TEXT,
        owner TEXT,
        owner_pid INTEGER,
        owner_start INTEGER,
        detached INTEGER NOT NULL DEFAULT 0,
        pty INTEGER NOT NULL DEFAULT 0,
        timeout REAL,
        log_path TEXT NOT NULL DEFAULT '',
        status_path TEXT NOT NULL DEFAULT '',
        log_size INTEGER NOT NULL DEFAULT 0,
        stop_requested_by TEXT
    );
    CREATE UNIQUE INDEX jobs_live_name ON jobs(name)
        WHERE name IS NOT NULL AND state IN ('queued', 'running');
    CREATE INDEX jobs_state ON jobs(state);
    """,
    # 2: a job names its backend and keeps an opaque reference to its execution (for the
    # local backend: the wrapper's pid and start time, its process group, its status
    # file), so that other backends fit without changing the table again.
    """
    ALTER TABLE jobs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local';
    ALTER TABLE jobs ADD COLUMN backend_ref TEXT;
    ALTER TABLE jobs ADD COLUMN shell TEXT NOT NULL DEFAULT '/bin/sh';
    UPDATE jobs SET backend_ref = json_object(
        'pid', pid, 'start', pid_start, 'pgid', pgid, 'status', status_path)
        WHERE pid IS NOT NULL;
    ALTER TABLE jobs DROP COLUMN pid_start;
    ALTER TABLE jobs DROP COLUMN pgid;
    ALTER TABLE jobs DROP COLUMN status_path;
    """,
    # 3: the store's generation, a random token a new store puts in the names of its jobs'
    # files (logs, status files), so that a store started afresh next to the files of an
    # earlier one never reads or appends to them. A store made before keeps its names ('').
    """
    CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO store_info (key, value) VALUES ('generation', '');
    """,
    # 4: the queue: each job waits in a group (which may limit how many of its jobs run
    # at once), with a priority, after other jobs, and says why it waits.
    """
    ALTER TABLE jobs ADD COLUMN group_name TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN after_ids TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN queue_reason TEXT;
    ALTER TABLE jobs ADD COLUMN restarted_from INTEGER;
    ALTER TABLE jobs ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN gpus_held TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE groups (name TEXT PRIMARY KEY, parallel INTEGER NOT NULL DEFAULT 0);
    INSERT INTO store_info (key, value) VALUES ('queue_epoch', '0');
    CREATE INDEX jobs_group_state ON jobs(group_name, state);
    """,
    # 5: pause and resume. A paused job's state is 'paused' (its processes are stopped;
    # it keeps its slot and devices); ``paused_at`` is when the pause under way began,
    # ``paused_for`` the seconds of the pauses that are over (runtime leaves both out).
    # A paused group admits nothing; ``pause_epoch`` moves at every pause and resume, so
    # that a kernel whose job another process paused hears of it.
    """
    ALTER TABLE jobs ADD COLUMN paused_at REAL;
    ALTER TABLE jobs ADD COLUMN paused_for REAL NOT NULL DEFAULT 0;
    ALTER TABLE groups ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    INSERT INTO store_info (key, value) VALUES ('pause_epoch', '0');
    DROP INDEX jobs_live_name;
    CREATE UNIQUE INDEX jobs_live_name ON jobs(name)
        WHERE name IS NOT NULL AND state IN ('queued', 'running', 'paused');
    """,
    # 6: ``jobs_ownerless`` finds the detached queued jobs that any kernel may admit once
    # their owner is gone; ``session`` names the notebook whose kernel started the job
    # (JPY_SESSION_NAME): the next kernel of that notebook re-attaches the jobs a restart
    # left running. (IF NOT EXISTS: development stores of 5 may have the index already.)
    """
    ALTER TABLE jobs ADD COLUMN session TEXT;
    CREATE INDEX IF NOT EXISTS jobs_ownerless ON jobs(id) WHERE state = 'queued' AND detached = 1;
    """,
    # 7: resource limits (bytes, CPUs, processes; NULL: none), whether they may be had
    # on a best-effort basis, what holds the job ('cgroup v1', 'cgroup v2', 'none', with
    # best-effort notes), and what it used in all (bytes at most, CPU seconds).
    """
    ALTER TABLE jobs ADD COLUMN memory_limit INTEGER;
    ALTER TABLE jobs ADD COLUMN cpu_limit REAL;
    ALTER TABLE jobs ADD COLUMN pids_limit INTEGER;
    ALTER TABLE jobs ADD COLUMN best_effort INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN containment TEXT;
    ALTER TABLE jobs ADD COLUMN peak_memory INTEGER;
    ALTER TABLE jobs ADD COLUMN cpu_seconds REAL;
    """,
    # 8: the cluster a remote backend runs the job on (Ray: its Jobs API address),
    # whether the working directory is shipped with the job, and what its backend says of
    # it while it runs ("waiting for the Ray cluster"; NULL: nothing).
    """
    ALTER TABLE jobs ADD COLUMN address TEXT;
    ALTER TABLE jobs ADD COLUMN ship_cwd INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN detail TEXT;
    """,
    # 9: ``stop_deadline``, when a stop under way kills what is left of the job (epoch
    # seconds; NULL: no stop asked for), and the store's revision: ``rev`` is the store-wide
    # count of job changes when the job last changed (triggers keep it, whoever writes),
    # and ``removed_jobs`` keeps the revision at which each removed job went, so that a
    # client holding a revision can ask for what changed since.
    """
    ALTER TABLE jobs ADD COLUMN stop_deadline REAL;
    ALTER TABLE jobs ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_rev ON jobs(rev);
    CREATE TABLE removed_jobs (id INTEGER PRIMARY KEY, rev INTEGER NOT NULL);
    CREATE INDEX removed_jobs_rev ON removed_jobs(rev);
    INSERT INTO store_info (key, value) VALUES ('rev', '0');
    CREATE TRIGGER jobs_rev_insert AFTER INSERT ON jobs BEGIN
        UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rev';
        UPDATE jobs SET rev = (SELECT CAST(value AS INTEGER) FROM store_info WHERE key = 'rev')
            WHERE id = NEW.id;
        DELETE FROM removed_jobs WHERE id = NEW.id;
    END;
    CREATE TRIGGER jobs_rev_update AFTER UPDATE ON jobs WHEN NEW.rev = OLD.rev BEGIN
        UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rev';
        UPDATE jobs SET rev = (SELECT CAST(value AS INTEGER) FROM store_info WHERE key = 'rev')
            WHERE id = NEW.id;
    END;
    CREATE TRIGGER jobs_rev_delete AFTER DELETE ON jobs BEGIN
        UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rev';
        INSERT OR REPLACE INTO removed_jobs (id, rev)
            VALUES (OLD.id, (SELECT CAST(value AS INTEGER) FROM store_info WHERE key = 'rev'));
    END;
    """,
    # 10: the queue in its order, queued jobs only: a pass reads the first few jobs of a
    # group (and the list of groups with queued jobs) without sorting all of them, and a
    # full group's jobs that wait for other jobs without reading the rest.
    """
    CREATE INDEX jobs_queue_order ON jobs(group_name, priority DESC, id)
        WHERE state = 'queued';
    CREATE INDEX jobs_queued_after ON jobs(group_name, priority DESC, id)
        WHERE state = 'queued' AND after_ids != '[]';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = [
    *("id", "name", "command", "cwd", "env_keys", "state", "pid", "created_at"),
    *("started_at", "ended_at", "exit_code", "error", "owner", "owner_pid", "owner_start"),
    *("detached", "pty", "timeout", "log_path", "log_size", "stop_requested_by"),
    *("backend", "backend_ref", "shell"),
    *("group_name", "priority", "after_ids", "queue_reason", "restarted_from"),
    *("gpus", "resources", "gpus_held", "paused_at", "paused_for", "session"),
    *("memory_limit", "cpu_limit", "pids_limit", "best_effort", "containment"),
    *("peak_memory", "cpu_seconds", "address", "ship_cwd", "detail", "stop_deadline", "rev"),
]
#: The columns a SELECT names, in ``COLUMNS`` order.
SELECT_COLUMNS = ", ".join(COLUMNS)


@dataclasses.dataclass
class JobRecord:
    """One job as the store holds it. Times are epoch seconds; ``None`` means not yet.

    ``backend_ref`` is the backend's own reference to the running execution (JSON values);
    only that backend reads it.
    """

    id: int
    name: str | None
    command: str
    cwd: str | None
    env_keys: list[str]
    state: JobState
    pid: int | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    error: str | None
    owner: str | None
    owner_pid: int | None
    owner_start: int | None
    detached: bool
    pty: bool
    timeout: float | None
    log_path: str
    log_size: int
    stop_requested_by: str | None
    backend: str
    backend_ref: dict[str, Any] | None
    shell: str
    group_name: str
    priority: int
    after_ids: list[int]
    queue_reason: str | None
    restarted_from: int | None
    gpus: int
    resources: dict[str, int]
    gpus_held: list[str]
    paused_at: float | None
    paused_for: float
    session: str | None
    memory_limit: int | None
    cpu_limit: float | None
    pids_limit: int | None
    best_effort: bool
    containment: str | None
    peak_memory: int | None
    cpu_seconds: float | None
    address: str | None
    ship_cwd: bool
    detail: str | None
    stop_deadline: float | None
    rev: int

    @property
    def owner_alive(self) -> bool:
        """True while the kernel (or other process) that owns this job is alive."""
        return same_process(self.owner_pid, self.owner_start)

    @property
    def orphaned(self) -> bool:
        """True for a QUEUED or RUNNING job whose owner is dead (see ``adopt``)."""
        return not self.state.is_finished and not self.owner_alive

    @property
    def runtime(self) -> float | None:
        """Seconds it ran between start and end (or now), paused time left out."""
        return run_seconds(
            self.started_at, self.ended_at, self.paused_at, self.paused_for, time.time()
        )

    def spec(self) -> JobSpec:
        """The job's spec as recorded (environment values are never stored: ``env`` is empty)."""
        return JobSpec(
            self.command,
            name=self.name,
            cwd=self.cwd,
            timeout=self.timeout,
            pty=self.pty,
            detach=self.detached,
            shell=self.shell,
            backend=self.backend,
            group=self.group_name,
            priority=self.priority,
            after=tuple(self.after_ids),
            gpus=self.gpus,
            resources=self.resources,
            memory=self.memory_limit,
            cpus=self.cpu_limit,
            pids=self.pids_limit,
            best_effort=self.best_effort,
            address=self.address,
            ship_cwd=self.ship_cwd,
        )

    @property
    def limits(self) -> Limits:
        """The resource limits it was started with (empty: none)."""
        return Limits(self.memory_limit, self.cpu_limit, self.pids_limit)

    @property
    def usage(self) -> Usage | None:
        """What it used in all, once it has ended (None before, or when unknown)."""
        if self.peak_memory is None and self.cpu_seconds is None:
            return None
        return Usage(peak_memory=self.peak_memory, cpu_seconds=self.cpu_seconds)

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
        """The record of one row selected with ``SELECT_COLUMNS``."""
        values = dict(zip(COLUMNS, row, strict=True))
        values["env_keys"] = json.loads(values["env_keys"])
        values["after_ids"] = json.loads(values["after_ids"])
        values["resources"] = json.loads(values["resources"])
        values["gpus_held"] = json.loads(values["gpus_held"])
        values["state"] = JobState(values["state"])
        values["detached"] = bool(values["detached"])
        values["pty"] = bool(values["pty"])
        values["best_effort"] = bool(values["best_effort"])
        values["ship_cwd"] = bool(values["ship_cwd"])
        ref = values["backend_ref"]
        values["backend_ref"] = json.loads(ref) if ref is not None else None
        return cls(**values)


def this_process_owner() -> tuple[str, int, int | None]:
    """The (owner label, pid, start time) that names the current process as an owner."""
    pid = os.getpid()
    if _owner_cache.get(pid) is None:
        _owner_cache.clear()  # a forked child is a different owner
        _owner_cache[pid] = (f"{socket.gethostname()}:{pid}", pid, process_start_time(pid))
    return _owner_cache[pid]


_owner_cache: dict[int, tuple[str, int, int | None]] = {}
