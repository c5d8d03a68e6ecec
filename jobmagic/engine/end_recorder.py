"""Writing jobs' ends to the store, off the watcher thread and many in one transaction.

The watcher thread sees every job end; if it wrote each end itself, a store that is slow
or locked by another process (SQLite waits up to its busy timeout) would hold up the
exits, timers and log following of every other job, and a thousand jobs stopped together
would cost a thousand transactions. So an end seen on the watcher thread is handed to a
writer thread, which writes all the ends waiting for it in one ``finish_many``, then hands
each job back to the watcher to go on (its waiters and listeners hear of the end only once
it is recorded, on the watcher thread as always). An end seen on any other thread (a launch
that failed, a queued job that will never run) is written at once, on that thread.

An end may wait for the store's word: a job that nobody here asked to stop may have been
stopped by another process (the Jobs sidebar), which the store says; the writer reads
that, for every such end of a batch in one query, before it settles and writes them. The
same thread runs the service's other store work that the watcher must not wait for
(``call``): pruning, queue passes after ends, what other processes' writes call for. So
the watcher thread itself never uses the store, and a store that blocks stalls no exit.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable

from jobmagic.errors import StoreError
from jobmagic.store.job_ends import End
from jobmagic.store.job_store import JobStore

from .watcher import Watcher

_log = logging.getLogger("jobmagic")

#: Settles a job's end: given who asked it to stop as the store says (None: nobody, or
#: the store was not asked), its ``End``.
Settle = Callable[[str | None], End]
#: What a job does once its end is written: called with the end and why it could not be
#: written (or None).
Then = Callable[[End, str | None], None]


class EndRecorder:
    """Records ends (and runs store work) for one service's store and watcher. Thread-safe.

    Parameters
    ----------
    store, watcher:
        The service's.
    after:
        Runs on the writer thread after each batch of ends is written, before its jobs
        go on, with their ids (the service runs its queue there: a freed slot's next job
        starts before the watcher thread contends for the interpreter); None: nothing.
    tidy:
        Runs on the writer thread once the batch's jobs were handed back to go on, with
        their ids (the service prunes there: whoever waits for an end never waits for the
        oldest jobs' files to be deleted); None: nothing.

    Its writer thread runs from the start (a service has this one and its watcher,
    however many jobs it runs); ``close`` writes what is left and ends it.
    """

    def __init__(
        self,
        store: JobStore,
        watcher: Watcher,
        after: Callable[[list[int]], None] | None = None,
        tidy: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._store = store
        self._watcher = watcher
        self._after = after
        self._tidy = tidy
        # Guards the fields below; `_wake` tells the writer there is work or it must end.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # An end: (settle, whether it asks the store who stopped it, then).
        self._round: dict[int, tuple[Settle, bool, Then]] = {}  # seen in this watcher round
        self._pending: dict[int, tuple[Settle, bool, Then]] = {}  # handed to the writer
        self._tasks: list[Callable[[], None]] = []
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="jobmagic-end-writer", daemon=True)
        self._writer.start()

    @property
    def thread(self) -> threading.Thread:
        """The writer thread."""
        return self._writer

    def record(self, job_id: int, end: End, then: Then) -> None:
        """Write ``end`` of job ``job_id``, then call ``then`` (see :meth:`settle`)."""
        self.settle(job_id, lambda _stopped_by: end, then, ask_store=False)

    def settle(self, job_id: int, settle: Settle, then: Then, *, ask_store: bool) -> None:
        """Write the end ``settle`` makes of job ``job_id``, then call ``then`` with it.

        ``ask_store``: ``settle`` gets who asked the job to stop as the store says (read
        in the same thread, just before the write); else None. ``then`` runs on the
        watcher thread when the end came from there (unless the watcher has closed
        meanwhile), else on this thread once the end is written.
        """
        entry = (settle, ask_store, then)
        if threading.current_thread() is not self._watcher.thread:
            self._write_now({job_id: entry})
            return
        with self._lock:
            if not self._closed:
                # Handed over at the end of the round, with the other ends it sees.
                hand_over = not self._round
                self._round[job_id] = entry
                if hand_over:
                    self._watcher.call_later(0, self._hand_over)
                return
        self._write_now({job_id: entry})  # closing: nobody else will write it

    def call(self, task: Callable[[], None]) -> bool:
        """Run ``task`` on the writer thread soon, after what was handed to it before.

        False (and it is not run) once closing: a task left at shutdown is dropped.
        """
        with self._lock:
            if self._closed:
                return False
            self._tasks.append(task)
            self._wake.notify()
            return True

    def _hand_over(self) -> None:
        with self._lock:
            self._pending.update(self._round)
            self._round = {}
            self._wake.notify()

    def close(self) -> None:
        """Write what is waiting, end the writer, and let those jobs go on (this thread)."""
        with self._lock:
            self._closed = True
            self._tasks.clear()
            self._wake.notify()
        if self._writer is not threading.current_thread():
            self._writer.join()
        with self._lock:
            pending, self._pending = self._pending, {}
            pending.update(self._round)  # the round that was never handed over too
            self._round = {}
        if pending:
            self._write_now(pending)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._tasks and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return  # close() writes what is left
                tasks, self._tasks = self._tasks, []
                pending, self._pending = self._pending, {}
            self._work(tasks, pending)
            # (Nothing of that work stays referenced here while the thread waits.)
            del tasks, pending

    def _work(
        self, tasks: list[Callable[[], None]], pending: dict[int, tuple[Settle, bool, Then]]
    ) -> None:
        for task in tasks:
            _run_task(task)
        if not pending:
            return
        ends, failure = self._write(pending)
        thens = [(pending[job_id][2], end) for job_id, end in ends]
        go_on = functools.partial(_go_on, thens, failure)
        # What follows the ends (the next jobs of a queue, retention) runs before the
        # watcher hears of them: the threads do not then contend for the interpreter.
        if self._after is not None:
            _run_task(functools.partial(self._after, list(pending)))
        if not self._watcher.call_soon(go_on):
            go_on()  # the watcher has closed: here, or never
        if self._tidy is not None:
            _run_task(functools.partial(self._tidy, list(pending)))

    def _write_now(self, entries: dict[int, tuple[Settle, bool, Then]]) -> None:
        ends, failure = self._write(entries)
        _go_on([(entries[i][2], end) for i, end in ends], failure)

    def _write(
        self, entries: dict[int, tuple[Settle, bool, Then]]
    ) -> tuple[list[tuple[int, End]], str | None]:
        """Settle ``entries`` (one read for those that ask the store) and write them."""
        asking = [job_id for job_id, (_, ask, _) in entries.items() if ask]
        stopped_by: dict[int, str | None] = {}
        if asking:
            try:
                stopped_by = _stop_requests(self._store, asking)
            except StoreError as exc:
                _log.warning("jobmagic could not read who stopped jobs %s: %s", asking, exc)
        ends = [(job_id, entry[0](stopped_by.get(job_id))) for job_id, entry in entries.items()]
        try:
            self._store.finish_many(dict(ends))
        except StoreError as exc:
            return ends, str(exc)
        return ends, None


def _stop_requests(store: JobStore, job_ids: Iterable[int]) -> dict[int, str | None]:
    """Who asked each job to stop, as the store says (None: nobody)."""
    rows = store.read(
        "SELECT id, stop_requested_by FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(job_ids)),),
    )
    return {int(job_id): by for job_id, by in rows}


def _run_task(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception:  # noqa: BLE001 - one failing task must not end the writer
        _log.exception("jobmagic store work failed")


def _go_on(thens: list[tuple[Then, End]], failure: str | None) -> None:
    for then, end in thens:
        then(end, failure)
