"""The store's revision: a count that every change of a job moves, and what changed since.

SQLite triggers (schema 9, ``records.MIGRATIONS``) keep it, whoever writes: each insert,
update or delete of a job adds one to ``store_info.rev``; the job's row keeps the
revision of its last change (``jobs.rev``) and a removed job leaves a tombstone
(``removed_jobs``). A client that holds revision R asks for the rows and tombstones
newer than R, and gets every change since, however many processes wrote meanwhile.

Writers take turns (``BEGIN IMMEDIATE``), so revisions are committed in order: a reader
that sees revision R sees every change up to R. Read the revision *before* the rows it
vouches for: rows read later are at least as new, never older.

A job's JSON has parts no column holds (whether it is orphaned, a queued job's place in
its group); when one of those changes, ``touch`` gives the job a new revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from jobmagic.core.state import JobState

from .job_store import MAX_ID, JobStore
from .records import SELECT_COLUMNS, JobRecord


def current(store: JobStore) -> int:
    """The store's revision now: the number of job changes it has seen (0 for none)."""
    [(value,)] = store.read("SELECT CAST(value AS INTEGER) FROM store_info WHERE key = 'rev'")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Changes:
    """What changed in a store after a revision.

    Attributes
    ----------
    revision : int
        The store's revision when it was read: every change up to it is here (rows
        may be newer still).
    rows : list[tuple]
        The rows (``SELECT_COLUMNS``) of the jobs changed or created since, by id.
    removed : list[int]
        The ids of the jobs removed since, ascending.
    """

    revision: int
    rows: list[tuple[Any, ...]]
    removed: list[int]

    @property
    def records(self) -> list[JobRecord]:
        """The changed jobs' records, by id."""
        return [JobRecord.from_row(row) for row in self.rows]


def changes_since(store: JobStore, revision: int) -> Changes:
    """The jobs changed, created or removed after ``revision`` (>= 0).

    A revision newer than the store's (another store's, or an older copy of this one's
    file) finds nothing: the caller compares it with ``Changes.revision`` first.
    """
    since = min(max(revision, 0), MAX_ID)
    now = current(store)  # first: whatever is read below is at least this new
    rows = store.read(
        f"SELECT {SELECT_COLUMNS} FROM jobs WHERE rev > ? ORDER BY id",  # noqa: S608 - fixed columns
        (since,),
    )
    removed = [job_id for (job_id,) in store.read(_REMOVED_SINCE, (since,))]
    return Changes(now, rows, removed)


def removed_since(store: JobStore, revision: int) -> list[int]:
    """The ids of the jobs removed after ``revision``, ascending."""
    return [job_id for (job_id,) in store.read(_REMOVED_SINCE, (min(max(revision, 0), MAX_ID),))]


_REMOVED_SINCE = "SELECT id FROM removed_jobs WHERE rev > ? ORDER BY id"


def touch(store: JobStore, job_ids: Iterable[int]) -> int:
    """Give these jobs a new revision though none of their columns changed.

    For a change of a job's JSON that no column shows (its kernel died: it is orphaned
    now). Ids the store does not have are skipped. Returns how many jobs were touched.
    """
    wanted = sorted({job_id for job_id in job_ids if 0 < job_id <= MAX_ID})
    if not wanted:
        return 0
    with store.write() as db:
        # An UPDATE that leaves rev as it is fires jobs_rev_update, which moves it.
        cursor = db.executemany("UPDATE jobs SET rev = rev WHERE id = ?", [(i,) for i in wanted])
        return cursor.rowcount


def state_counts(store: JobStore) -> dict[str, int]:
    """How many jobs the store has in each state, every ``JobState`` named (0 for none)."""
    counts = dict.fromkeys((state.value for state in JobState), 0)
    # One pass over the jobs_state index.
    counts.update(store.read("SELECT state, count(*) FROM jobs GROUP BY state"))
    return counts
