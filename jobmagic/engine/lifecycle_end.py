"""The end of a job's life (``JobLifecycle``'s last part): its end seen, recorded, told.

The execution's end is seen on the watcher thread; the end writer records it (in one
transaction with the other ends of that round of the watcher); then the job's state
moves, and its output feed, its waiters, its done callbacks and the service hear of it,
in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from jobmagic.backends.base import Cancellable, Execution
from jobmagic.backends.stop_policy import StopPolicy
from jobmagic.core.limits import Usage
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState, check_transition, final_state
from jobmagic.errors import JobmagicError
from jobmagic.store.job_ends import End

from .end_recorder import EndRecorder
from .output_feed import OutputFeed
from .watcher import Watcher

_log = logging.getLogger("jobmagic")


class Ending:
    """The ending and waiting part of ``JobLifecycle``. A mixin: it works on the job's state.

    Every field is ``JobLifecycle``'s (set by its ``__init__``, guarded by its ``_lock``).
    """

    job_id: int
    spec: JobSpec
    exit_code: int | None
    error: str | None
    ended_at: float | None
    paused_at: float | None
    paused_for: float
    final_usage: Usage | None
    _ends: EndRecorder
    _watcher: Watcher
    _feed: OutputFeed
    _on_change: Callable[[], None]
    _on_end: Callable[[], None]
    _lock: threading.RLock
    _changed: threading.Condition
    _state: JobState
    _ending: bool
    _execution: Execution | None
    _stop: StopPolicy | None
    _timeout: Cancellable | None
    _done_callbacks: list[Callable[[], None]]

    # -- ending ----------------------------------------------------------------------------
    def _on_exit(self) -> None:
        """The execution has ended (watcher thread): read how, record the end.

        When nobody here asked it to stop, someone else may have (the Jobs sidebar,
        another kernel): the store says so, read on the end writer's thread.
        """
        execution = self._execution
        assert execution is not None
        outcome = execution.outcome()
        stop = self._stop
        stopped_here = stop.requested_by if stop is not None else None
        ended_at = time.time()

        def settle(stopped_by: str | None) -> End:
            # On the end writer's thread when the watcher's saw the end: the watcher goes
            # on to the next job's end meanwhile. Still before anyone hears of this one.
            _release(execution, self.job_id)
            state, error = final_state(
                outcome.exit_code, stopped_here or stopped_by, self.spec.timeout
            )
            if state is JobState.FAILED and outcome.reason is not None:
                error = outcome.reason
            if outcome.note is not None:
                error = f"{error}; {outcome.note}" if error else outcome.note
            return (state, outcome.exit_code, error, ended_at, outcome.usage)

        with self._lock:
            ending, self._ending = self._ending, True
        if ending:
            _release(execution, self.job_id)
            return
        self._ends.settle(self.job_id, settle, self._recorded, ask_store=stopped_here is None)

    def _finish(
        self,
        state: JobState,
        exit_code: int | None,
        error: str | None,
        usage: Usage | None = None,
    ) -> None:
        with self._lock:
            if self._ending:
                return  # it ended another way first (e.g. stopped while its launch failed)
            self._ending = True
        end = (state, exit_code, error, time.time(), usage)
        self._ends.record(self.job_id, end, self._recorded)

    def _recorded(self, end: End, failure: str | None) -> None:
        """The end is in the store (or ``failure`` says why not): everyone hears of it."""
        state, exit_code, error, ended_at, usage = end
        if failure is not None:
            error = f"{error}; " if error else ""
            error += f"the job's end could not be recorded: {failure}"
        # Handlers get the last output before anyone hears that the job has ended.
        self._feed.emit_final()
        with self._lock:
            self._state = check_transition(self._state, state)
            self.exit_code = exit_code
            if error is not None or self.error is None:
                self.error = error
            self.ended_at = ended_at
            self.final_usage = usage
            if self.paused_at is not None:  # as the store folds it in (see finish)
                self.paused_for += max(0.0, ended_at - self.paused_at)
                self.paused_at = None
            timeout, self._timeout = self._timeout, None
            stop = self._stop
            self._changed.notify_all()
            callbacks, self._done_callbacks = self._done_callbacks, []
        if timeout is not None:
            timeout.cancel()
        if stop is not None:
            stop.ended()
        self._feed.ended()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one broken callback must not starve the others
                _log.exception("job done callback failed")
        self._on_change()
        self._on_end()

    # -- waiting ---------------------------------------------------------------------------
    def wait(self, timeout: float | None) -> int | None:
        """Block until the job has ended (at most ``timeout`` seconds); its exit code."""
        with self._lock:
            if not self._state.is_finished and threading.current_thread() is self._watcher.thread:
                raise JobmagicError(
                    "wait() in a jobmagic event listener would block the thread that sees "
                    "jobs end; use add_done_callback() instead"
                )
            if timeout is not None and timeout > threading.TIMEOUT_MAX:
                timeout = None  # longer than a lock can wait: as long as it takes
            self._changed.wait_for(lambda: self._state.is_finished, timeout)
            return self.exit_code

    async def ended_async(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - mirrors wait(timeout)
        """Wait for the job's end without blocking the event loop; False on timeout."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def finished() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(resolve)

        if not self.add_done_callback(finished):
            return True
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return False
        finally:
            self.remove_done_callback(finished)
        return True

    def add_done_callback(self, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` once the job has ended; False (not called) if it had already."""
        with self._lock:
            if self._state.is_finished:
                return False
            self._done_callbacks.append(callback)
            return True

    def remove_done_callback(self, callback: Callable[[], None]) -> None:
        """Forget a callback given to :meth:`add_done_callback`."""
        with self._lock, contextlib.suppress(ValueError):
            self._done_callbacks.remove(callback)


def _release(execution: Execution, job_id: int) -> None:
    """Free what the ended job held; a failure is logged (its end is recorded anyway)."""
    try:
        execution.release()
    except OSError as exc:
        _log.warning("jobmagic could not free what job %s held: %s", job_id, exc)
