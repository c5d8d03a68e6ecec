"""The answer of ``GET jobs``, made incrementally: an ended job's JSON is kept, not remade.

A list reads every row it answers with. Making each row a ``JobRecord`` and then JSON
costs about 20 us and a dozen objects per job, and the objects of a few hundred jobs,
alive together, are what fills Python's oldest garbage-collector generation: a server
listing 500 jobs twenty times a second ran a full collection every second or two, ~100 ms
each with JupyterLab loaded, every thread stopped. An ended job's JSON depends on its row
alone (it is never orphaned, has no queue reason, and its runtime has stopped), so the
text made from a row is kept and reused while the row's revision (``rev``, moved by every
change of the row) is the same. A list reads the ids and revisions first, and whole rows
only of the jobs it has no text of: a tenth of the cost of reading every row.

Most answers need few rows, though: a page loads the unfinished jobs and the newest
finished ones (``limit``, ``order``), then asks only for what changed since the revision
it holds (``since``, see ``jobmagic.store.revisions``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable
from typing import Any

from jobmagic.core.state import JobState
from jobmagic.store import revisions
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import COLUMNS, SELECT_COLUMNS, JobRecord
from jobmagic.store.wire import job_json, job_list_json

_ID, _REV = COLUMNS.index("id"), COLUMNS.index("rev")
#: The most ids one statement names (SQLite's oldest limit on parameters is 999).
_BATCH = 500
#: Where the jobs go in the envelope ``job_list_json`` makes (the jobs come last).
_NO_JOBS = '"jobs": []'


@dataclasses.dataclass(frozen=True)
class JobListQuery:
    """What one ``GET jobs`` asks for (see ``JobListHandler``).

    Attributes
    ----------
    states : tuple of JobState, or None
        Only jobs in these states; None: every job.
    since : int or None
        Only the jobs changed after this revision, and the ids removed since; None: the
        jobs as they are.
    store : str or None
        The generation of the store ``since`` came from; another store's revision is
        answered with the whole list (``full``). None: the client does not say.
    limit : int or None
        At most this many jobs (None: no limit), after skipping ``offset``.
    offset : int
        Jobs to skip first, in the answer's order.
    newest_first : bool
        Order by descending id (``?order=newest``); else ascending.
    """

    states: tuple[JobState, ...] | None = None
    since: int | None = None
    store: str | None = None
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False


class JobListBodies:
    """Makes the JSON text of ``GET jobs``, reusing the text of ended jobs.

    Call its methods on the store thread: they read the store.
    """

    def __init__(self) -> None:
        # Guards _ended: job id -> (the ended job's revision, its JSON text), of the store
        # of generation _generation.
        self._lock = threading.Lock()
        self._ended: dict[int, tuple[int, str]] = {}
        self._generation: str | None = None

    def body(self, store: JobStore, states: Iterable[JobState] | None, version: int) -> str:
        """``json.dumps(job_list_json(records, version, reasons))`` of the jobs in ``states``.

        The plain envelope (the command line's): no ``store``, ``total`` or ``counts``.
        ``states`` None: every job.
        """
        wanted = None if states is None else tuple(states)
        where, params = _state_clause(wanted)
        listed = store.read(f"SELECT id, rev FROM jobs{where} ORDER BY id", params)  # noqa: S608 - "?" placeholders
        texts = self._texts(store, listed, every_job=wanted is None)
        return _with_jobs(job_list_json([], version), texts)

    def answer(self, store: JobStore, query: JobListQuery) -> str:
        """The server's answer of ``GET jobs`` for ``query``, at the store's revision now."""
        version = revisions.current(store)  # first: the rows read after are at least as new
        since = query.since
        incremental = (
            since is not None
            and since <= version
            and (query.store is None or query.store == store.generation)
        )
        where, states = _state_clause(query.states)
        [(total,)] = store.read(f"SELECT count(*) FROM jobs{where}", states)  # noqa: S608 - "?" placeholders
        params: tuple[str | int, ...] = states
        removed = None
        if incremental and since is not None:
            where += " AND rev > ?" if where else " WHERE rev > ?"
            params = (*states, since)
            removed = revisions.removed_since(store, since)
        order = "DESC" if query.newest_first else ""
        listed = store.read(
            f"SELECT id, rev FROM jobs{where} ORDER BY id {order} LIMIT ? OFFSET ?",  # noqa: S608 - "?" placeholders
            (*params, -1 if query.limit is None else query.limit, query.offset),
        )
        every_job = (query.states, since, query.limit, query.offset) == (None, None, None, 0)
        texts = self._texts(store, listed, every_job=every_job, removed=removed or ())
        envelope = job_list_json(
            [],
            version,
            store=store.generation,
            since=since if incremental else None,
            full=since is not None and not incremental,
            total=total,
            counts=revisions.state_counts(store),
            removed=removed,
        )
        return _with_jobs(envelope, texts)

    def _texts(
        self,
        store: JobStore,
        listed: list[tuple[Any, ...]],
        *,
        every_job: bool,
        removed: Iterable[int] = (),
    ) -> list[str]:
        """The JSON text of each listed job (id, revision), in order.

        ``every_job``: the list is all of them. A job removed after the list was read is
        left out (its removal has a later revision than the answer's).
        """
        generation = store.generation
        with self._lock:
            kept = self._ended if self._generation == generation else {}
        texts: list[str | None] = []
        wanted: list[tuple[int, int]] = []  # (index in texts, id) of jobs to read whole
        ended: dict[int, tuple[int, str]] = {}
        for job_id, rev in listed:
            known = kept.get(job_id)
            if known is not None and known[0] == rev:
                ended[job_id] = known
                texts.append(known[1])
            else:
                wanted.append((len(texts), job_id))
                texts.append(None)
        rows = _rows(store, [job_id for _, job_id in wanted])
        live: list[tuple[int, JobRecord]] = []  # (index in texts, record) of jobs not ended
        for index, job_id in wanted:
            row = rows.get(job_id)
            if row is None:
                continue
            record = JobRecord.from_row(row)
            if _final(record):
                text = json.dumps(job_json(record))
                ended[job_id] = (row[_REV], text)
                texts[index] = text
            else:
                live.append((index, record))
        reasons = JobQueue(store).reasons([record for _, record in live])
        for index, record in live:
            texts[index] = json.dumps(job_json(record, reasons.get(record.id)))
        with self._lock:
            if every_job or self._generation != generation:
                self._ended = ended  # every job: forget the removed ones
            else:
                merged = {**self._ended, **ended}
                for job_id in removed:
                    merged.pop(job_id, None)
                self._ended = merged
            self._generation = generation
        return [text for text in texts if text is not None]


def _rows(store: JobStore, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """The rows of the jobs ``ids`` that are still there, by id."""
    rows: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        marks = ", ".join("?" * len(batch))
        for row in store.read(f"SELECT {SELECT_COLUMNS} FROM jobs WHERE id IN ({marks})", batch):  # noqa: S608 - fixed columns, "?" placeholders
            rows[row[_ID]] = row
    return rows


def _state_clause(states: tuple[JobState, ...] | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (with its leading space) and parameters of a state filter."""
    if states is None:
        return "", ()
    return f" WHERE state IN ({', '.join('?' * len(states))})", tuple(s.value for s in states)


def _with_jobs(envelope: dict[str, Any], texts: list[str]) -> str:
    """The envelope's JSON text with ``texts`` as its jobs."""
    head, marker, tail = json.dumps(envelope).partition(_NO_JOBS)
    assert marker, "job_list_json's envelope changed: update _NO_JOBS"
    return f'{head}"jobs": [{", ".join(texts)}]{tail}'


def _final(record: JobRecord) -> bool:
    """Whether the record's JSON is final: it has ended, and its runtime with it."""
    # (An end with no time, which jobmagic never writes, would count its runtime to now.)
    return record.state.is_finished and (record.started_at is None or record.ended_at is not None)
