"""Writing jobs' ends to the store: one transaction for all the ends the watcher sees at once.

A thousand jobs stopped together end within a few dispatch rounds of the watcher thread;
a transaction each would keep that thread (which sees every job end) in SQLite for most
of a second. On the watcher thread an end is queued and written, with the other ends of
the same round, by one ``finish_many`` at the end of that round; then each job goes on
(its waiters hear of the end only once it is recorded). From any other thread an end is
written at once. ``flush`` writes what is queued, for a service that shuts down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobmagic.errors import StoreError
from jobmagic.store.job_store import End, JobStore

from .watcher import Watcher

#: What a job does once its end is written: called with why it could not be (or None).
Then = Callable[[str | None], None]


class EndRecorder:
    """Records ends for one service's store and watcher. Thread-safe."""

    def __init__(self, store: JobStore, watcher: Watcher) -> None:
        self._store = store
        self._watcher = watcher
        # Guards _pending and _scheduled (ends come from the watcher thread, flush() from
        # whichever thread shuts the service down).
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[End, Then]] = {}
        self._scheduled = False

    def record(self, job_id: int, end: End, then: Then) -> None:
        """Write ``end`` of job ``job_id`` (now, or at the end of this round), then ``then``."""
        if threading.current_thread() is not self._watcher.thread:
            then(self._write({job_id: end}))
            return
        with self._lock:
            self._pending[job_id] = (end, then)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            self._watcher.call_later(0, self.flush)

    def flush(self) -> None:
        """Write every queued end in one transaction, then let each job go on."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._scheduled = False
        if not pending:
            return
        failure = self._write({job_id: end for job_id, (end, _) in pending.items()})
        for _, then in pending.values():
            then(failure)

    def _write(self, ends: dict[int, End]) -> str | None:
        try:
            self._store.finish_many(ends)
        except StoreError as exc:
            return str(exc)
        return None
