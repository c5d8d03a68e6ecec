"""Writing jobs' ends to the store, off the watcher thread and many in one transaction.

The watcher thread sees every job end; if it wrote each end itself, a store that is slow
or locked by another process (SQLite waits up to its busy timeout) would hold up the
exits, timers and log following of every other job, and a thousand jobs stopped together
would cost a thousand transactions. So an end seen on the watcher thread is handed to a
writer thread, which writes all the ends waiting for it in one ``finish_many``, then hands
each job back to the watcher to go on (its waiters and listeners hear of the end only once
it is recorded, on the watcher thread as always). An end seen on any other thread (a launch
that failed, a queued job that will never run) is written at once, on that thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from jobmagic.errors import StoreError
from jobmagic.store.job_store import End, JobStore

from .watcher import Watcher

#: What a job does once its end is written: called with why it could not be (or None).
Then = Callable[[str | None], None]


class EndRecorder:
    """Records ends for one service's store and watcher. Thread-safe.

    Its writer thread runs from the start (a service has this one and its watcher,
    however many jobs it runs); ``close`` writes what is left and ends it.
    """

    def __init__(self, store: JobStore, watcher: Watcher) -> None:
        self._store = store
        self._watcher = watcher
        # Guards the fields below; `_wake` tells the writer there is work or it must end.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._round: dict[int, tuple[End, Then]] = {}  # seen in this round of the watcher
        self._pending: dict[int, tuple[End, Then]] = {}  # handed to the writer
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="jobmagic-end-writer", daemon=True)
        self._writer.start()

    def record(self, job_id: int, end: End, then: Then) -> None:
        """Write ``end`` of job ``job_id``, then call ``then``.

        ``then`` runs on the watcher thread when the end came from there (unless the
        watcher has closed meanwhile), else on this thread once the end is written.
        """
        if threading.current_thread() is not self._watcher.thread:
            then(self._write({job_id: end}))
            return
        with self._lock:
            if not self._closed:
                # Handed over at the end of the round, with the other ends it sees.
                hand_over = not self._round
                self._round[job_id] = (end, then)
                if hand_over:
                    self._watcher.call_later(0, self._hand_over)
                return
        then(self._write({job_id: end}))  # closing: nobody else will write it

    def _hand_over(self) -> None:
        with self._lock:
            self._pending.update(self._round)
            self._round = {}
            self._wake.notify()

    def close(self) -> None:
        """Write what is waiting, end the writer, and let those jobs go on (this thread)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._writer is not threading.current_thread():
            self._writer.join()
        self._write_pending(on_watcher=False)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return  # close() writes what is left
            self._write_pending(on_watcher=True)

    def _write_pending(self, on_watcher: bool) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            if not on_watcher:  # closing: the round that was never handed over too
                pending.update(self._round)
                self._round = {}
        if not pending:
            return
        failure = self._write({job_id: end for job_id, (end, _) in pending.items()})
        thens = [then for _, then in pending.values()]
        go_on = functools.partial(_go_on, thens, failure)
        if not (on_watcher and self._watcher.call_soon(go_on)):
            go_on()  # the watcher has closed: here, or never

    def _write(self, ends: dict[int, End]) -> str | None:
        try:
            self._store.finish_many(ends)
        except StoreError as exc:
            return str(exc)
        return None


def _go_on(thens: list[Then], failure: str | None) -> None:
    for then in thens:
        then(failure)
