"""What follows jobs' ends in a ``WorkerService``: the queue, retries, pruning.

A mixin of the service (its own module to keep ``service.py`` readable in a sitting).
The end writer calls ``_after_ends`` once a batch of ends is written, before the jobs go
on (their waiters wake), and ``_tidy_after_ends`` after; an end written on any other
thread calls ``_after_end``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobmagic.errors import StoreError
from jobmagic.store.job_store import JobStore

from .end_recorder import EndRecorder
from .scheduler import Scheduler
from .watcher import Timer, Watcher

_log = logging.getLogger("jobmagic")

#: The longest wait between retries of job ends that could not be recorded (disk full).
MAX_RETRY_DELAY = 60.0


class AfterEnds:
    """The part of ``WorkerService`` that follows ends. A mixin: it works on its fields."""

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    watcher: Watcher
    scheduler: Scheduler
    _ends: EndRecorder
    _lock: threading.RLock
    _closed: bool
    _retry_delay: float
    _retry_timer: Timer | None

    if TYPE_CHECKING:

        @property
        def closed(self) -> bool:
            """The service's ``closed``."""
            ...

        def _prune_after(self, ended: Sequence[int]) -> None:
            """The service's (``Removal``'s) ``_prune_after``."""
            ...

    def _after_end(self, job_id: int) -> None:
        """Job ``job_id`` has ended: run the queue, retry what was not recorded, prune.

        An end the writer thread wrote had that done there, after its batch.
        """
        if threading.current_thread() in (self.watcher.thread, self._ends.thread):
            return
        self._after_ends([job_id])
        self._tidy_after_ends([job_id])

    def _after_ends(self, job_ids: Sequence[int]) -> None:
        """These jobs' ends were recorded (the writer thread, or the thread that did it).

        Their jobs go on (their waiters wake) after this, and are tidied after that
        (``_tidy_after_ends``). Nothing once the service shuts down: no job starts any
        more, and a shutdown that stops ten thousand queued jobs must not run a queue
        pass (or a prune) for each.
        """
        self.scheduler.withdraw(job_ids)  # those that ended queued: stopped, removed
        if self.closed:
            return
        if self.scheduler.queued:
            # Their slots go on at once (other kernels hear of it through the store).
            try:
                self.scheduler.run()
            except StoreError as exc:
                _log.warning("jobmagic could not run the job queue: %s", exc)
        if self.store.unsaved:
            self._retry_later()

    def _tidy_after_ends(self, job_ids: Sequence[int]) -> None:
        """What follows these ends once their jobs went on (the writer thread): pruning."""
        if self.closed or self.store.unsaved:
            return
        # The store-change watch skips this process's own writes (see _on_store_change):
        # what these ends freed may let a job start that is not this kernel's (an
        # ownerless queued one).
        self.scheduler.store_changed()
        try:
            self._prune_after(job_ids)
        except StoreError as exc:
            _log.warning("jobmagic could not prune old jobs: %s", exc)

    def _retry_later(self) -> None:
        """Retry writing unrecorded job ends on a timer, backing off up to a minute."""
        with self._lock:
            if self._retry_timer is not None or self._closed:
                return
            delay = self._retry_delay
            self._retry_delay = min(MAX_RETRY_DELAY, delay * 2)
            self._retry_timer = self.watcher.call_later(delay, self._retry_on_writer)

    def _retry_on_writer(self) -> None:
        """The retry's time has come (watcher thread): the writer's thread retries."""
        self._ends.call(self._retry_unsaved)

    def _retry_unsaved(self) -> None:
        with self._lock:
            self._retry_timer = None
        if self.store.retry_unsaved():
            self._retry_later()
            return
        with self._lock:
            self._retry_delay = 1.0
        _log.info("jobmagic recorded the job ends it could not write before")
