"""``WorkerService``: the jobs of one kernel, their store, their watcher and their events."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from jobmagic.backends.base import Executor
from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind, JobEvent, Listeners
from jobmagic.core.spec import JobSpec, looks_like_id
from jobmagic.errors import JobmagicError, JobNotFound, StoreError
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import pause_epoch
from jobmagic.store.reconcile import reconcile

from .adoption import Adoption
from .after_ends import AfterEnds
from .binding import JobBinding
from .end_recorder import EndRecorder
from .lifecycle import JobLifecycle
from .output_feed import OutputFeed
from .queue_operations import QueueOperations
from .removal import Removal
from .scheduler import Scheduler
from .shared_handlers import SharedHandlers
from .starting import Starting
from .stopping import Stopping
from .usage import UsageMeter
from .views import ForeignJobs, not_found_message
from .watcher import Timer, Watcher
from .worker import Worker

_log = logging.getLogger("jobmagic")

#: The environment variable in which Jupyter names a kernel's notebook.
SESSION_ENV = "JPY_SESSION_NAME"
#: Seconds ``shutdown()`` waits beyond the stop timeout for jobs to end (and the store).
SHUTDOWN_SLACK = 10.0
#: How many job ids a warning lists before it says "and N more".
_SHOWN_IDS = 10

#: The logger the default service hands its jobs' output to (as children named by id).
DEFAULT_LOGGER_NAME = "jobmagic.job"
# Job output is not a diagnostic: keep it out of the root logger's handlers.
logging.getLogger(DEFAULT_LOGGER_NAME).propagate = False

Listener = Callable[[JobEvent[Worker]], None]


class WorkerService(Starting, AfterEnds, Adoption, QueueOperations, Removal, Stopping):
    """The jobs of this kernel: starts them, finds them, stops them, tells listeners.

    Parameters
    ----------
    logger:
        Each job's output records go to a child of this logger named after the job id,
        while a handler listens. ``None`` means ``logging.getLogger("jobmagic.job")``,
        which does not propagate to the root logger (job output is not a diagnostic).
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
        # The watcher never uses the store: ends, prunes, queue passes after them and what
        # other processes' writes call for run on the end recorder's writer thread.
        self._ends = EndRecorder(
            self.store, self.watcher, after=self._after_ends, tidy=self._tidy_after_ends
        )
        self._store_change_due = False  # a look at the store is handed to the writer
        #: The GPU pool's devices; None: ``JOBMAGIC_GPUS``, else ``nvidia-smi -L``.
        self.gpus: list[str] | None = None
        #: Named pools and how many units each has (``{"license": 2}``).
        self.resources: dict[str, int] = {}
        #: The notebook this kernel runs (Jupyter's ``JPY_SESSION_NAME``), None when unknown:
        #: its jobs are recorded as that notebook's, for ``reattach`` after a restart.
        self.session: str | None = os.environ.get(SESSION_ENV) or None
        #: What ``shutdown`` does with the kernel's jobs that are not detached: "stop"
        #: them, or "keep" them running (a kernel restart keeps them; see ``reattach``).
        self.on_shutdown = "stop"
        self._discovered_gpus: list[str] | None = None
        self.executors = Executors(self.store.home)
        self.queue = JobQueue(self.store)
        self.scheduler = Scheduler(
            self.queue,
            self.watcher,
            pools=self.pools,
            executors=self.executors,
            reconcile=self.reconcile,
            adopt=self._adopt_admitted,
        )
        self._default_grace = lambda: self.stop_timeout  # one for every job: read at each stop
        self._shared_handlers = SharedHandlers(self.logger)
        self._listeners = Listeners[Worker]()
        # Guards _workers, _closed and _store_change_due.
        self._lock = threading.RLock()
        self._workers: dict[int, Worker] = {}
        self._closed = False
        self._retry_delay = 1.0
        self._retry_timer: Timer | None = None
        self._foreign = ForeignJobs(
            store=self.store,
            executors=self.executors,
            watcher=self.watcher,
            logger=self.logger,
            default_grace=self._default_grace,
            reconcile=self.reconcile,
            restart=self.restart,
            pause=self._set_paused,
        )
        with contextlib.suppress(StoreError):
            self.reconcile()
        # Another process may pause or resume this kernel's jobs: the store says so.
        self._pause_epoch = pause_epoch(self.store)
        self._data_version: int | None = None  # the store's, as the store watch last saw it
        self._store_watch = self.watcher.watch_file(
            str(self.store.changed_path), self._store_written
        )
        _live_services.add(self)

    # -- backends --------------------------------------------------------------------
    def reconcile(self) -> list[int]:
        """Finish the records of other processes' jobs that ended unwatched; their ids."""
        return reconcile(self.store, self.executors)

    # -- starting (see Starting) ----------------------------------------------------
    def _bind_owned(
        self, worker: Worker, job_id: int, spec: JobSpec, executor: Executor
    ) -> JobLifecycle:
        """Make ``worker`` this service's job ``job_id``: its lifecycle and output feed."""
        log_path = self.store.log_path(job_id)
        feed = self._feed(worker, job_id, log_path)
        lifecycle = JobLifecycle(
            job_id,
            spec,
            store=self.store,
            executor=executor,
            watcher=self.watcher,
            feed=feed,
            default_grace=self._default_grace,
            on_change=functools.partial(self._emit, "state", worker),
            on_end=functools.partial(self._after_end, job_id),
            describe_wait=functools.partial(self._describe_wait, job_id),
            ends=self._ends,
        )
        worker.bind(
            JobBinding(
                job_id,
                log_path,
                feed,
                self.logger,
                lifecycle=lifecycle,
                submit=functools.partial(self.scheduler.submit, lifecycle),
                restart=self.restart,
                pause=self._set_paused,
                usage=UsageMeter(lifecycle.live_usage, lambda: lifecycle.started_at),
            )
        )
        with self._lock:
            self._workers[job_id] = worker
        return lifecycle

    def _feed(self, worker: Worker, job_id: int, log_path: Path | None = None) -> OutputFeed:
        return OutputFeed(
            log_path or self.store.log_path(job_id),
            job_id,
            worker,
            self.watcher,
            self._shared_handlers,
        )

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
            raise JobNotFound(not_found_message(self.store, id_or_name))
        return self._foreign.view(record)

    def list(self, all: bool = False) -> list[Worker]:
        """List this kernel's jobs in id order; ``all=True`` adds every job in the store."""
        with self._lock:
            own = dict(self._workers)
        if not all:
            return [own[i] for i in sorted(own)]
        with contextlib.suppress(StoreError):
            self.reconcile()
        return [own.get(record.id) or self._foreign.view(record) for record in self.store.list()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._workers)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self.list())

    # -- what other processes write ------------------------------------------------
    def _store_written(self) -> None:
        """The store's change file was touched (watcher thread): look at it on the writer."""
        with self._lock:
            if self._store_change_due:
                return
            self._store_change_due = True
        self._ends.call(self._store_change)

    def _store_change(self) -> None:
        with self._lock:
            self._store_change_due = False
        self._on_store_change()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop this kernel's jobs (detached ones keep running) and end the watcher.

        Jobs get ``timeout`` seconds (default: ``stop_timeout``) between SIGTERM and
        SIGKILL; this returns at most ``SHUTDOWN_SLACK`` seconds after that even when a
        job does not end or the store cannot be written (a warning names what was left).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            retry, self._retry_timer = self._retry_timer, None
        grace = self.stop_timeout if timeout is None else timeout
        deadline = time.monotonic() + grace + SHUTDOWN_SLACK
        try:
            running = [
                w
                for w in self.list()
                if not w.state.is_finished and not w.detach and self.on_shutdown != "keep"
            ]
            for worker in running:
                worker.stop(grace, wait=False)
            for worker in running:
                worker.wait(max(0.0, deadline - time.monotonic()))
            left = [w.id for w in running if not w.state.is_finished]
            if left:
                shown = ", ".join(map(str, left[:_SHOWN_IDS]))
                if len(left) > _SHOWN_IDS:
                    shown += f" and {len(left) - _SHOWN_IDS} more"
                _log.warning("jobmagic shut down before these jobs ended: %s", shown)
            if retry is not None or self.store.unsaved:
                with contextlib.suppress(StoreError):
                    if self.store.retry_unsaved():
                        _log.warning("jobmagic could not record the end of every job")
        finally:
            self.scheduler.close()
            self.watcher.unwatch_file(self._store_watch)
            self.watcher.close()
            self._ends.close()  # the ends the writer still had: written here
            self.executors.close()
            _live_services.discard(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
        with self._lock:
            return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise JobmagicError("this WorkerService was shut down")

    # -- output handlers for every job -----------------------------------------------------
    def add_handler(self, handler: logging.Handler, tail_bytes: int | None = None) -> None:
        """Feed the output of every job of this service to ``handler``.

        Jobs started from now on are fed from their first byte, running ones from now
        (``tail_bytes`` as in :meth:`Worker.add_handler`). The handler is attached to
        ``logger``, which the loggers of the jobs propagate to.
        """
        self._shared_handlers.add(handler, tail_bytes)

    def remove_handler(self, handler: logging.Handler) -> None:
        """Stop feeding a handler given to :meth:`add_handler`."""
        self._shared_handlers.remove(handler)

    # -- events ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every :class:`JobEvent`; returns the unsubscriber.

        Listeners run on whichever thread made the change (often the watcher thread) and
        must return quickly.
        """
        return self._listeners.subscribe(listener)

    @property
    def listener_count(self) -> int:
        """How many listeners are subscribed (for leak checks)."""
        return len(self._listeners)

    def _emit(self, kind: EventKind, worker: Worker) -> None:
        self._listeners.emit(kind, worker)


def _as_id(id_or_name: int | str) -> int | None:
    if isinstance(id_or_name, int):
        return id_or_name
    text = str(id_or_name)
    return int(text.strip().lstrip("#")) if looks_like_id(text) else None


# Every service still open, so that interpreter exit stops their jobs.
_live_services: weakref.WeakSet[WorkerService] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    for service in list(_live_services):
        try:
            service.shutdown()
        except Exception:  # noqa: BLE001 - keep stopping the other services' jobs
            _log.exception("jobmagic could not stop its jobs at exit")
