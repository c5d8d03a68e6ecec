"""Removing finished jobs (``WorkerService.remove``, ``remove_finished``) and pruning.

The service's side of ``retention.py``: its own Worker of a removed job goes, and its
listeners hear of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind
from jobmagic.core.files import file_size
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
    #: What the retention limits leave (finished jobs, log bytes) as of the last look at
    #: the store, less this service's ends since, and the limits (keep_finished,
    #: max_log_bytes) it was worked out for; None: not looked yet. Guarded by _lock.
    _retention_left: tuple[int, int, tuple[int, int]] | None = None

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

    def _prune_after(self, ended: Sequence[int]) -> None:
        """Prune after these jobs' ends, once they may have taken the store past a limit.

        The store is read when the ends of this service since its last look may exceed
        what the limits had left then (jobs, log bytes): a job's end costs no query while
        the store is far from its limits. Other processes' ends count at the next look.
        """
        spent = sum(file_size(self.store.log_path(job_id)) for job_id in ended)
        limits = (self.keep_finished, self.max_log_bytes)  # (the kernel's settings may change)
        with self._lock:
            left = self._retention_left
            if left is not None and left[2] == limits:
                left = self._retention_left = (left[0] - len(ended), left[1] - spent, limits)
            else:
                left = None
        if left is not None and left[0] >= 0 and left[1] >= 0:
            return
        self._prune(*limits)
        ((count, total),) = self.store.read(
            "SELECT count(*), coalesce(sum(log_size), 0) FROM jobs"
            " WHERE state IN ('succeeded', 'failed', 'stopped')"
        )
        with self._lock:
            self._retention_left = (limits[0] - count, limits[1] - total, limits)

    def _prune(self, keep_finished: int, max_log_bytes: int) -> None:
        removed = prune(self.store, self.executors, keep_finished, max_log_bytes)
        with self._lock:
            gone = [self._workers.pop(i) for i in removed if i in self._workers]
        for old in gone:
            self._emit("removed", old)
