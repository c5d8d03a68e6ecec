"""The job store: every job's record in one SQLite file shared by kernels and the server.

One kernel writes the records of its own jobs; other kernels and the Jupyter server read
them, and may finish the records of jobs whose kernel died. SQLite in WAL mode lets
readers and writers share the file; writes take the write lock up front (``BEGIN
IMMEDIATE``) and wait up to ``BUSY_TIMEOUT`` seconds for it, so "database is locked" does
not reach users when many kernels start jobs at once.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import JobNameInUse, StoreError
from .home import jobmagic_home, private_dir
from .procinfo import process_start_time, same_process
from .state import JobState, describe_exit, exit_code_from_shell_status

#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT = 60.0
#: Marks the file as jobmagic's ("JOBM"), so a foreign SQLite file is never written to.
APPLICATION_ID = 0x4A4F424D
DB_NAME = "jobs.sqlite"

# Each entry upgrades the schema by one version; the list index + 1 is the version it makes.
# Never edit an entry that has shipped: append a new one.
_MIGRATIONS: list[str] = [
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
]
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = [
    *("id", "name", "command", "cwd", "env_keys", "state", "pid", "pid_start", "pgid"),
    *("created_at", "started_at", "ended_at", "exit_code", "error", "owner", "owner_pid"),
    *("owner_start", "detached", "pty", "timeout", "log_path", "status_path", "log_size"),
    "stop_requested_by",
]


@dataclasses.dataclass
class JobRecord:
    """One job as the store holds it. Times are epoch seconds; ``None`` means not yet."""

    id: int
    name: str | None
    command: str
    cwd: str | None
    env_keys: list[str]
    state: JobState
    pid: int | None
    pid_start: int | None
    pgid: int | None
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
    status_path: str
    log_size: int
    stop_requested_by: str | None

    @property
    def owner_alive(self) -> bool:
        """True while the kernel that owns this job is alive."""
        return same_process(self.owner_pid, self.owner_start)

    @property
    def orphaned(self) -> bool:
        """True for a RUNNING job whose owning kernel is dead."""
        return self.state is JobState.RUNNING and not self.owner_alive

    @property
    def runtime(self) -> float | None:
        """Seconds between start and end (or now, while it runs)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-safe values, plus ``runtime`` and ``orphaned``."""
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        data["runtime"] = self.runtime
        data["orphaned"] = self.orphaned
        return data

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> JobRecord:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["env_keys"] = json.loads(values["env_keys"])
        values["state"] = JobState(values["state"])
        values["detached"] = bool(values["detached"])
        values["pty"] = bool(values["pty"])
        return cls(**values)


def this_process_owner() -> tuple[str, int, int | None]:
    """The (owner label, pid, start time) that names the current process as an owner."""
    pid = os.getpid()
    if _owner_cache.get(pid) is None:
        _owner_cache.clear()  # a forked child is a different owner
        _owner_cache[pid] = (f"{socket.gethostname()}:{pid}", pid, process_start_time(pid))
    return _owner_cache[pid]


_owner_cache: dict[int, tuple[str, int, int | None]] = {}


def stop_marker_path(record: JobRecord) -> str:
    """The file whose presence tells a job's wrapper, still starting, not to run it."""
    return record.status_path + ".stop"


def read_status_file(path: str) -> int | None:
    """The exit code a job's wrapper wrote, or None when it wrote nothing (yet)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if not text.endswith(b"\n"):
        return None
    try:
        return exit_code_from_shell_status(int(text))
    except ValueError:
        return None


class JobStore:
    """The job records of one job home, in ``<home>/jobs.sqlite``.

    Parameters
    ----------
    home:
        The job home directory; ``None`` means :func:`jobmagic.home.jobmagic_home`. It is
        created 0700 with ``logs/`` and ``status/`` inside; the database file is 0600.

    Raises
    ------
    StoreError
        When the file is damaged, is another program's database, or was written by a newer
        jobmagic. The message names the file and how to move it aside.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = private_dir(Path(home) if home is not None else jobmagic_home())
        self.logs_dir = private_dir(self.home / "logs")
        self.status_dir = private_dir(self.home / "status")
        self.path = self.home / DB_NAME
        # One connection per store, shared by threads: sqlite3 objects are not safe to use
        # from two threads at once, so this lock guards every use of self._db.
        self._lock = threading.Lock()
        self._db = self._connect()

    # -- opening ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # Processes opening the store at the same moment take turns (a blocking flock):
        # switching a new file to WAL and migrating it are not safe to race.
        lock_fd = os.open(self.home / "store.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            return self._connect_locked()
        finally:
            os.close(lock_fd)

    def _connect_locked(self) -> sqlite3.Connection:
        if not self.path.exists():
            # Create the file ourselves so it is 0600 from the start; SQLite gives its
            # -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            self._check_and_migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._damaged(exc) from exc
        return db

    def _damaged(self, exc: Exception) -> StoreError:
        return StoreError(
            f"the job store {self.path} cannot be used ({exc}). Move it aside "
            f"(mv {self.path} {self.path}.bad) and jobmagic will start a new one; "
            "its records stay in the moved file."
        )

    def _check_and_migrate(self, db: sqlite3.Connection) -> None:
        # Look before writing anything: switching a foreign file to WAL would change it.
        self._check_identity(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            # Again under the write lock: another process may have migrated meanwhile.
            version = self._check_identity(db)
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _check_identity(db: sqlite3.Connection) -> int:
        """Refuse foreign or newer files; return the file's schema version."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id != 0 or tables):
            raise sqlite3.DatabaseError("it is not a jobmagic job store")
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"it was written by a newer jobmagic (schema {version} > {SCHEMA_VERSION})"
            )
        return version

    # -- low-level access ------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its start."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot write to the job store {self.path}: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise
            except sqlite3.OperationalError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write to the job store {self.path}: {exc}") from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[JobRecord]:
        with self._lock:
            try:
                rows = self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from exc
        return [JobRecord._from_row(row) for row in rows]

    # -- records -----------------------------------------------------------------------
    def create(
        self,
        command: str,
        *,
        name: str | None = None,
        cwd: str | None = None,
        env_keys: Iterable[str] = (),
        detached: bool = False,
        pty: bool = False,
        timeout: float | None = None,
    ) -> JobRecord:
        """Allocate an id and record a QUEUED job owned by this process.

        Raises
        ------
        JobNameInUse
            When a queued or running job already has ``name``.
        """
        owner, owner_pid, owner_start = this_process_owner()
        try:
            with self._write() as db:
                cursor = db.execute(
                    "INSERT INTO jobs (name, command, cwd, env_keys, state, created_at, owner,"
                    " owner_pid, owner_start, detached, pty, timeout)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        command,
                        cwd,
                        json.dumps(sorted(env_keys)),
                        JobState.QUEUED.value,
                        time.time(),
                        owner,
                        owner_pid,
                        owner_start,
                        int(detached),
                        int(pty),
                        timeout,
                    ),
                )
                job_id = cursor.lastrowid
                assert job_id is not None
                log_path = str(self.logs_dir / f"{job_id}.log")
                status_path = str(self.status_dir / f"{job_id}.status")
                db.execute(
                    "UPDATE jobs SET log_path = ?, status_path = ? WHERE id = ?",
                    (log_path, status_path, job_id),
                )
        except sqlite3.IntegrityError as exc:
            raise JobNameInUse(
                f"a running job is already named {name!r}; choose another name "
                "or stop that job first"
            ) from exc
        record = self.get(job_id)
        assert record is not None
        return record

    def update(self, job_id: int, **fields: Any) -> None:
        """Set some columns of one record (``state`` may be a :class:`JobState`)."""
        if not fields:
            return
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job record fields: {sorted(unknown)}")
        values = [v.value if isinstance(v, JobState) else v for v in fields.values()]
        assignments = ", ".join(f"{column} = ?" for column in fields)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values, job_id))

    def finish(
        self,
        job_id: int,
        state: JobState,
        exit_code: int | None,
        error: str | None,
        ended_at: float | None = None,
    ) -> None:
        """Record a job's end, unless an earlier writer already did."""
        log_size = 0
        with contextlib.suppress(OSError):
            log_size = os.stat(self.logs_dir / f"{job_id}.log").st_size
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, error = ?, ended_at = ?,"
                " log_size = ? WHERE id = ? AND state IN ('queued', 'running')",
                (state.value, exit_code, error, ended_at or time.time(), log_size, job_id),
            )

    def get(self, job_id: int) -> JobRecord | None:
        """The record with ``job_id``, or None."""
        records = self._query(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,))
        return records[0] if records else None

    def find_name(self, name: str) -> JobRecord | None:
        """The newest job named ``name``, or None."""
        records = self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE name = ? ORDER BY id DESC LIMIT 1",
            (name,),
        )
        return records[0] if records else None

    def list(
        self, states: Iterable[JobState] | None = None, owner: str | None = None
    ) -> list[JobRecord]:
        """Records in id order, optionally only those in ``states`` or of one ``owner``."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            wanted = [s.value for s in states]
            clauses.append(f"state IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return self._query(sql + " ORDER BY id", params)

    def request_stop(self, job_id: int, by: str) -> None:
        """Record that someone (``"kernel"``, ``"ui"``, ``"timeout"``) asked the job to stop."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET stop_requested_by = coalesce(stop_requested_by, ?) WHERE id = ?",
                (by, job_id),
            )

    def adopt(self, job_id: int) -> None:
        """Make the current process the owner of a job."""
        owner, owner_pid, owner_start = this_process_owner()
        self.update(job_id, owner=owner, owner_pid=owner_pid, owner_start=owner_start)

    def delete(self, job_id: int) -> None:
        """Remove a record with its log and status files."""
        record = self.get(job_id)
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        if record is not None:
            for path in (record.log_path, record.status_path, stop_marker_path(record)):
                if path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the store."""
        with self._lock:
            value: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return value

    # -- keeping the records true --------------------------------------------------------
    def reconcile(self) -> builtins.list[int]:
        """Finish the records of jobs that ended while their owner was not watching.

        A RUNNING job whose wrapper process is gone gets the exit code its wrapper wrote
        (STOPPED when someone had asked it to stop); a QUEUED job whose owner died never
        started. Jobs whose owner is alive are left to their owner. Returns the ids changed.
        """
        changed: builtins.list[int] = []
        for record in self.list(states=(JobState.QUEUED, JobState.RUNNING)):
            if record.owner_alive:
                continue
            if record.state is JobState.QUEUED:
                self.finish(record.id, JobState.FAILED, None, "its kernel died before it started")
                changed.append(record.id)
                continue
            if same_process(record.pid, record.pid_start):
                continue
            exit_code = read_status_file(record.status_path)
            state, error = final_state(exit_code, record.stop_requested_by, record.timeout)
            if exit_code is None and state is JobState.FAILED:
                error = "ended while no kernel was watching it; its exit status is unknown"
            self.finish(record.id, state, exit_code, error, ended_at=_mtime(record.status_path))
            changed.append(record.id)
        return changed

    def prune(self, keep_finished: int, max_log_bytes: int) -> builtins.list[int]:
        """Delete the oldest finished jobs beyond ``keep_finished`` or ``max_log_bytes``.

        Running and queued jobs are never pruned. Returns the ids removed.
        """
        finished = "state IN ('succeeded', 'failed', 'stopped')"
        with self._lock:
            count, total = self._db.execute(
                f"SELECT count(*), coalesce(sum(log_size), 0) FROM jobs WHERE {finished}"
            ).fetchone()
        if count <= keep_finished and total <= max_log_bytes:
            return []
        removed: builtins.list[int] = []
        for record in self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE {finished} ORDER BY id"
        ):
            if count <= keep_finished and total <= max_log_bytes:
                break
            self.delete(record.id)
            removed.append(record.id)
            count -= 1
            total -= record.log_size
        return removed

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def final_state(
    exit_code: int | None, stop_requested_by: str | None, timeout: float | None
) -> tuple[JobState, str | None]:
    """The state and error message of a job that ended with ``exit_code``."""
    if stop_requested_by == "timeout":
        return JobState.STOPPED, f"timed out after {timeout:g} s" if timeout else "timed out"
    if stop_requested_by is not None:
        return JobState.STOPPED, None
    if exit_code == 0:
        return JobState.SUCCEEDED, None
    if exit_code is None:
        return JobState.FAILED, "exit status unknown"
    return JobState.FAILED, describe_exit(exit_code)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
