"""One job's life in the kernel that owns it: launch, stop, end, as a state machine.

QUEUED -> RUNNING when its executor launched it (or -> FAILED when it could not start,
-> STOPPED when stopped first), RUNNING <-> PAUSED by ``set_paused`` (here or, through
the store, by another process), RUNNING or PAUSED -> SUCCEEDED, FAILED or STOPPED when
its execution has ended. Every move is written to the store and told to the job's output
feed, to the job's waiters and done callbacks, and to the service (``on_change``, ``on_end``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from jobmagic.backends.base import Cancellable, Execution, Executor
from jobmagic.backends.stop_policy import StopPolicy
from jobmagic.core.limits import Usage
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState, check_transition
from jobmagic.errors import JobmagicError, LaunchError, StoreError
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import check_pausable, pause_and_record

from .end_recorder import EndRecorder
from .launched import Launched
from .lifecycle_end import Ending
from .output_feed import OutputFeed
from .watcher import Watcher

_log = logging.getLogger("jobmagic")


class JobLifecycle(Ending):
    """The state machine of one job owned by this kernel. Thread-safe.

    Parameters
    ----------
    job_id, spec:
        The job and what it runs.
    store:
        Where every move is recorded.
    executor:
        The backend that runs it.
    watcher:
        The reactor its execution and its timers wait on.
    feed:
        Its output's readers and handlers.
    default_grace:
        Returns the seconds between terminate and kill of a stop that names none.
    on_change, on_end:
        Called after each move (outside every lock), and once more after the job ended.
    describe_wait:
        Returns where the queued job stands in its full group (worked out when asked).
    ends:
        Writes its end to the store (the service's, which batches the ends of a round
        of the watcher); None: one of its own.
    """

    def __init__(
        self,
        job_id: int,
        spec: JobSpec,
        *,
        store: JobStore,
        executor: Executor,
        watcher: Watcher,
        feed: OutputFeed,
        default_grace: Callable[[], float],
        on_change: Callable[[], None],
        on_end: Callable[[], None],
        describe_wait: Callable[[], str | None] | None = None,
        ends: EndRecorder | None = None,
    ) -> None:
        self.job_id = job_id
        self._ends = ends if ends is not None else EndRecorder(store, watcher)
        self.spec = spec
        self._store = store
        self._log_path = store.log_path(job_id)
        self._executor = executor
        self._watcher = watcher
        self._feed = feed
        self._default_grace = default_grace
        self._on_change = on_change
        self._on_end = on_end
        # Guards every field below; `_changed` is notified when the state changes.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._state = JobState.QUEUED
        self.exit_code: int | None = None
        self.error: str | None = None
        self.pid: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.paused_at: float | None = None  # when the pause under way began
        self.paused_for = 0.0  # seconds of the pauses that are over
        self.containment: str | None = None  # what holds it ("cgroup v1"), once it runs
        self.detail: str | None = None  # what its backend says of it while it runs
        self.final_usage: Usage | None = None  # what it used in all, once it ended
        self._launched = False
        self._ending = False  # _finish has claimed the end
        self._stopped_while_queued: str | None = None  # who stopped it before it ran
        self._stop_recorded = False  # the store knows someone asked it to stop
        self._execution: Execution | None = None
        self._stop: StopPolicy | None = None
        self._timeout: Cancellable | None = None
        self._done_callbacks: list[Callable[[], None]] = []
        self._queue_reason: str | None = None  # a stored reason ("waiting for job 7")
        self._describe_wait: Callable[[], str | None] | None = describe_wait

    @property
    def state(self) -> JobState:
        """Where the job is now."""
        return self._state

    @property
    def log_path(self) -> Path:
        """The job's log file."""
        return self._log_path

    # -- launching -----------------------------------------------------------------------
    def launch(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the job now (QUEUED -> RUNNING, or FAILED when it cannot start).

        ``extra_env`` is added to its environment (the GPU devices the queue gave it).
        A job stopped while it was queued is left STOPPED.

        Raises
        ------
        JobmagicError
            When it was already started.
        """
        with self._lock:
            launched = self._launch_execution(extra_env)
            if launched is None:
                return
            if launched.execution is not None:
                self._running(launched.execution, launched.started_at)
        if launched.execution is None:
            self._finish(JobState.FAILED, None, launched.failure)
            return
        try:
            self._store.update(self.job_id, **launched.columns())
        except StoreError as exc:
            with self._lock:
                self.error = f"the job runs but its record could not be saved: {exc}"
        self._begin(launched.execution)

    def launch_unrecorded(self) -> Launched | None:
        """Start the job's execution for a caller that records it (in the job's first write).

        The job stays QUEUED here until :meth:`launch_recorded`: its listeners hear that
        it was added before they hear it runs. None when it was stopped while queued.

        Raises
        ------
        JobmagicError
            When it was already started.
        """
        with self._lock:
            return self._launch_execution(None)

    def launch_recorded(self, launched: Launched) -> None:
        """The store holds ``launched.columns()``: the job runs (or it failed to start)."""
        if launched.execution is None:
            with self._lock:
                self._launched = self._ending = True
            end = (JobState.FAILED, None, launched.failure, launched.started_at, None)
            self._recorded(end, None)
            return
        with self._lock:
            self._running(launched.execution, launched.started_at)
        self._begin(launched.execution)

    def _launch_execution(self, extra_env: Mapping[str, str] | None) -> Launched | None:
        """Have the executor start the job (lock held); None when it was stopped first."""
        if self._stopped_while_queued is not None and not self._launched:
            return None
        if self._launched or self._state is not JobState.QUEUED:
            raise JobmagicError(f"job {self.job_id} was already started")
        self._launched = True
        self._queue_reason = None
        try:
            spec = self.spec
            if extra_env:
                spec = dataclasses.replace(spec, env={**spec.env, **extra_env})
            execution = self._executor.launch(self.job_id, spec, self.log_path)
        except LaunchError as exc:
            return Launched(None, time.time(), str(exc))
        except Exception as exc:  # noqa: BLE001 - a job that cannot start ends FAILED
            _log.exception("jobmagic could not start job %s", self.job_id)
            return Launched(None, time.time(), f"could not start: {exc}")
        self._execution = execution  # a stop from now on reaches it
        return Launched(execution, time.time())

    def wait_in_queue(self, reason: str | None) -> None:
        """The queue says why the job cannot start yet (None: for a slot of its group)."""
        with self._lock:
            if self._state is not JobState.QUEUED or reason == self._queue_reason:
                return
            self._queue_reason = reason
        self._on_change()

    @property
    def queue_reason(self) -> str | None:
        """Why it has not started yet, while it waits in the queue (None otherwise)."""
        reason = self._queue_reason
        if reason is None and self._state is JobState.QUEUED and self._describe_wait:
            return self._describe_wait()
        return reason

    def never_start(self, reason: str) -> None:
        """QUEUED -> FAILED without running (a job it waits for failed): ``reason``."""
        with self._lock:
            if self._launched or self._state is not JobState.QUEUED:
                return
            self._launched = True
            self._queue_reason = None
        self._finish(JobState.FAILED, None, reason)

    def adopt(self, execution: Execution, started_at: float | None) -> None:
        """Take over a running execution a dead kernel started (QUEUED -> RUNNING)."""
        with self._lock:
            self._launched = True
            self._running(execution, started_at)
        self._begin(execution)

    def _running(self, execution: Execution, started_at: float | None) -> None:
        """QUEUED -> RUNNING on ``execution`` (lock held)."""
        self._execution = execution
        self.containment = execution.containment
        self._state = check_transition(self._state, JobState.RUNNING)
        self.pid = execution.pid
        self.started_at = started_at
        self._changed.notify_all()

    def _begin(self, execution: Execution) -> None:
        """The job runs: feed its output, watch for its end, arm its timeout."""
        # The feed hears of the start before the end can be noticed: the exit watch
        # comes after, and a job that is gone already is reported at once.
        self._feed.started()
        execution.on_detail(functools.partial(self._on_detail, execution))
        execution.on_exit(self._watcher, self._on_exit)
        if self.spec.timeout is not None:
            self._arm_timeout(self.spec.timeout)
        self._on_change()

    def _on_detail(self, execution: Execution, detail: str | None) -> None:
        """The backend's word on the running job changed: keep it, and its fuller ref."""
        with self._lock:
            if not self._state.is_active:
                return
            self.detail = detail
        try:
            self._store.update(self.job_id, detail=detail, backend_ref=execution.ref)
        except StoreError as exc:
            _log.warning("jobmagic: job %s: cannot record %r: %s", self.job_id, detail, exc)
        self._on_change()

    def live_usage(self) -> Usage | None:
        """What the running (or paused) job uses now, from its backend; None otherwise."""
        with self._lock:
            execution = self._execution if self._state.is_active else None
        return execution.usage() if execution is not None else None

    # -- pausing -------------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """RUNNING -> PAUSED (the whole job held still), or PAUSED -> RUNNING.

        Raises
        ------
        JobmagicError
            When the job is queued or has ended.
        StoreError
            When the move cannot be recorded (the job is left as it was).
        """
        with self._lock:
            check_pausable(self.job_id, self._state, self.spec.group)
            execution = self._execution
        assert execution is not None  # RUNNING or PAUSED: it was launched
        pause_and_record(self._store, self.job_id, execution, paused)
        record = self._store.get(self.job_id)
        if record is not None:
            self.note_paused(record.state, record.paused_at, record.paused_for)

    def note_paused(self, state: JobState, paused_at: float | None, paused_for: float) -> None:
        """Take the store's word on whether the job is paused (someone may have paused it).

        A timeout counts running time only: it is held while the job is paused.
        """
        with self._lock:
            if not (self._state.is_active and state.is_active):
                return
            self.paused_at, self.paused_for = paused_at, paused_for
            if state is self._state:
                return
            self._state = check_transition(self._state, state)
            self._changed.notify_all()
            timer, self._timeout = self._timeout, None
            left = None
            if state is JobState.RUNNING and self.spec.timeout is not None:
                ran = (time.time() - (self.started_at or time.time())) - paused_for
                left = max(0.0, self.spec.timeout - ran)
        if timer is not None:
            timer.cancel()
        if left is not None:
            self._arm_timeout(left)
        self._on_change()

    def _arm_timeout(self, seconds: float) -> None:
        timer = self._watcher.call_later(seconds, self._on_timeout)
        with self._lock:
            if self._state is not JobState.RUNNING:
                timer.cancel()  # it ended or was paused meanwhile
            else:
                if self._timeout is not None:
                    self._timeout.cancel()
                self._timeout = timer

    # -- stopping ------------------------------------------------------------------------
    def stop(self, by: str, timeout: float | None, wait: bool, recorded: bool = False) -> None:
        """Stop the whole job; see :meth:`jobmagic.Worker.stop` (which checks ``timeout``).

        ``recorded``: the caller has recorded the request in the store already (a
        ``stop_all`` records all of them in one transaction).
        """
        with self._lock:
            if recorded:
                self._stop_recorded = True
            if self._state.is_finished:
                return
            queued = (
                self._state is JobState.QUEUED
                and not self._launched
                and self._stopped_while_queued is None
            )
            if queued:
                self._stopped_while_queued = by
            if self._stop is None and self._execution is not None:
                # Made at the first stop: most jobs end by themselves.
                self._stop = StopPolicy(
                    self._execution, self._watcher, self._default_grace, self._record_stop
                )
            stop = self._stop
        if stop is not None:
            stop.request(by, timeout)
        if queued:
            self._record_stop(by, None)
            self._finish(JobState.STOPPED, None, None)
        # A listener or done callback runs on the watcher thread, which must stay free to
        # see the job end: from there, stop() asks and returns.
        if wait and threading.current_thread() is not self._watcher.thread:
            self.wait(None)

    def _record_stop(self, by: str, grace: float | None) -> None:
        """Record who asked the job to stop (a timeout's, on the writer thread)."""
        with self._lock:
            if self._stop_recorded:
                return
            self._stop_recorded = True
        if threading.current_thread() is self._watcher.thread and self._ends.call(
            functools.partial(self._write_stop, by, grace)
        ):
            return
        self._write_stop(by, grace)

    def _write_stop(self, by: str, grace: float | None) -> None:
        with contextlib.suppress(StoreError):
            self._store.request_stop(self.job_id, by, grace)

    def _on_timeout(self) -> None:
        self.stop("timeout", None, wait=False)
