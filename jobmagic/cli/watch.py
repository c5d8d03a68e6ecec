"""Waiting, from the command line, for jobs that some other process owns.

The command line owns no job: a kernel, or nobody (an orphan), records each job's end.
``JobWatch`` wakes whenever that may have happened: a commit to the store (its change
file is touched), the end of a job's execution (through its backend, on the service's
watcher thread; an orphan's end is then reconciled here), or a write to a followed log.
It never polls.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from jobmagic.backends.base import Execution
from jobmagic.engine.service import WorkerService
from jobmagic.engine.watcher import FileWatch
from jobmagic.errors import StoreError, UnknownBackend
from jobmagic.store.records import JobRecord

_CHUNK = 1 << 16


class JobWatch:
    """Wakes a waiter when any of ``job_ids`` may have changed (or ``logs`` grew).

    Use as a context manager; ``records()`` reads the jobs' current records and
    ``wait(timeout)`` blocks until the next change.
    """

    def __init__(
        self, service: WorkerService, job_ids: Iterable[int], logs: Iterable[Path] = ()
    ) -> None:
        self._service = service
        self._ids = list(job_ids)
        self._changed = threading.Event()
        self._lock = threading.Lock()  # guards _executions
        self._executions: list[Execution] = []
        watcher = service.watcher
        self._files: list[FileWatch] = [
            watcher.watch_file(str(service.store.changed_path), self._changed.set)
        ]
        for path in logs:
            with contextlib.suppress(OSError):  # a log that is gone has nothing to follow
                self._files.append(watcher.watch_file(str(path), self._changed.set))
        for record in self._read():
            if not record.state.is_finished:
                self._watch_execution(record)

    def _watch_execution(self, record: JobRecord) -> None:
        try:
            executor = self._service.executors.require(record.backend)
        except UnknownBackend:
            return  # its owner's store changes still wake us
        execution = executor.attach(record.backend_ref)
        if execution is None:
            return
        with self._lock:
            self._executions.append(execution)
        execution.on_exit(self._service.watcher, self._changed.set)

    def _read(self) -> list[JobRecord]:
        records = []
        for job_id in self._ids:
            record = self._service.store.get(job_id)
            if record is not None:
                records.append(record)
        return records

    def records(self) -> dict[int, JobRecord | None]:
        """The jobs' records now (None: deleted); orphans that ended are finished first."""
        self._changed.clear()  # before reading: a change from now on wakes the next wait
        with contextlib.suppress(StoreError):
            self._service.reconcile()
        return {job_id: self._service.store.get(job_id) for job_id in self._ids}

    def wait(self, timeout: float | None) -> bool:
        """Block until something may have changed; False when ``timeout`` passed first."""
        return self._changed.wait(timeout)

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for watch in self._files:
            self._service.watcher.unwatch_file(watch)
        with self._lock:
            executions, self._executions = self._executions, []
        for execution in executions:
            execution.close()


def follow_log(
    service: WorkerService, record: JobRecord, out: BinaryIO, offset: int = 0
) -> JobRecord | None:
    """Copy the job's log from ``offset`` to ``out`` until the job has ended.

    Returns the final record (None if the job was deleted meanwhile). A log deleted
    while it is followed ends the follow.
    """
    path = Path(record.log_path)
    try:
        log = open(path, "rb")  # noqa: SIM115 - closed below, after the follow
    except FileNotFoundError:
        return service.store.get(record.id)
    with log, JobWatch(service, [record.id], logs=[path]) as watch:
        log.seek(offset)
        while True:
            current = watch.records()[record.id]
            ended = current is None or current.state.is_finished
            out.writelines(_chunks(log))
            out.flush()
            if ended or os.fstat(log.fileno()).st_nlink == 0:
                return current
            watch.wait(None)


def _chunks(log: BinaryIO) -> Iterator[bytes]:
    while chunk := log.read(_CHUNK):
        yield chunk


def wait_for_jobs(
    service: WorkerService, job_ids: list[int], timeout: float | None
) -> dict[int, JobRecord | None] | None:
    """Block until every job has ended (or was deleted); None when ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with JobWatch(service, job_ids) as watch:
        while True:
            current = watch.records()
            if all(r is None or r.state.is_finished for r in current.values()):
                return current
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            watch.wait(remaining)
