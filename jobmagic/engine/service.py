"""``WorkerService``: the jobs of one kernel, their store, their watcher and their events."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import NamedTuple, Unpack

from jobmagic.backends.base import Executor
from jobmagic.backends.registry import Executors
from jobmagic.core.events import EventKind, JobEvent, Listeners
from jobmagic.core.files import create_private_file
from jobmagic.core.spec import JobOptions, JobSpec, check_group_name, looks_like_id
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, JobNotFound, StoreError
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import pause_epoch, set_group_paused
from jobmagic.store.reconcile import reconcile
from jobmagic.store.records import JobRecord

from .binding import JobBinding
from .lifecycle import JobLifecycle
from .output_feed import OutputFeed, SharedHandlers
from .pausing import pause_record
from .pools import GPUS_ENV, check_request, discover_gpus
from .retention import delete_job, prune
from .scheduler import Scheduler
from .views import ForeignJobs, not_found_message
from .watcher import Timer, Watcher
from .worker import Worker

_log = logging.getLogger("jobmagic")

#: Seconds ``shutdown()`` waits beyond the stop timeout for jobs to end (and the store).
SHUTDOWN_SLACK = 10.0
#: How many job ids a warning lists before it says "and N more".
_SHOWN_IDS = 10
#: The longest wait between retries of job ends that could not be recorded (disk full).
MAX_RETRY_DELAY = 60.0

#: The logger the default service hands its jobs' output to (as children named by id).
DEFAULT_LOGGER_NAME = "jobmagic.job"
# Job output is not a diagnostic: keep it out of the root logger's handlers.
logging.getLogger(DEFAULT_LOGGER_NAME).propagate = False

Listener = Callable[[JobEvent[Worker]], None]


class GroupInfo(NamedTuple):
    """A queue group: its limit, its jobs running and queued, whether it is paused.

    ``parallel``: 0 means no limit; ``running`` counts paused jobs (they keep their slots);
    a paused group admits nothing.
    """

    name: str
    parallel: int
    running: int
    queued: int
    paused: bool


class WorkerService:
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
        #: The GPU pool's devices; None: ``JOBMAGIC_GPUS``, else ``nvidia-smi -L``.
        self.gpus: list[str] | None = None
        #: Named pools and how many units each has (``{"license": 2}``).
        self.resources: dict[str, int] = {}
        self._discovered_gpus: list[str] | None = None
        self.executors = Executors(self.store.home)
        self.queue = JobQueue(self.store)
        self.scheduler = Scheduler(
            self.queue,
            self.watcher,
            pools=self.pools,
            executors=self.executors,
            reconcile=self.reconcile,
        )
        self._default_grace = lambda: self.stop_timeout  # one for every job: read at each stop
        self._shared_handlers = SharedHandlers(self.logger)
        self._listeners = Listeners[Worker]()
        # Guards _workers and _closed.
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
        self._store_watch = self.watcher.watch_file(
            str(self.store.changed_path), self._on_store_change
        )
        _live_services.add(self)

    # -- backends --------------------------------------------------------------------
    def reconcile(self) -> list[int]:
        """Finish the records of other processes' jobs that ended unwatched; their ids."""
        return reconcile(self.store, self.executors)

    # -- starting ------------------------------------------------------------------
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
        return self.add(Worker(command, **options)).start()

    def add(self, worker: Worker, *, restarted_from: int | None = None) -> Worker:
        """Give ``worker`` an id in the store and make it one of this service's jobs."""
        self._check_open()
        if worker.id is not None:
            raise JobmagicError(f"job {worker.id} already belongs to a service")
        spec = worker.spec
        # What the backend cannot run fails before anything is recorded.
        executor = self.executors.require(spec.backend)
        executor.check(spec)
        for job_id in spec.after:
            if self.store.get(job_id) is None:
                raise ValueError(f"after: there is no job {job_id} to wait for")
        if spec.gpus or spec.resources:
            check_request(spec.gpus, spec.resources, *self.pools())
        record = self.store.create(spec, restarted_from=restarted_from)
        self._create_log(record.id)
        self._bind_owned(worker, record.id, spec, executor)
        self._emit("added", worker)
        return worker

    def _create_log(self, job_id: int) -> None:
        """Create the new job's empty log (stream() of a queued job waits on it)."""
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
            with contextlib.suppress(StoreError):
                self.store.finish(job_id, JobState.FAILED, None, f"cannot create its log: {exc}")
            raise StoreError(f"cannot create the job's log {path}: {exc.strerror or exc}") from None
        os.close(fd)

    def _bind_owned(
        self, worker: Worker, job_id: int, spec: JobSpec, executor: Executor
    ) -> JobLifecycle:
        """Make ``worker`` this service's job ``job_id``: its lifecycle and output feed."""
        feed = self._feed(worker, job_id)
        lifecycle = JobLifecycle(
            job_id,
            spec,
            store=self.store,
            executor=executor,
            watcher=self.watcher,
            feed=feed,
            default_grace=self._default_grace,
            on_change=functools.partial(self._emit, "state", worker),
            on_end=self._after_end,
            describe_wait=functools.partial(self._describe_wait, job_id),
        )
        worker.bind(
            JobBinding(
                job_id,
                self.store.log_path(job_id),
                feed,
                self.logger,
                lifecycle=lifecycle,
                submit=functools.partial(self.scheduler.submit, lifecycle),
                restart=self.restart,
                pause=self._set_paused,
            )
        )
        with self._lock:
            self._workers[job_id] = worker
        return lifecycle

    def _feed(self, worker: Worker, job_id: int) -> OutputFeed:
        return OutputFeed(
            self.store.log_path(job_id),
            job_id,
            worker,
            self.watcher,
            self._shared_handlers,
        )

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
            won = self.store.adopt(record)
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

    def restart(self, id_or_name: int | str, *, detach: bool | None = None) -> Worker:
        """Start a finished job again as a new job: same command, options and cwd.

        Its environment variables are read from this kernel's environment now (the store
        keeps their names, never their values). The new job's record names the old one
        (``restarted_from``). ``detach``: None keeps the old job's.

        Raises
        ------
        JobmagicError
            The job has not ended, or needs environment variables this kernel lacks.
        """
        found = self.get(id_or_name)
        record = self.store.get(found.id or 0)
        if record is None:
            raise JobNotFound(f"no job {id_or_name!r}")
        if not record.state.is_finished:
            raise JobmagicError(
                f"job {record.id} is {record.state.value}; only an ended job can be restarted"
            )
        spec = _spec_here(record, "restart it again")
        if detach is not None:
            spec = dataclasses.replace(spec, detach=detach)
        return self.add(Worker.from_spec(spec), restarted_from=record.id).start()

    def restart_failed(self, group: str | None = None) -> list[Worker]:
        """Restart every FAILED job (of ``group``) that was not restarted before."""
        records = self.store.list(states=[JobState.FAILED])
        done = {r.restarted_from for r in self.store.list() if r.restarted_from is not None}
        return [
            self.restart(r.id)
            for r in records
            if r.id not in done and (group is None or r.group_name == group)
        ]

    def _adopt_queued(self, record: JobRecord) -> Worker:
        spec = _spec_here(record, "adopt it again")
        executor = self.executors.require(spec.backend)
        if not self.store.adopt(record):
            raise JobmagicError(f"job {record.id} was just adopted by another kernel")
        adopted = Worker.from_spec(spec)
        self._bind_owned(adopted, record.id, spec, executor)
        self._emit("added", adopted)
        return adopted.start()

    # -- the queue ---------------------------------------------------------------------
    def set_group(self, name: str, parallel: int) -> None:
        """Let at most ``parallel`` jobs of group ``name`` run at once, in every kernel.

        ``0`` means no limit. The limit lives in the store: every kernel, the server and
        the command line obey it; jobs already running go on. Queued jobs start at once
        when the new limit leaves room.

        Raises
        ------
        ValueError
            A group name that is not 1-64 of ``A-Za-z0-9_.-``, or ``parallel`` not an
            integer >= 0.
        """
        check_group_name(name)
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 0:  # type: ignore[redundant-expr]
            raise ValueError(f"parallel must be an integer >= 0 (0: no limit), not {parallel!r}")
        self.queue.set_group(name, parallel)
        self.scheduler.run()

    def pause(
        self, id_or_name: int | str | None = None, *, group: str | None = None
    ) -> list[Worker]:
        """Pause a running job, or a whole group; return the jobs paused.

        A job's processes are stopped where they are (SIGSTOP to its process group) and
        it is PAUSED: its runtime and timeout stop counting, it keeps its slot and its
        devices. A paused ``group`` admits nothing new, and its running jobs are paused;
        it stays paused (in every kernel) until :meth:`resume`.

        Raises
        ------
        ValueError
            Neither or both of a job and a group, or a bad group name.
        JobmagicError
            The job is queued (pause its group) or has ended.
        """
        return self._pause_or_resume(id_or_name, group, paused=True)

    def resume(
        self, id_or_name: int | str | None = None, *, group: str | None = None
    ) -> list[Worker]:
        """Let a paused job, or a paused group and its paused jobs, go on; see :meth:`pause`."""
        return self._pause_or_resume(id_or_name, group, paused=False)

    def _pause_or_resume(
        self, id_or_name: int | str | None, group: str | None, *, paused: bool
    ) -> list[Worker]:
        if (id_or_name is None) == (group is None):
            raise ValueError("name a job or a group (group=...), not both")
        if id_or_name is not None:
            worker = self.get(id_or_name)
            self._set_paused(worker.id or 0, paused)
            return [worker]
        check_group_name(group or "")
        assert group is not None
        set_group_paused(self.store, group, paused)
        moving = JobState.RUNNING if paused else JobState.PAUSED
        moved = []
        for record in self.store.list(states=[moving]):
            if record.group_name == group:
                worker = self.get(record.id)
                with contextlib.suppress(JobmagicError):  # it ended meanwhile
                    self._set_paused(record.id, paused)
                    moved.append(worker)
        if not paused:
            self.scheduler.run()
        return moved

    def _set_paused(self, job_id: int, paused: bool) -> None:
        """Pause or resume job ``job_id``, this kernel's or another process's."""
        with self._lock:
            worker = self._workers.get(job_id)
        binding = worker.binding if worker is not None else None
        if binding is not None and binding.lifecycle is not None:
            binding.lifecycle.set_paused(paused)
            return
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(not_found_message(self.store, job_id))
        pause_record(self.store, self.executors, record, paused)

    def _on_store_change(self) -> None:
        """Another process may have paused or resumed one of this kernel's jobs."""
        try:
            epoch = pause_epoch(self.store)
            if epoch == self._pause_epoch:
                return
            self._pause_epoch = epoch
            with self._lock:
                active = [
                    w.binding.lifecycle
                    for w in self._workers.values()
                    if w.binding is not None
                    and w.binding.lifecycle is not None
                    and w.binding.lifecycle.state.is_active
                ]
            for lifecycle in active:
                record = self.store.get(lifecycle.job_id)
                if record is not None:
                    lifecycle.note_paused(record.state, record.paused_at, record.paused_for)
        except StoreError as exc:
            _log.warning("jobmagic could not read the job store: %s", exc)

    def _describe_wait(self, job_id: int) -> str | None:
        record = self.store.get(job_id)
        return self.queue.reasons([record]).get(job_id) if record is not None else None

    def pools(self) -> tuple[list[str], dict[str, int]]:
        """The GPU pool's devices and the named pools' capacities (see ``engine/pools``)."""
        if self.gpus is not None or GPUS_ENV in os.environ:
            gpus = discover_gpus(self.gpus)
        else:
            if self._discovered_gpus is None:
                self._discovered_gpus = discover_gpus()  # nvidia-smi, once
            gpus = self._discovered_gpus
        return gpus, dict(self.resources)

    def groups(self) -> list[GroupInfo]:
        """Every group (with a limit, or with jobs): name, limit, running and queued counts."""
        return [GroupInfo(*row) for row in self.queue.groups()]

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
        delete_job(self.store, self.executors, worker.id)
        with self._lock:
            self._workers.pop(worker.id, None)
        self._emit("removed", worker)

    def _after_end(self) -> None:
        """A job of this service has ended: run the queue, retry what was not recorded, prune."""
        if self.scheduler.queued:
            # Its slot goes on at once (other kernels hear of it through the store).
            try:
                self.scheduler.run()
            except StoreError as exc:
                _log.warning("jobmagic could not run the job queue: %s", exc)
        if self.store.unsaved:
            self._retry_later()
            return
        try:
            self._prune()
        except StoreError as exc:
            _log.warning("jobmagic could not prune old jobs: %s", exc)

    def _retry_later(self) -> None:
        """Retry writing unrecorded job ends on a timer, backing off up to a minute."""
        with self._lock:
            if self._retry_timer is not None or self._closed:
                return
            delay = self._retry_delay
            self._retry_delay = min(MAX_RETRY_DELAY, delay * 2)
            self._retry_timer = self.watcher.call_later(delay, self._retry_unsaved)

    def _retry_unsaved(self) -> None:
        with self._lock:
            self._retry_timer = None
        if self.store.retry_unsaved():
            self._retry_later()
            return
        with self._lock:
            self._retry_delay = 1.0
        _log.info("jobmagic recorded the job ends it could not write before")

    def _prune(self) -> None:
        removed = prune(self.store, self.executors, self.keep_finished, self.max_log_bytes)
        with self._lock:
            gone = [self._workers.pop(i) for i in removed if i in self._workers]
        for old in gone:
            self._emit("removed", old)

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
            running = [w for w in self.list() if not w.state.is_finished and not w.detach]
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


def _spec_here(record: JobRecord, then: str) -> JobSpec:
    """``record``'s spec with its environment variables' values from this kernel's."""
    missing = [key for key in record.env_keys if key not in os.environ]
    if missing:
        raise JobmagicError(
            f"job {record.id} was given environment variables this kernel does not have "
            f"({', '.join(missing)}); set them (os.environ) and {then}"
        )
    return dataclasses.replace(record.spec(), env={k: os.environ[k] for k in record.env_keys})


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
