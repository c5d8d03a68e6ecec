"""``WorkerService``: the jobs of one kernel, their store, their watcher and their events."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import difflib
import logging
import os
import resource
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import JobmagicError, JobNotFound, StoreError
from .home import create_private_file
from .procinfo import ProcessGroups
from .state import JobState
from .store import JobStore
from .watcher import Watcher
from .worker import Worker

if TYPE_CHECKING:
    from .panel import JobPanel

_log = logging.getLogger("jobmagic")

#: The logger the default service hands its jobs' output to (as children named by id).
DEFAULT_LOGGER_NAME = "jobmagic.job"
# Job output is not a diagnostic: keep it out of the root logger's handlers.
logging.getLogger(DEFAULT_LOGGER_NAME).propagate = False


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """Something happened to a job: ``kind`` is "added", "state" or "removed"."""

    kind: Literal["added", "state", "removed"]
    worker: Worker


Listener = Callable[[JobEvent], None]


class WorkerService:
    """The jobs of this kernel: starts them, finds them, stops them, tells listeners.

    Parameters
    ----------
    logger:
        Each job's output goes to a child of this logger named after the job id, while a
        handler listens. ``None`` means ``logging.getLogger("jobmagic.job")``, which does
        not propagate to the root logger (job output is not a diagnostic).
    home:
        The job home holding the store and logs; ``None`` means ``$JOBMAGIC_HOME`` or
        ``<jupyter data dir>/jobmagic``.
    stop_timeout:
        Default seconds between SIGTERM and SIGKILL in ``stop()``.
    keep_finished:
        Retention: how many finished jobs the store keeps (oldest pruned first).
    max_log_bytes:
        Retention: how many bytes of finished jobs' logs the store keeps.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        home: str | os.PathLike[str] | None = None,
        stop_timeout: float = 5.0,
        keep_finished: int = 1000,
        max_log_bytes: int = 5 << 30,
    ) -> None:
        self.logger = logger or logging.getLogger(DEFAULT_LOGGER_NAME)
        self.stop_timeout = stop_timeout
        self.keep_finished = keep_finished
        self.max_log_bytes = max_log_bytes
        self.store = JobStore(home)
        self.watcher = Watcher()
        #: Used on the watcher thread to find what is left of a stopping job's group.
        self.process_groups = ProcessGroups()
        # Guards _workers, _listeners and _closed.
        self._lock = threading.RLock()
        self._workers: dict[int, Worker] = {}
        self._listeners: list[Listener] = []
        self._closed = False
        _raise_open_file_limit()
        with contextlib.suppress(StoreError):
            self.store.reconcile()
        _live_services.add(self)

    # -- starting ------------------------------------------------------------------
    def start(
        self,
        command: str,
        *,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        pty: bool = False,
        detach: bool = False,
        shell: str = "/bin/sh",
    ) -> Worker:
        """Start ``command`` as a background job and return its :class:`Worker` at once.

        A command that cannot start still returns a Worker, already FAILED, whose
        ``error`` says why. See :class:`Worker` for the parameters.

        Raises
        ------
        ValueError
            Empty command, or a negative timeout.
        TypeError
            An ``env`` value that is not a str.
        JobNameInUse
            A running job already has ``name``.
        """
        worker = Worker(
            command,
            name=name,
            cwd=cwd,
            env=env,
            timeout=timeout,
            pty=pty,
            detach=detach,
            shell=shell,
        )
        self.add(worker)
        return worker.start()

    def add(self, worker: Worker) -> Worker:
        """Give ``worker`` an id in the store and make it one of this service's jobs."""
        self._check_open()
        if worker._service is not None:
            raise JobmagicError(f"job {worker.id} already belongs to a service")
        record = self.store.create(
            worker.command,
            name=worker.name,
            cwd=worker.cwd,
            env_keys=worker.env,
            detached=worker.detach,
            pty=worker.pty,
            timeout=worker.timeout,
        )
        # The log exists from the start, so that stream() of a queued job can wait on it.
        os.close(create_private_file(Path(record.log_path)))
        with self._lock:
            worker._service = self
            worker._record = record
            self._workers[record.id] = worker
        self._emit("added", worker)
        return worker

    def adopt(self, job_id: int | str) -> Worker:
        """Take over a running job whose kernel died, to wait for, stream and stop it.

        Raises
        ------
        JobNotFound
            No such job.
        JobmagicError
            The job is not running, or its kernel is still alive.
        """
        worker = self.get(job_id)
        if worker.owned:
            return worker
        record = worker._record
        assert record is not None
        if record.state is not JobState.RUNNING:
            raise JobmagicError(f"job {record.id} is {record.state.value}, not running")
        if record.owner_alive:
            raise JobmagicError(f"job {record.id} belongs to a live kernel ({record.owner})")
        self.store.adopt(record.id)
        adopted_record = self.store.get(record.id)
        assert adopted_record is not None
        adopted = Worker._from_record(adopted_record, self)
        adopted._owned = True
        adopted._attach_adopted(self, adopted_record)
        with self._lock:
            self._workers[record.id] = adopted
        self._emit("added", adopted)
        return adopted

    # -- finding ---------------------------------------------------------------------
    def get(self, id_or_name: int | str) -> Worker:
        """The job with this id or name (this kernel's first, then the store's).

        Raises
        ------
        JobNotFound
            With the known ids and names closest to what was asked.
        """
        job_id = _as_id(id_or_name)
        with self._lock:
            if job_id is not None and job_id in self._workers:
                return self._workers[job_id]
            if job_id is None:
                named = [w for w in self._workers.values() if w.name == id_or_name]
                if named:
                    return max(named, key=lambda w: w.id or 0)
        record = (
            self.store.get(job_id) if job_id is not None else self.store.find_name(str(id_or_name))
        )
        if record is None:
            raise JobNotFound(self._not_found_message(id_or_name))
        return Worker._from_record(record, self)

    def _not_found_message(self, id_or_name: int | str) -> str:
        known: list[str] = []
        for record in self.store.list():
            known.append(str(record.id))
            if record.name:
                known.append(record.name)
        close = difflib.get_close_matches(str(id_or_name), known, n=5, cutoff=0.5)
        message = f"no job {id_or_name!r}"
        if close:
            message += f"; did you mean {', '.join(close)}?"
        elif known:
            recent = ", ".join(known[-5:])
            message += f"; known jobs: {recent}"
        else:
            message += "; no jobs yet"
        return message

    def list(self, all: bool = False) -> list[Worker]:
        """List this kernel's jobs in id order; ``all=True`` adds every job in the store."""
        with self._lock:
            own = dict(self._workers)
        if not all:
            return [own[i] for i in sorted(own)]
        with contextlib.suppress(StoreError):
            self.store.reconcile()
        return [
            own.get(record.id) or Worker._from_record(record, self) for record in self.store.list()
        ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self.list())

    # -- stopping and removing -----------------------------------------------------
    def stop_all(self, timeout: float | None = None, *, include_detached: bool = True) -> None:
        """Stop every running job of this kernel, all at once, and wait for them to end."""
        running = [
            w for w in self.list() if not w.state.is_finished and (include_detached or not w.detach)
        ]
        for worker in running:
            worker.stop(timeout, wait=False)
        for worker in running:
            worker.wait()

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

    def remove_finished(self) -> int:
        """Delete every finished job's record and log (all kernels'); return how many."""
        finished = [w for w in self.list(all=True) if w.state.is_finished]
        for worker in finished:
            self._forget(worker)
        return len(finished)

    def _forget(self, worker: Worker) -> None:
        """Delete a finished job's record and files and tell listeners."""
        assert worker.id is not None
        self.store.delete(worker.id)
        with self._lock:
            self._workers.pop(worker.id, None)
        self._emit("removed", worker)

    def shutdown(self) -> None:
        """Stop this kernel's jobs (detached ones keep running) and end the watcher."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.stop_all(include_detached=False)
        finally:
            self.watcher.close()
            _live_services.discard(self)

    def _check_open(self) -> None:
        if self._closed:
            raise JobmagicError("this WorkerService was shut down")

    # -- events ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every :class:`JobEvent`; returns the unsubscriber.

        Listeners run on whichever thread made the change (often the watcher thread) and
        must return quickly.
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @property
    def listener_count(self) -> int:
        """How many listeners are subscribed (for leak checks)."""
        with self._lock:
            return len(self._listeners)

    def _emit(self, kind: Literal["added", "state", "removed"], worker: Worker) -> None:
        with self._lock:
            listeners = list(self._listeners)
        event = JobEvent(kind, worker)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one broken listener must not starve the others
                _log.exception("jobmagic event listener failed")

    def _job_changed(self, worker: Worker) -> None:
        self._emit("state", worker)

    def _job_finished(self) -> None:
        try:
            removed = self.store.prune(self.keep_finished, self.max_log_bytes)
        except StoreError:
            _log.exception("jobmagic could not prune old jobs")
            return
        with self._lock:
            gone = [self._workers.pop(i) for i in removed if i in self._workers]
        for old in gone:
            self._emit("removed", old)

    # -- UI ----------------------------------------------------------------------------
    def panel(self, **kwargs: Any) -> JobPanel:
        """A :class:`jobmagic.panel.JobPanel` showing this service's jobs."""
        from .panel import JobPanel

        return JobPanel(service=self, **kwargs)


def _as_id(id_or_name: int | str) -> int | None:
    if isinstance(id_or_name, int):
        return id_or_name
    text = str(id_or_name).strip().lstrip("#")
    return int(text) if text.isdigit() else None


def _raise_open_file_limit() -> None:
    """Each running job holds a pidfd: lift the soft open-file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))


# Every service still open, so that interpreter exit stops their jobs.
_live_services: weakref.WeakSet[WorkerService] = weakref.WeakSet()
_default_service: WorkerService | None = None
_default_lock = threading.Lock()  # guards _default_service


def get_service() -> WorkerService:
    """The kernel's one :class:`WorkerService`, created on first use."""
    global _default_service
    with _default_lock:
        if _default_service is None or _default_service._closed:
            _default_service = WorkerService()
        return _default_service


def _reset_service_for_tests() -> None:
    """Shut the kernel's service down and forget it (tests use a fresh store each)."""
    global _default_service
    with _default_lock:
        service, _default_service = _default_service, None
    if service is not None:
        service.shutdown()


@atexit.register
def _shutdown_all() -> None:
    for service in list(_live_services):
        try:
            service.shutdown()
        except Exception:  # noqa: BLE001 - keep stopping the other services' jobs
            _log.exception("jobmagic could not stop its jobs at exit")
