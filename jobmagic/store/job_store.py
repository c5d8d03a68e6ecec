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
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jobmagic.core.files import (
    UnsafePath,
    private_dir,
)
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.errors import JobNameInUse, StoreError

from .home import jobmagic_home
from .job_ends import End, JobEnds, bump_queue_epoch
from .opening import CHANGED_NAME, DB_NAME, damaged, open_database, rollback
from .records import (
    COLUMNS,
    SELECT_COLUMNS,
    JobRecord,
    this_process_owner,
)

#: The largest id SQLite can hold; a larger number names no job.
MAX_ID = (1 << 63) - 1


class JobStore(JobEnds):
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
        jobmagic; when the home, its ``logs/`` or the store's files are links or belong to
        another user. The message names the file and what to do.

    A store notices when its file is deleted or replaced while it is open (someone reset
    the store): every later read or write raises ``StoreError`` saying so, rather than
    showing the old file's jobs or none.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        try:
            self.home = private_dir(
                Path(home) if home is not None else jobmagic_home(), link_allowed=True
            )
            self.logs_dir = private_dir(self.home / "logs")
        except UnsafePath as exc:
            raise StoreError(f"cannot use the job home: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot use the job home {home or jobmagic_home()}: {exc}") from None
        self.path = self.home / DB_NAME
        self.changed_path = self.home / CHANGED_NAME
        # One connection per store, shared by threads: sqlite3 objects are not safe to use
        # from two threads at once, so this lock guards every use of self._db.
        self._lock = threading.Lock()
        # Finished jobs whose end could not be written yet (disk full): job id -> the
        # arguments of finish(), written by the next write that works (retry_unsaved()).
        self._unsaved: dict[int, End] = {}
        self.generation = ""
        self._identity: tuple[int, int] = (0, 0)
        self._db = self._connect()

    # -- opening ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        opened = open_database(self.home, self.path, self.changed_path)
        self.generation = opened.generation
        self._identity = opened.identity
        return opened.db

    def _damaged(self, exc: Exception) -> StoreError:
        return damaged(self.home, self.path, exc)

    # -- low-level access ------------------------------------------------------------
    def write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction (see ``_write``), for the store's other modules (the queue)."""
        return self._write()

    def read(self, sql: str, params: Iterable[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        """Rows of one query, for the store's other modules (the queue)."""
        with self._lock:
            self._check_same_file()
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its start.

        Every failure but a constraint's (``IntegrityError``, the caller's to explain) is
        a ``StoreError`` with one line; the transaction is rolled back if SQLite has not
        done so itself (it does after "database or disk is full").
        """
        with self._lock:
            self._check_same_file()
            before = self._db.total_changes
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                rollback(self._db)
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                    raise StoreError(f"cannot write to the job store {self.path}: {exc}") from exc
                raise
            changed = self._db.total_changes != before
        # Outside the transaction: the commit is visible to every reader by now. A write
        # that changed nothing (a queue pass with nothing to do) wakes nobody.
        if changed:
            self._signal_change()
        if self._unsaved:
            self.retry_unsaved()

    def _signal_change(self) -> None:
        """Tell inotify watchers that a commit is visible: open the change file and close it.

        ``IN_CLOSE_WRITE`` costs no disk write; ``utime`` dirties the inode and waits for
        ext4's journal while it commits (tenths of a millisecond, twice per job).
        """
        with contextlib.suppress(OSError):
            os.close(os.open(self.changed_path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW))

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[JobRecord]:
        with self._lock:
            self._check_same_file()
            try:
                rows = self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from exc
        return [JobRecord.from_row(row) for row in rows]

    def _check_same_file(self) -> None:
        """Refuse to go on when the store's file was deleted or replaced (lock held)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            what = "deleted"
        else:
            if (info.st_dev, info.st_ino) == self._identity:
                return
            what = "replaced"
        raise StoreError(
            f"the job store {self.path} was {what} while this process used it; restart "
            "the kernel (or the Jupyter server) to use the store that is there now"
        )

    # -- records -----------------------------------------------------------------------
    def create(
        self, spec: JobSpec, restarted_from: int | None = None, session: str | None = None
    ) -> JobRecord:
        """Allocate an id and record a QUEUED job of ``spec`` owned by this process.

        Only the names of ``spec.env`` are stored, never their values. ``session``: the
        notebook whose kernel starts it, if known.

        Raises
        ------
        JobNameInUse
            When a queued or running job already has ``spec.name``.
        """
        job_id = self.create_started(spec, restarted_from=restarted_from, session=session)
        record = self.get(job_id)
        assert record is not None
        return record

    def create_started(
        self,
        spec: JobSpec,
        *,
        restarted_from: int | None = None,
        session: str | None = None,
        start: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> int:
        """Record a new job of ``spec`` (see :meth:`create`), started in the same write.

        ``start(job_id)`` runs inside the transaction when the job's group starts jobs at
        once (no limit, not paused) and returns the columns to set with it (a launched
        job's: RUNNING, its pid, its backend's reference); it must not use the store. A
        job it is not called for stays QUEUED. One transaction, one commit: the record is
        written once, and readers never see it half made. Returns the job's id.

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
                    " owner_pid, owner_start, detached, pty, timeout, backend, shell,"
                    " group_name, priority, after_ids, restarted_from, gpus, resources, session,"
                    " memory_limit, cpu_limit, pids_limit, best_effort, address, ship_cwd)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?)",
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
                        spec.group,
                        spec.priority,
                        json.dumps(list(spec.after)),
                        restarted_from,
                        spec.gpus,
                        json.dumps(dict(spec.resources), sort_keys=True),
                        session,
                        spec.memory,
                        spec.cpus,
                        spec.pids,
                        int(spec.best_effort),
                        spec.address,
                        int(spec.ship_cwd),
                    ),
                )
                job_id = cursor.lastrowid
                assert job_id is not None
                fields: dict[str, Any] = {"log_path": str(self.log_path(job_id))}
                if start is not None and _starts_at_once(db, spec.group):
                    fields.update(start(job_id))
                unknown = set(fields) - set(COLUMNS)
                if unknown:
                    raise ValueError(f"unknown job record fields: {sorted(unknown)}")
                db.execute(
                    f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in fields)}"
                    " WHERE id = ?",
                    (*(_column_value(value) for value in fields.values()), job_id),
                )
        except sqlite3.IntegrityError as exc:
            raise JobNameInUse(
                f"a running job is already named {spec.name!r}; choose another name "
                "or stop that job first"
            ) from exc
        return job_id

    def log_path(self, job_id: int) -> Path:
        """Where the log of job ``job_id`` lives: ``<home>/logs/<id>-<generation>.log``.

        (``<id>.log`` in a store made before generations.)
        """
        suffix = f"-{self.generation}" if self.generation else ""
        return self.logs_dir / f"{job_id}{suffix}.log"

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

    def get(self, job_id: int) -> JobRecord | None:
        """The record with ``job_id``, or None."""
        if not 0 < job_id <= MAX_ID:
            return None
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

    def request_stop(self, job_id: int, by: str, grace: float | None = None) -> None:
        """Record that someone (``"kernel"``, ``"ui"``, ``"timeout"``) asked the job to stop.

        ``grace``: seconds from now until what is left of the job is killed (None: not
        known, or no kill will follow). The first request's by and deadline stay.
        """
        self.request_stops([job_id], by, grace)

    def request_stops(self, job_ids: Iterable[int], by: str, grace: float | None = None) -> None:
        """Record, in one transaction, that ``by`` asked these jobs to stop (see above)."""
        deadline = None if grace is None else time.time() + grace
        with self._write() as db:
            db.executemany(
                "UPDATE jobs SET stop_requested_by = coalesce(stop_requested_by, ?),"
                " stop_deadline = coalesce(stop_deadline, ?) WHERE id = ?",
                [(by, deadline, job_id) for job_id in job_ids],
            )

    def adopt(self, record: JobRecord, session: str | None = None) -> bool:
        """Make the current process the owner of ``record``'s running job.

        Atomic: only if the job is still in ``record``'s state (queued or running) and
        still has the owner ``record`` names; of two processes adopting at once, exactly
        one gets True. The job then belongs to the notebook ``session`` (if known).
        """
        new_owner = this_process_owner()
        old_owner = (record.owner, record.owner_pid, record.owner_start)
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET owner = ?, owner_pid = ?, owner_start = ?,"
                " session = coalesce(?, session) WHERE id = ?"
                " AND state = ? AND owner IS ? AND owner_pid IS ? AND owner_start IS ?",
                (*new_owner, session, record.id, record.state.value, *old_owner),
            )
            return cursor.rowcount == 1

    def delete(self, job_id: int) -> JobRecord | None:
        """Remove a record and its log; return the record (None if there was none).

        Files a backend kept for the job are the caller's to remove (see ``backend_ref``).
        """
        record = self.get(job_id)
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            bump_queue_epoch(db)  # a job that waited for this one will never start
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path(job_id))
        return record

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the store."""
        with self._lock:
            self._check_same_file()
            value: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return value

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def _starts_at_once(db: sqlite3.Connection, group: str) -> bool:
    """True when group ``group`` has no limit and is not paused (``JobQueue.starts_at_once``)."""
    row = db.execute("SELECT parallel, paused FROM groups WHERE name = ?", (group,)).fetchone()
    return row is None or (int(row[0]) == 0 and not int(row[1]))


def _column_value(value: Any) -> Any:
    """A Python value as the column stores it (states by name, references as JSON)."""
    if isinstance(value, JobState):
        return value.value
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
