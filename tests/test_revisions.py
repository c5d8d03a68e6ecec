"""The store's revision (``jobmagic.store.revisions``): what changed since a revision.

Real stores in a private job home; the writes come from ``JobStore`` calls and, for
"whoever writes", from a plain ``sqlite3`` connection of another process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.store import revisions
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import COLUMNS

pytestmark = pytest.mark.timeout(60)

_ID, _REV = COLUMNS.index("id"), COLUMNS.index("rev")


@pytest.fixture
def store(jobmagic_home: Path) -> Iterator[JobStore]:
    opened = JobStore(jobmagic_home)
    yield opened
    opened.close()


def ids(changes: revisions.Changes) -> list[int]:
    return [row[_ID] for row in changes.rows]


def test_a_new_store_is_at_revision_0_and_has_no_changes(store: JobStore) -> None:
    assert revisions.current(store) == 0
    assert revisions.changes_since(store, 0) == revisions.Changes(0, [], [])
    assert revisions.state_counts(store) == {state.value: 0 for state in JobState}


def test_every_change_of_a_job_moves_the_revision_and_is_found_after_the_one_before(
    store: JobStore,
) -> None:
    first = store.create(JobSpec("echo one")).id
    second = store.create(JobSpec("echo two")).id
    at_creation = revisions.current(store)
    assert at_creation > 0
    assert ids(revisions.changes_since(store, 0)) == [first, second]

    store.update(first, state=JobState.RUNNING, pid=123)
    after_start = revisions.changes_since(store, at_creation)
    assert ids(after_start) == [first]
    assert after_start.revision > at_creation
    assert after_start.rows[0][_REV] == after_start.revision
    assert after_start.records[0].state is JobState.RUNNING

    store.finish(first, JobState.SUCCEEDED, 0, None)
    store.delete(second)
    since_start = revisions.changes_since(store, after_start.revision)
    assert ids(since_start) == [first]
    assert since_start.records[0].state is JobState.SUCCEEDED
    assert since_start.removed == [second]
    assert revisions.removed_since(store, after_start.revision) == [second]
    # At the revision it is at now, nothing has changed since.
    assert revisions.changes_since(store, since_start.revision) == revisions.Changes(
        since_start.revision, [], []
    )


def test_a_revision_newer_than_the_stores_or_out_of_range_finds_nothing(store: JobStore) -> None:
    job = store.create(JobSpec("true")).id
    now = revisions.current(store)
    assert revisions.changes_since(store, now + 5) == revisions.Changes(now, [], [])
    assert revisions.changes_since(store, 2**80).rows == []
    assert ids(revisions.changes_since(store, -3)) == [job]  # as from 0


def test_writes_of_any_process_move_the_revision(store: JobStore, jobmagic_home: Path) -> None:
    job = store.create(JobSpec("sleep 1")).id
    before = revisions.current(store)
    # Another process, with nothing of jobmagic: the store's triggers count its writes.
    script = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute(\"UPDATE jobs SET error = 'edited elsewhere' WHERE id = ?\",\n"
        "           (int(sys.argv[2]),))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(jobmagic_home / "jobs.sqlite"), str(job)],
        check=True,
        timeout=30,
    )
    changes = revisions.changes_since(store, before)
    assert changes.revision == before + 1
    assert [record.error for record in changes.records] == ["edited elsewhere"]


def test_touch_moves_the_revision_of_exactly_the_jobs_named(store: JobStore) -> None:
    jobs = [store.create(JobSpec(f"echo {n}")).id for n in range(3)]
    before = revisions.current(store)
    rows_before = {row[_ID]: row for row in revisions.changes_since(store, 0).rows}

    touched = revisions.touch(store, [jobs[0], jobs[2], jobs[2], 987654, 0, -1, 2**70])

    assert touched == 2
    changes = revisions.changes_since(store, before)
    assert ids(changes) == [jobs[0], jobs[2]]
    assert changes.revision == before + 2
    # Nothing but the revision changed in their rows.
    for row in changes.rows:
        old = rows_before[row[_ID]]
        assert row[:_REV] == old[:_REV]
        assert row[_REV] > old[_REV]
    assert revisions.touch(store, []) == 0
    assert revisions.current(store) == before + 2


def test_state_counts_count_every_state(store: JobStore) -> None:
    made = [store.create(JobSpec(f"echo {n}")).id for n in range(6)]
    store.update(made[0], state=JobState.RUNNING)
    store.update(made[1], state=JobState.PAUSED)
    store.finish(made[2], JobState.SUCCEEDED, 0, None)
    store.finish(made[3], JobState.FAILED, 3, "exit code 3")
    store.finish(made[4], JobState.FAILED, 1, "exit code 1")

    assert revisions.state_counts(store) == {
        "queued": 1,
        "running": 1,
        "paused": 1,
        "succeeded": 1,
        "failed": 2,
        "stopped": 0,
    }


def test_a_removed_jobs_tombstone_stays_and_names_the_removal(store: JobStore) -> None:
    kept = store.create(JobSpec("true")).id
    gone = store.create(JobSpec("false")).id
    store.finish(gone, JobState.FAILED, 1, None)
    before = revisions.current(store)
    store.prune(keep_finished=0, max_log_bytes=1 << 30)

    changes = revisions.changes_since(store, before)
    assert changes.removed == [gone]
    assert ids(changes) == []
    assert [job.id for job in store.list()] == [kept]
    # The tombstone does not come back for a client that already has the removal.
    assert revisions.changes_since(store, changes.revision).removed == []


def test_reading_the_revision_before_the_rows_never_loses_a_change(
    store: JobStore, jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write that lands between the read of the revision and the read of the rows is
    # in the rows (newer than promised), and again in the next changes: never lost.
    job = store.create(JobSpec("true")).id
    start = revisions.current(store)
    other = sqlite3.connect(jobmagic_home / "jobs.sqlite", isolation_level=None)
    try:
        real_current = revisions.current

        def current_then_write(opened: JobStore) -> int:
            value = real_current(opened)
            other.execute("UPDATE jobs SET error = 'late' WHERE id = ?", (job,))
            return value

        monkeypatch.setattr(revisions, "current", current_then_write)
        changes = revisions.changes_since(store, start)
        monkeypatch.undo()
    finally:
        other.close()
    assert changes.revision == start
    assert [record.error for record in changes.records] == ["late"]
    assert ids(revisions.changes_since(store, changes.revision)) == [job]
