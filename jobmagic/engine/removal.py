"""Removing finished jobs (``WorkerService.remove``, ``remove_finished``) and pruning.

The service's side of ``retention.py``: its own Worker of a removed job goes, and its
listeners hear of it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, StoreError
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import this_process_owner

from .retention import delete_job, prune
from .worker import Worker

_FINISHED = [state for state in JobState if state.is_finished]


class Removal:
    """The removing part of ``WorkerService``. A mixin: it works on the service's jobs."""

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    executors: Executors
    keep_finished: int
    max_log_bytes: int
    _lock: threading.RLock
    _workers: dict[int, Worker]

    if TYPE_CHECKING:

        def get(self, id_or_name: int | str) -> Worker:
            """The service's ``get``."""
            ...

        def reconcile(self) -> list[int]:
            """The service's ``reconcile``."""
            ...

        def _emit(self, kind: EventKind, worker: Worker) -> None:
            """The service's: tell its listeners."""
            ...

    def remove(self, id_or_name: int | str) -> None:
        """Delete a finished job's record and log.

        Raises
        ------
        JobmagicError
            When the job is still queued or running.
        """
        worker = self.get(id_or_name)
        if not worker.state.is_finished:
            raise JobmagicError(f"job {worker.id} is {worker.state.value}; stop it first")
        self._forget(worker)

    def remove_finished(self, *, own: bool = False) -> int:
        """Delete finished jobs' records and logs; return how many.

        ``own``: only this process's (the jobs it started or adopted); else every kernel's.
        """
        with contextlib.suppress(StoreError):
            self.reconcile()  # an orphan that ended unseen is finished too
        me = this_process_owner()[0]
        finished = [r for r in self.store.list(states=_FINISHED) if not own or r.owner == me]
        for record in finished:
            self._forget(self.get(record.id))
        return len(finished)

    def _forget(self, worker: Worker) -> None:
        """Delete a finished job's record and files and tell listeners."""
        assert worker.id is not None
        delete_job(self.store, self.executors, worker.id)
        with self._lock:
            self._workers.pop(worker.id, None)
        self._emit("removed", worker)

    def _prune(self) -> None:
        removed = prune(self.store, self.executors, self.keep_finished, self.max_log_bytes)
        with self._lock:
            gone = [self._workers.pop(i) for i in removed if i in self._workers]
        for old in gone:
            self._emit("removed", old)
