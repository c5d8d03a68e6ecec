"""Pauses as the store records them: a job's (RUNNING <-> PAUSED) and a group's.

Whoever pauses a job (its kernel, another kernel, the server, the command line) signals
it and records it here (``pause_and_record``; ``pause_attached`` for another process's
job); every move bumps the store's ``pause_epoch``, which tells the job's kernel that its
state changed under it (see ``WorkerService``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Protocol

from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, StoreError

from .job_ends import bump_queue_epoch
from .job_store import JobStore
from .records import JobRecord


class Pausable(Protocol):
    """What can be held still and let go on (a backend's ``Execution``)."""

    def pause(self) -> None:
        """Hold the whole job still."""
        ...

    def resume(self) -> None:
        """Let it go on."""
        ...


class Attached(Pausable, Protocol):
    """A handle on another process's running job (a backend's attached ``Execution``)."""

    def close(self) -> None:
        """Let go of the handle; the job runs on."""
        ...


def pause_attached(
    store: JobStore,
    record: JobRecord,
    attach: Callable[[JobRecord], Attached | None],
    paused: bool,
) -> bool:
    """Pause or resume another process's job ``record``; see :func:`pause_and_record`.

    ``attach`` finds the job's execution (the backends are not the store's to know).

    Raises
    ------
    JobmagicError
        When the job is queued or has ended, or its execution is gone.
    """
    check_pausable(record.id, record.state, record.group_name)
    execution = attach(record)
    if execution is None:
        raise JobmagicError(f"job {record.id} is no longer running")
    try:
        return pause_and_record(store, record.id, execution, paused)
    finally:
        execution.close()


def pause_and_record(store: JobStore, job_id: int, target: Pausable, paused: bool) -> bool:
    """Pause (or resume) ``target``, job ``job_id``'s execution, and record the move.

    Returns False when the store had the job in that state already (or ended).

    Raises
    ------
    StoreError
        When the move cannot be recorded; the signal is undone first (what the store
        says is what every view shows).
    """
    at = time.time()
    if paused:
        target.pause()
    else:
        target.resume()
    try:
        return record_pause(store, job_id, at) if paused else record_resume(store, job_id, at)
    except StoreError:
        if paused:
            target.resume()
        else:
            target.pause()
        raise


def check_pausable(job_id: int, state: JobState, group: str) -> None:
    """Refuse to pause or resume a queued or ended job, saying what to do instead.

    Raises
    ------
    JobmagicError
        For a job that is neither RUNNING nor PAUSED.
    """
    if state.is_finished:
        raise JobmagicError(f"job {job_id} has already ended ({state.value})")
    if not state.is_active:
        raise JobmagicError(
            f"job {job_id} has not started; to hold it back, pause its group: "
            f"%job pause --group {group}"
        )


def record_pause(store: JobStore, job_id: int, at: float) -> bool:
    """RUNNING -> PAUSED from ``at`` (epoch seconds); False when it was not running."""
    with store.write() as db:
        cursor = db.execute(
            "UPDATE jobs SET state = 'paused', paused_at = ? WHERE id = ? AND state = 'running'",
            (at, job_id),
        )
        if cursor.rowcount:
            _bump_pause_epoch(db)
        return cursor.rowcount == 1


def record_resume(store: JobStore, job_id: int, at: float) -> bool:
    """PAUSED -> RUNNING at ``at``; the pause's seconds join ``paused_for``.

    False when the job was not paused.
    """
    with store.write() as db:
        cursor = db.execute(
            "UPDATE jobs SET state = 'running', paused_at = NULL,"
            " paused_for = paused_for + max(0, ? - coalesce(paused_at, ?))"
            " WHERE id = ? AND state = 'paused'",
            (at, at, job_id),
        )
        if cursor.rowcount:
            _bump_pause_epoch(db)
        return cursor.rowcount == 1


def pause_epoch(store: JobStore) -> int:
    """Moves at every pause and resume of any job."""
    rows = store.read("SELECT value FROM store_info WHERE key = 'pause_epoch'")
    return int(rows[0][0]) if rows else 0


def set_group_paused(store: JobStore, name: str, paused: bool) -> None:
    """Mark group ``name`` paused (it admits nothing) or not; resuming runs the queue."""
    with store.write() as db:
        db.execute(
            "INSERT INTO groups (name, paused) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
            (name, int(paused)),
        )
        bump_queue_epoch(db)


def paused_groups(store: JobStore) -> set[str]:
    """The names of the groups that are paused."""
    return {name for (name,) in store.read("SELECT name FROM groups WHERE paused != 0")}


def _bump_pause_epoch(db: sqlite3.Connection) -> None:
    db.execute("UPDATE store_info SET value = CAST(value AS INTEGER) + 1 WHERE key = 'pause_epoch'")
