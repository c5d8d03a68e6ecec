"""``WorkerService.start`` and ``add``: a job recorded, given its log, and launched.

A job that can start at once is launched inside the transaction that records it (one
store write per start, ``JobStore.create_started``); any other is recorded QUEUED and
handed to the scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Unpack

from jobmagic.backends.base import Executor
from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind, Listeners
from jobmagic.core.files import create_private_file
from jobmagic.core.spec import JobOptions, JobSpec
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, StoreError
from jobmagic.store.job_store import JobStore

from .launched import Launched
from .lifecycle import JobLifecycle
from .pools import check_request
from .worker import Worker

_log = logging.getLogger("jobmagic")


class Starting:
    """The starting part of ``WorkerService``. A mixin: it works on the service's jobs."""

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    executors: Executors
    session: str | None
    _listeners: Listeners[Worker]
    _lock: threading.RLock
    _workers: dict[int, Worker]

    if TYPE_CHECKING:

        def _check_open(self) -> None:
            """The service's ``_check_open``."""
            ...

        def pools(self) -> tuple[list[str], dict[str, int]]:
            """The service's ``pools``."""
            ...

        def _bind_owned(
            self, worker: Worker, job_id: int, spec: JobSpec, executor: Executor
        ) -> JobLifecycle:
            """The service's ``_bind_owned``."""
            ...

        def _emit(self, kind: EventKind, worker: Worker) -> None:
            """The service's ``_emit``."""
            ...

    def start(self, command: str, **options: Unpack[JobOptions]) -> Worker:
        """Start ``command`` as a background job and return its :class:`Worker` at once.

        The options are those of :class:`jobmagic.core.spec.JobSpec`: ``name``, ``cwd``,
        ``env``, ``timeout``, ``pty``, ``detach``, ``shell``, ``backend``. A command that
        cannot start still returns a Worker, already FAILED, whose ``error`` says why.

        Raises
        ------
        ValueError
            Empty command, a negative timeout, an unknown backend, a NUL byte, a bad
            ``env`` name, a name that reads as an id, or a command larger than the
            system runs. Nothing is recorded then.
        TypeError
            An ``env`` value that is not a str, or an unknown option.
        JobNameInUse
            A running job already has ``name``.
        StoreError
            The job store cannot be written (disk full, read-only, deleted).
        """
        return self._add_and_start(Worker(command, **options))

    def add(self, worker: Worker, *, restarted_from: int | None = None) -> Worker:
        """Give ``worker`` an id in the store and make it one of this service's jobs."""
        executor, spec = self._accepted(worker)
        record = self.store.create(spec, restarted_from=restarted_from, session=self.session)
        self._create_log(record.id)
        self._bind_owned(worker, record.id, spec, executor)
        self._emit("added", worker)
        return worker

    def _accepted(self, worker: Worker) -> tuple[Executor, JobSpec]:
        """Check what ``add`` checks before anything is recorded; the job's executor and spec."""
        self._check_open()
        if worker.id is not None:
            raise JobmagicError(f"job {worker.id} already belongs to a service")
        # What the backend cannot run fails before anything is recorded.
        executor = self.executors.require(worker.spec.backend)
        spec = worker.spec = executor.prepared(worker.spec)
        executor.check(spec)
        for job_id in spec.after:
            if self.store.get(job_id) is None:
                raise ValueError(f"after: there is no job {job_id} to wait for")
        if executor.pooled and (spec.gpus or spec.resources):
            check_request(spec.gpus, spec.resources, *self.pools())
        return executor, spec

    def _add_and_start(self, worker: Worker, *, restarted_from: int | None = None) -> Worker:
        """``add(worker).start()``, recorded in one store write when it can start at once.

        A job that waits for nothing (no ``after``, devices or pool units) in a group that
        starts jobs at once is launched inside the transaction that records it: its record
        is written once, already RUNNING (or FAILED when it cannot start). Not while
        someone listens to this service's events: a listener hears that a job was added
        while it is QUEUED, before it runs (and may stop it then), which takes the record
        to exist first, and a second write when the job starts.
        """
        executor, spec = self._accepted(worker)
        if spec.after or spec.gpus or spec.resources or len(self._listeners):
            record = self.store.create(spec, restarted_from=restarted_from, session=self.session)
            self._create_log(record.id)
            self._bind_owned(worker, record.id, spec, executor)
            self._emit("added", worker)
            return worker.start()
        made: list[tuple[JobLifecycle, Launched | None, str | None]] = []

        def launch(job_id: int) -> dict[str, Any]:
            """Inside the job's first write: its log, its lifecycle, its launch."""
            no_log = self._make_log(job_id)
            lifecycle = self._bind_owned(worker, job_id, spec, executor)
            if no_log is not None:
                failed = Launched(None, time.time(), f"cannot create its log: {no_log}")
                made.append((lifecycle, failed, no_log))
                return failed.columns()
            launched = lifecycle.launch_unrecorded()
            made.append((lifecycle, launched, None))
            return launched.columns() if launched is not None else {}

        try:
            job_id = self.store.create_started(
                spec, restarted_from=restarted_from, session=self.session, start=launch
            )
        except BaseException:
            for lifecycle, launched, _ in made:
                self._unmake(worker, executor, lifecycle, launched)
            raise
        if not made:  # its group runs no job at once: it waits in the queue
            self._create_log(job_id)
            self._bind_owned(worker, job_id, spec, executor)
            self._emit("added", worker)
            return worker.start()
        lifecycle, launched, no_log = made[0]
        self._emit("added", worker)
        if launched is not None:
            lifecycle.launch_recorded(launched)
        if no_log is not None:
            raise StoreError(f"cannot create the job's log {self.store.log_path(job_id)}: {no_log}")
        return worker

    def _unmake(
        self,
        worker: Worker,
        executor: Executor,
        lifecycle: JobLifecycle,
        launched: Launched | None,
    ) -> None:
        """Undo a launch whose record could not be written: nothing unrecorded runs on."""
        with self._lock:
            self._workers.pop(lifecycle.job_id, None)
        execution = launched.execution if launched is not None else None
        if execution is not None:
            execution.kill()  # SIGKILL to its whole group: it never ran for anyone
            execution.close()
            executor.discard(lifecycle.job_id, execution.ref)
        with contextlib.suppress(OSError):
            os.unlink(self.store.log_path(lifecycle.job_id))
        _log.debug("jobmagic: job %s was not recorded, and was not left running", worker)

    def _make_log(self, job_id: int) -> str | None:
        """Create the new job's empty log; None, or why it could not be made."""
        path = self.store.log_path(job_id)
        try:
            try:
                fd = create_private_file(path, new=True)
            except FileExistsError:
                # Another store's file of the same name (a store restored from a copy):
                # set aside, never appended to.
                stale = path.with_name(f"{path.name}.stale-{time.time():.0f}")
                os.rename(path, stale)
                _log.warning("jobmagic: moved an earlier job's log %s aside to %s", path, stale)
                fd = create_private_file(path, new=True)
        except OSError as exc:
            return str(exc.strerror or exc)
        os.close(fd)
        return None

    def _create_log(self, job_id: int) -> None:
        """Create the new job's empty log (stream() of a queued job waits on it)."""
        failure = self._make_log(job_id)
        if failure is None:
            return
        with contextlib.suppress(StoreError):
            self.store.finish(job_id, JobState.FAILED, None, f"cannot create its log: {failure}")
        raise StoreError(f"cannot create the job's log {self.store.log_path(job_id)}: {failure}")
