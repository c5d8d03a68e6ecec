"""The answer of ``GET jobs``, made incrementally: an ended job's JSON is kept, not remade.

A list reads every row of the store. Making each row a ``JobRecord`` and then JSON costs
about 20 us and a dozen objects per job, and the objects of a few hundred jobs, alive
together, are what fills Python's oldest garbage-collector generation: a server listing
500 jobs twenty times a second ran a full collection every second or two, ~100 ms each
with JupyterLab loaded, every thread stopped. An ended job's JSON depends on its row
alone (it is never orphaned, has no queue reason, and its runtime has stopped), so the
text made from a row is kept and reused while the row is the same. Rows are tuples of
plain values: reading and comparing them is cheap, and the collector stops tracking them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from jobmagic.core.state import JobState
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import COLUMNS, SELECT_COLUMNS, JobRecord
from jobmagic.store.wire import job_json, job_list_json

_ID = COLUMNS.index("id")
#: Where the jobs go in the envelope ``job_list_json`` makes.
_NO_JOBS = '"jobs": []'


class JobListBodies:
    """Makes the JSON text of ``GET jobs``, reusing the text of ended jobs.

    The text is byte for byte ``json.dumps(job_list_json(records, version, reasons))`` of
    ``store.list(states)`` and ``JobQueue(store).reasons(records)``. Call it on the store
    thread: it reads the store.
    """

    def __init__(self) -> None:
        # Guards _ended: job id -> (the ended job's row, its JSON text).
        self._lock = threading.Lock()
        self._ended: dict[int, tuple[tuple[Any, ...], str]] = {}

    def body(self, store: JobStore, states: Iterable[JobState] | None, version: int) -> str:
        """The answer of ``GET jobs`` for jobs in ``states`` (None: every job), at ``version``."""
        # store.list()'s query: the rows, not records, are what is compared.
        sql = f"SELECT {SELECT_COLUMNS} FROM jobs"  # noqa: S608 - fixed columns, "?" placeholders
        wanted = None if states is None else [state.value for state in states]
        if wanted is not None:
            sql += f" WHERE state IN ({', '.join('?' * len(wanted))})"
        rows = store.read(sql + " ORDER BY id", wanted or ())
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
            if wanted is None:
                self._ended = ended  # every job: forget the removed ones
            else:
                self._ended = {**self._ended, **ended}
        head, marker, tail = json.dumps(job_list_json([], version)).partition(_NO_JOBS)
        assert marker, "job_list_json's envelope changed: update _NO_JOBS"
        return f'{head}"jobs": [{", ".join(texts)}]{tail}'


def _final(record: JobRecord) -> bool:
    """Whether the record's JSON is final: it has ended, and its runtime with it."""
    # (An end with no time, which jobmagic never writes, would count its runtime to now.)
    return record.state.is_finished and (record.started_at is None or record.ended_at is not None)
