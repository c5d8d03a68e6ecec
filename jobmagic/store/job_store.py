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
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jobmagic.core.files import file_size, private_dir
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.errors import JobNameInUse, StoreError

from .home import jobmagic_home
from .records import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SELECT_COLUMNS,
    JobRecord,
    this_process_owner,
)

#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT = 60.0
#: Marks the file as jobmagic's ("JOBM"), so a foreign SQLite file is never written to.
APPLICATION_ID = 0x4A4F424D
DB_NAME = "jobs.sqlite"
#: Touched after every commit (IN_ATTRIB for inotify watchers). A commit's last write to
#: the WAL comes before SQLite publishes it in the shared-memory index, so a watcher woken
#: by that write may not see the commit yet; this file changes only once it is visible.
CHANGED_NAME = "jobs.changed"


class JobStore:
    """The job records of one job home, in ``<home>/jobs.sqlite``.

    Parameters
    ----------
    home:
        The job home directory; ``None`` means :func:`jobmagic.store.home.jobmagic_home`.
        It is created 0700 with ``logs/`` inside; the database file is 0600.

    Raises
    ------
    StoreError
        When the file is damaged, is another program's database, or was written by a newer
        jobmagic. The message names the file and how to move it aside.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = private_dir(Path(home) if home is not None else jobmagic_home())
        self.logs_dir = private_dir(self.home / "logs")
        self.path = self.home / DB_NAME
        self.changed_path = self.home / CHANGED_NAME
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
        if not self.changed_path.exists():
            os.close(os.open(self.changed_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
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
                for statement in MIGRATIONS[number].split(";"):
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
        # Outside the transaction: the commit is visible to every reader by now.
        with contextlib.suppress(OSError):
            os.utime(self.changed_path)

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[JobRecord]:
        with self._lock:
            try:
                rows = self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from exc
        return [JobRecord.from_row(row) for row in rows]

    # -- records -----------------------------------------------------------------------
    def create(self, spec: JobSpec) -> JobRecord:
        """Allocate an id and record a QUEUED job of ``spec`` owned by this process.

        Only the names of ``spec.env`` are stored, never their values.

        Raises
        ------
        JobNameInUse
            When a queued or running job already has ``spec.name``.
        """
        owner, owner_pid, owner_start = this_process_owner()
        try:
            with self._write() as db:
                cursor = db.execute(
                    "INSERT INTO jobs (name, command, cwd, env_keys, state, created_at, owner,"
                    " owner_pid, owner_start, detached, pty, timeout, backend, shell)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.name,
                        spec.command,
                        spec.cwd,
                        json.dumps(sorted(spec.env)),
                        JobState.QUEUED.value,
                        time.time(),
                        owner,
                        owner_pid,
                        owner_start,
                        int(spec.detach),
                        int(spec.pty),
                        spec.timeout,
                        spec.backend,
                        spec.shell,
                    ),
                )
                job_id = cursor.lastrowid
                assert job_id is not None
                db.execute(
                    "UPDATE jobs SET log_path = ? WHERE id = ?",
                    (str(self.log_path(job_id)), job_id),
                )
        except sqlite3.IntegrityError as exc:
            raise JobNameInUse(
                f"a running job is already named {spec.name!r}; choose another name "
                "or stop that job first"
            ) from exc
        record = self.get(job_id)
        assert record is not None
        return record

    def log_path(self, job_id: int) -> Path:
        """Where the log of job ``job_id`` lives: ``<home>/logs/<id>.log``."""
        return self.logs_dir / f"{job_id}.log"

    def update(self, job_id: int, **fields: Any) -> None:
        """Set some columns of one record (``state`` may be a :class:`JobState`)."""
        if not fields:
            return
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown job record fields: {sorted(unknown)}")
        values = [_column_value(value) for value in fields.values()]
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
        log_size = file_size(self.log_path(job_id))
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, error = ?, ended_at = ?,"
                " log_size = ? WHERE id = ? AND state IN ('queued', 'running')",
                (state.value, exit_code, error, ended_at or time.time(), log_size, job_id),
            )

    def get(self, job_id: int) -> JobRecord | None:
        """The record with ``job_id``, or None."""
        records = self._query(f"SELECT {SELECT_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return records[0] if records else None

    def find_name(self, name: str) -> JobRecord | None:
        """The newest job named ``name``, or None."""
        records = self._query(
            f"SELECT {SELECT_COLUMNS} FROM jobs WHERE name = ? ORDER BY id DESC LIMIT 1",
            (name,),
        )
        return records[0] if records else None

    def list(
        self, states: Iterable[JobState] | None = None, owner: str | None = None
    ) -> list[JobRecord]:
        """Records in id order, optionally only those in ``states`` or of one ``owner``."""
        sql = f"SELECT {SELECT_COLUMNS} FROM jobs"
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

    def delete(self, job_id: int) -> JobRecord | None:
        """Remove a record and its log; return the record (None if there was none).

        Files a backend kept for the job are the caller's to remove (see ``backend_ref``).
        """
        record = self.get(job_id)
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path(job_id))
        return record

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the store."""
        with self._lock:
            value: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return value

    def prune(self, keep_finished: int, max_log_bytes: int) -> builtins.list[JobRecord]:
        """Delete the oldest finished jobs beyond ``keep_finished`` or ``max_log_bytes``.

        Running and queued jobs are never pruned. Returns the records removed.
        """
        finished = "state IN ('succeeded', 'failed', 'stopped')"
        with self._lock:
            count, total = self._db.execute(
                f"SELECT count(*), coalesce(sum(log_size), 0) FROM jobs WHERE {finished}"
            ).fetchone()
        if count <= keep_finished and total <= max_log_bytes:
            return []
        removed: builtins.list[JobRecord] = []
        for record in self._query(
            f"SELECT {SELECT_COLUMNS} FROM jobs WHERE {finished} ORDER BY id"
        ):
            if count <= keep_finished and total <= max_log_bytes:
                break
            self.delete(record.id)
            removed.append(record)
            count -= 1
            total -= record.log_size
        return removed

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def _column_value(value: Any) -> Any:
    """A Python value as the column stores it (states by name, references as JSON)."""
    if isinstance(value, JobState):
        return value.value
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
