"""The ends of jobs in the store (``JobStore``'s part): recorded, kept, pruned.

An end the disk refuses is kept and written by the next write that works; the oldest
finished jobs are pruned once they are too many or their logs too large.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from jobmagic.core.files import file_size
from jobmagic.core.limits import Usage
from jobmagic.core.state import JobState
from jobmagic.errors import StoreError

from .records import SELECT_COLUMNS, JobRecord

#: The most ids one statement names (SQLite's oldest limit on parameters is 999).
_SQL_BATCH = 500
#: One job's end as ``finish_many`` takes it: (state, exit code, error, ended_at, usage).
End = tuple[JobState, int | None, str | None, float, Usage | None]


class JobEnds:
    """The ends part of ``JobStore``. A mixin: it works on the store's connection."""

    # What the mixin uses of the store (set by JobStore.__init__).
    _lock: threading.Lock
    _db: sqlite3.Connection
    _unsaved: dict[int, End]

    if TYPE_CHECKING:

        def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
            """The store's ``_write``."""
            ...

        def log_path(self, job_id: int) -> Path:
            """The store's ``log_path``."""
            ...

    def finish(  # noqa: PLR0917 - a job's end is these five facts
        self,
        job_id: int,
        state: JobState,
        exit_code: int | None,
        error: str | None,
        ended_at: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        """Record a job's end, unless an earlier writer already did.

        ``usage``: what it used in all (its peak memory and CPU time are kept), if known.

        Raises
        ------
        StoreError
            When it cannot be written now; it is kept and written by the next write of
            this store that works, or by :meth:`retry_unsaved`.
        """
        self.finish_many({job_id: (state, exit_code, error, ended_at or time.time(), usage)})

    def finish_many(self, ends: Mapping[int, End]) -> None:
        """Record the ends of several jobs in one transaction (see :meth:`finish`).

        ``ends`` maps each job id to ``(state, exit_code, error, ended_at, usage)``.

        Raises
        ------
        StoreError
            When they cannot be written now; all are kept for a later write.
        """
        try:
            self._write_ends(ends)
        except StoreError:
            with self._lock:
                self._unsaved.update(ends)
            raise
        with self._lock:
            for job_id in ends:
                self._unsaved.pop(job_id, None)

    def _write_ends(self, ends: Mapping[int, End]) -> None:
        rows = []
        for job_id, (state, exit_code, error, ended_at, usage) in ends.items():
            peak = usage.peak_memory if usage is not None else None
            cpu = usage.cpu_seconds if usage is not None else None
            log_size = file_size(self.log_path(job_id))
            rows.append(
                (state.value, exit_code, error, ended_at, log_size, ended_at, peak, cpu, job_id)
            )
        with self._write() as db:
            cursor = db.executemany(
                # A pause under way ends with the job: its time joins paused_for.
                "UPDATE jobs SET state = ?, exit_code = ?, error = ?, ended_at = ?,"
                " log_size = ?, paused_for = paused_for + CASE WHEN paused_at IS NULL"
                " THEN 0 ELSE max(0, ? - paused_at) END, paused_at = NULL,"
                " peak_memory = ?, cpu_seconds = ?"
                " WHERE id = ? AND state IN ('queued', 'running', 'paused')",
                rows,
            )
            if cursor.rowcount:
                bump_queue_epoch(db)

    @property
    def unsaved(self) -> int:
        """How many jobs' ends wait to be written (see :meth:`finish`)."""
        with self._lock:
            return len(self._unsaved)

    def retry_unsaved(self) -> int:
        """Write the ends that could not be written before; return how many are left."""
        with self._lock:
            pending = dict(self._unsaved)
            self._unsaved.clear()
        left: dict[int, End] = {}
        for job_id, end in pending.items():
            try:
                self._write_ends({job_id: end})
            except StoreError:
                left[job_id] = end
        with self._lock:
            for job_id, end in left.items():
                self._unsaved.setdefault(job_id, end)
            return len(self._unsaved)

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
        # One transaction (two kernels pruning at once remove each job once), and only the
        # oldest jobs are read: a store just past its limit costs a row or two, not a
        # decoded record per finished job.
        with self._write() as db:
            count, total = db.execute(
                f"SELECT count(*), coalesce(sum(log_size), 0) FROM jobs WHERE {finished}"
            ).fetchone()
            doomed: builtins.list[int] = []
            oldest = db.execute(f"SELECT id, log_size FROM jobs WHERE {finished} ORDER BY id")
            for job_id, log_size in oldest:
                if count <= keep_finished and total <= max_log_bytes:
                    break
                doomed.append(job_id)
                count -= 1
                total -= log_size or 0
            oldest.close()
            removed: builtins.list[JobRecord] = []
            for start in range(0, len(doomed), _SQL_BATCH):
                batch = doomed[start : start + _SQL_BATCH]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT {SELECT_COLUMNS} FROM jobs WHERE id IN ({marks}) ORDER BY id", batch
                ).fetchall()
                removed.extend(JobRecord.from_row(row) for row in rows)
                db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", batch)
            if removed:
                bump_queue_epoch(db)  # a job that waited for one of these will never start
        for record in removed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_path(record.id))
        return removed


def bump_queue_epoch(db: sqlite3.Connection) -> None:
    """Note a change that may let a queued job start (an end, a removal, a new limit).

    Queue passes run only when this moved: a new queued job or an admission frees
    nothing for anyone else, and a pass over a long queue is not free.
    """
    db.execute("UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'queue_epoch'")
