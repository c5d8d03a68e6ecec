"""Workers for the jobs a kernel does not own: read from the store, stopped like any job.

And what a lookup that found no job says.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import threading
import time
from collections.abc import Callable

from jobmagic.backends.registry import Executors
from jobmagic.backends.stop_policy import Stops
from jobmagic.core.limits import Usage
from jobmagic.errors import StoreError, UnknownBackend
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import JobRecord

from .binding import JobBinding
from .foreign import ForeignJob
from .output_feed import OutputFeed
from .usage import UsageMeter
from .watcher import Watcher
from .worker import Worker

#: Seconds a stop that waits gives the owning kernel to record the end it saw.
RECORD_WAIT = 10.0


class ForeignJobs:
    """Another process's jobs, as one service sees them.

    Parameters
    ----------
    store, executors, watcher:
        The service's.
    logger:
        The service's logger (the parent of the views' loggers).
    default_grace:
        The service's ``stop_timeout``, read at each stop.
    reconcile:
        The service's reconcile (it finishes the records of jobs whose owner is gone).
    restart:
        The service's ``restart``, for the views' ``Worker.restart``.
    pause:
        The service's ``pause(job_id, paused)``, for ``Worker.pause`` and ``resume``.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        executors: Executors,
        watcher: Watcher,
        logger: logging.Logger,
        default_grace: Callable[[], float],
        reconcile: Callable[[], object],
        restart: Callable[[int], object],
        pause: Callable[[int, bool], None],
    ) -> None:
        self._store = store
        self._executors = executors
        self._watcher = watcher
        self._logger = logger
        self._reconcile = reconcile
        self._restart = restart
        self._pause = pause
        # The same stop policy as for the service's own jobs, on its watcher.
        self._stops = Stops(watcher, default_grace, self._record_stop, self._ended)

    def view(self, record: JobRecord) -> Worker:
        """A Worker for ``record``'s job, read from the store on each look."""
        worker = Worker.from_spec(record.spec())
        feed = OutputFeed(self._store.log_path(record.id), record.id, worker, self._watcher)
        feed.end_without_output()  # nothing here follows it; readers read to the end
        foreign = ForeignJob(record, self._reread, self._stop)
        binding = JobBinding(
            record.id,
            self._store.log_path(record.id),
            feed,
            self._logger,
            foreign=foreign,
            restart=self._restart,
            pause=self._pause,
            usage=UsageMeter(
                functools.partial(self._usage, foreign), lambda: foreign.record.started_at
            ),
        )
        worker.bind(binding)
        return worker

    def _usage(self, foreign: ForeignJob) -> Usage | None:
        record = foreign.record
        try:
            executor = self._executors.require(record.backend)
        except UnknownBackend:
            return None
        return executor.usage(record.backend_ref)

    def _reread(self, job_id: int) -> JobRecord | None:
        with contextlib.suppress(StoreError):
            self._reconcile()
        return self._store.get(job_id)

    def _stop(self, record: JobRecord, by: str, timeout: float | None, wait: bool) -> None:
        try:
            executor = self._executors.require(record.backend)
        except UnknownBackend:
            self._record_stop(record.id, by, None)  # a process that has its backend may act on it
            return
        ended = self._stops.stop(record.id, executor, record.backend_ref, by, timeout)
        # A listener on the watcher thread must not wait for what that thread delivers.
        if wait and threading.current_thread() is not self._watcher.thread:
            ended.wait()
            self._wait_recorded(record.id)

    def _wait_recorded(self, job_id: int) -> None:
        """Wait (a while) for the job's end to be in the store: its owner writes it."""
        changed = threading.Event()
        try:
            watch = self._watcher.watch_file(str(self._store.changed_path), changed.set)
        except OSError:
            return  # the store's files are gone: there is no record to wait for
        try:
            deadline = time.monotonic() + RECORD_WAIT
            while True:
                changed.clear()
                record = self._reread(job_id)
                remaining = deadline - time.monotonic()
                if record is None or record.state.is_finished or remaining <= 0:
                    return
                changed.wait(remaining)
        finally:
            self._watcher.unwatch_file(watch)

    def _record_stop(self, job_id: int, by: str, grace: float | None) -> None:
        with contextlib.suppress(StoreError):
            self._store.request_stop(job_id, by, grace)

    def _ended(self, _job_id: int) -> None:
        # Its owner records its end; when the owner is gone, nobody else will.
        with contextlib.suppress(StoreError):
            self._reconcile()


def not_found_message(store: JobStore, id_or_name: int | str) -> str:
    """Why ``id_or_name`` names no job, and what it may have meant.

    The names closest to a name, else the newest ids and names, each said as what it is.
    """
    records = store.list()
    message = f"no job {str(id_or_name)!r}"
    if not records:
        return message + "; no jobs yet"
    ids = [str(r.id) for r in records][-_SHOWN:]
    names = list(dict.fromkeys(r.name for r in reversed(records) if r.name))[:_SHOWN]
    if not str(id_or_name).isdigit():
        close = difflib.get_close_matches(str(id_or_name), names, n=_SHOWN, cutoff=0.5)
        if close:
            return message + f"; did you mean {' or '.join(close)}?"
    message += f"; ids: {', '.join(ids)}"
    return message + (f"; names: {', '.join(names)}" if names else "; no job has a name")


#: How many ids or names a not-found message lists.
_SHOWN = 5
