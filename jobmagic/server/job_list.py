"""The answer of ``GET jobs``, made incrementally: an ended job's JSON is kept, not remade.

A list reads every row it answers with. Making each row a ``JobRecord`` and then JSON
costs about 20 us and a dozen objects per job, and the objects of a few hundred jobs,
alive together, are what fills Python's oldest garbage-collector generation: a server
listing 500 jobs twenty times a second ran a full collection every second or two, ~100 ms
each with JupyterLab loaded, every thread stopped. An ended job's JSON depends on its row
alone (it is never orphaned, has no queue reason, and its runtime has stopped), so the
text made from a row is kept and reused while the row is the same. Rows are tuples of
plain values: reading and comparing them is cheap, and the collector stops tracking them.

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

_ID = COLUMNS.index("id")
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
        # Guards _ended: job id -> (the ended job's row, its JSON text).
        self._lock = threading.Lock()
        self._ended: dict[int, tuple[tuple[Any, ...], str]] = {}

    def body(self, store: JobStore, states: Iterable[JobState] | None, version: int) -> str:
        """``json.dumps(job_list_json(records, version, reasons))`` of the jobs in ``states``.

        The plain envelope (the command line's): no ``store``, ``total`` or ``counts``.
        ``states`` None: every job.
        """
        wanted = None if states is None else tuple(states)
        where, params = _state_clause(wanted)
        rows = store.read(f"SELECT {SELECT_COLUMNS} FROM jobs{where} ORDER BY id", params)  # noqa: S608 - fixed columns, "?" placeholders
        texts = self._texts(store, rows, every_job=wanted is None)
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
        rows = store.read(
            f"SELECT {SELECT_COLUMNS} FROM jobs{where} ORDER BY id {order} LIMIT ? OFFSET ?",  # noqa: S608 - fixed columns, "?" placeholders
            (*params, -1 if query.limit is None else query.limit, query.offset),
        )
        every_job = (query.states, since, query.limit, query.offset) == (None, None, None, 0)
        texts = self._texts(store, rows, every_job=every_job, removed=removed or ())
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
        rows: list[tuple[Any, ...]],
        *,
        every_job: bool,
        removed: Iterable[int] = (),
    ) -> list[str]:
        """The JSON text of each row's job, in order; ``every_job``: the rows are all of them."""
        with self._lock:
            kept = self._ended
        texts: list[str] = []
        live: list[tuple[int, JobRecord]] = []  # (index in texts, record) of jobs not ended
        ended: dict[int, tuple[tuple[Any, ...], str]] = {}
        for row in rows:
            known = kept.get(row[_ID])
            if known is not None and known[0] == row:
                ended[row[_ID]] = known
                texts.append(known[1])
                continue
            record = JobRecord.from_row(row)
            if _final(record):
                text = json.dumps(job_json(record))
                ended[record.id] = (row, text)
                texts.append(text)
            else:
                live.append((len(texts), record))
                texts.append("")
        reasons = JobQueue(store).reasons([record for _, record in live])
        for index, record in live:
            texts[index] = json.dumps(job_json(record, reasons.get(record.id)))
        with self._lock:
            if every_job:
                self._ended = ended  # every job: forget the removed ones
            else:
                merged = {**self._ended, **ended}
                for job_id in removed:
                    merged.pop(job_id, None)
                self._ended = merged
        return texts


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
