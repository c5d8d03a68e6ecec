"""Adoption: taking over a job whose kernel died (``WorkerService.adopt``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from jobmagic.backends.base import Executor
from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, JobNotFound, StoreError
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import JobRecord

from .lifecycle import JobLifecycle
from .queue_operations import spec_here
from .worker import Worker


class Adoption:
    """The adopting part of ``WorkerService``. A mixin: it works on the service's jobs."""

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    executors: Executors
    session: str | None

    if TYPE_CHECKING:

        def get(self, id_or_name: int | str) -> Worker:
            """The service's ``get``."""
            ...

        def _bind_owned(
            self, worker: Worker, job_id: int, spec: JobSpec, executor: Executor
        ) -> JobLifecycle:
            """The service's: make ``worker`` its job ``job_id``."""
            ...

        def _emit(self, kind: EventKind, worker: Worker) -> None:
            """The service's: tell its listeners."""
            ...

    def adopt(self, job_id: int | str) -> Worker:
        """Take over a job whose kernel died, to wait for, stream and stop it.

        A running job is followed from where it is. A queued one goes back into the queue
        as this kernel's; the environment variables it was given are read from this
        kernel's environment (the store keeps their names, never their values).

        Raises
        ------
        JobNotFound
            No such job.
        JobmagicError
            The job has ended, its kernel is still alive, or (queued) it needs environment
            variables this kernel does not have.
        """
        found = self.get(job_id)
        if found.owned:
            return found
        record = self.store.get(found.id or 0)
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        if record.state.is_finished:
            raise JobmagicError(f"job {record.id} has already ended ({record.state.value})")
        if record.owner_alive:
            raise JobmagicError(f"job {record.id} belongs to a live kernel ({record.owner})")
        if record.state is JobState.QUEUED:
            return self._adopt_queued(record)
        executor = self.executors.require(record.backend)
        execution = executor.attach(record.backend_ref)
        if execution is None:
            raise JobmagicError(f"job {record.id} is no longer running")
        try:
            won = self.store.adopt(record, self.session)
        except BaseException:
            execution.close()
            raise
        if not won:
            execution.close()
            now = self.store.get(record.id)
            if now is not None and now.state.is_active:
                raise JobmagicError(
                    f"job {record.id} was just adopted by another kernel ({now.owner}); "
                    "follow it there"
                )
            raise JobmagicError(f"job {record.id} is no longer running")
        adopted = Worker.from_spec(record.spec())
        lifecycle = self._bind_owned(adopted, record.id, adopted.spec, executor)
        lifecycle.adopt(execution, record.started_at)
        lifecycle.note_paused(record.state, record.paused_at, record.paused_for)
        self._emit("added", adopted)
        return adopted

    def reattach(self) -> list[Worker]:
        """Adopt the jobs that a restart of this notebook's kernel left behind.

        The running, paused and queued jobs recorded as this notebook's (``session``)
        whose kernel is gone. Another live kernel's jobs are never taken; a queued job
        whose environment variables this kernel lacks is left (adopt it once they are
        set). Returns the jobs adopted; none when the notebook is not known.
        """
        if self.session is None:
            return []
        adopted = []
        for record in self.store.list(states=[JobState.RUNNING, JobState.PAUSED, JobState.QUEUED]):
            if record.session != self.session or record.owner_alive:
                continue
            with contextlib.suppress(JobmagicError):  # it ended, or another kernel was first
                adopted.append(self.adopt(record.id))
        return adopted

    def _adopt_admitted(self, job_id: int) -> JobLifecycle | None:
        """Bind a job that was nobody's, which this kernel's queue pass admitted and adopted.

        (A detached queued job whose owner is gone: see ``engine/scheduler.py``.) The
        scheduler launches it; None when it is gone, or its backend is not here.
        """
        record = self.store.get(job_id)
        if record is None:
            return None
        try:
            executor = self.executors.require(record.backend)
        except JobmagicError as exc:
            with contextlib.suppress(StoreError):
                self.store.finish(job_id, JobState.FAILED, None, f"could not start: {exc}")
            return None
        adopted = Worker.from_spec(record.spec())
        lifecycle = self._bind_owned(adopted, job_id, adopted.spec, executor)
        self._emit("added", adopted)
        return lifecycle

    def _adopt_queued(self, record: JobRecord) -> Worker:
        spec = spec_here(record, "adopt it again")
        executor = self.executors.require(spec.backend)
        if not self.store.adopt(record, self.session):
            raise JobmagicError(f"job {record.id} was just adopted by another kernel")
        adopted = Worker.from_spec(spec)
        self._bind_owned(adopted, record.id, spec, executor)
        self._emit("added", adopted)
        return adopted.start()
