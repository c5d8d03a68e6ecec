"""How a job is stopped, whoever asks: ask it to end, give it a grace period, then force.

The owning kernel, another kernel and the Jupyter server all stop a job with one
``StopPolicy`` on the job's execution, so a job ends the same way whatever button was
pressed: the first request records who asked and terminates the whole job; whatever is
left when the grace period is over is killed. A later request may shorten the grace
period, never lengthen it.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .base import Cancellable, Execution, Executor, Reactor


class StopPolicy:
    """The stop of one execution.

    Parameters
    ----------
    execution:
        What to stop.
    reactor:
        Keeps the grace-period timer.
    default_grace:
        Returns the grace period (seconds) of a first request that names none.
    record_request:
        Called once, with who asked ("kernel", "ui", "timeout", "cli") and the grace
        period in seconds (None: no kill follows), before the job is signalled, so that
        whoever sees the job end knows it was stopped. How the request is recorded (the
        job store) is the caller's; the job is terminated even when recording raises.
    """

    def __init__(
        self,
        execution: Execution,
        reactor: Reactor,
        default_grace: Callable[[], float],
        record_request: Callable[[str, float | None], None],
    ) -> None:
        self._execution = execution
        self._reactor = reactor
        self._default_grace = default_grace
        self._record_request = record_request
        # Guards every field below: requests come from any thread, the timer fires on the
        # reactor's.
        self._lock = threading.Lock()
        self._requested_by: str | None = None
        self._deadline = math.inf  # time.monotonic() at which what is left gets killed
        self._timer: Cancellable | None = None
        self._ended = False

    @property
    def requested_by(self) -> str | None:
        """Who asked first, or None while nobody has."""
        with self._lock:
            return self._requested_by

    def request(self, by: str, grace: float | None = None) -> bool:
        """Ask the job to stop, killing what is left after ``grace`` seconds.

        ``grace`` None means ``default_grace()`` for the first request and "no change"
        for a later one. Returns True for the first request (the one that terminated the
        job).
        """
        with self._lock:
            if self._ended:
                return False
            first = self._requested_by is None
            if first:
                self._requested_by = by
                if grace is None:
                    grace = self._default_grace()
            deadline = math.inf if grace is None else time.monotonic() + grace
            if grace is not None and deadline < self._deadline:
                # Only ever shorter: the earliest deadline anyone asked for wins.
                self._deadline = deadline
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._reactor.call_later(grace, self._grace_over)
        if first:
            try:
                self._record_request(by, grace)
            finally:
                self._execution.terminate()  # a record that failed must not save the job
        return first

    def ended(self) -> None:
        """The job has ended: drop the timer. Later requests do nothing."""
        with self._lock:
            self._ended = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _grace_over(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._timer = None
        self._execution.kill()


class Stops:
    """The stops one process makes of jobs it does not own (other kernels', orphans).

    Each job gets an execution attached from its stored reference and a ``StopPolicy``;
    a second request for the same job joins the first. The caller hears when the job has
    ended (``ended``), to finish its record if nobody else will.

    Parameters
    ----------
    reactor:
        Watches the jobs' exits and keeps their grace timers.
    default_grace:
        Returns the grace period of a request that names none, in seconds.
    record_request:
        ``record_request(job_id, by, grace)``: record who asked and the grace period
        (seconds; None: not known), before the job is signalled.
    ended:
        ``ended(job_id)``: called from the reactor once the job has ended (or at once,
        when it had ended already).
    """

    def __init__(
        self,
        reactor: Reactor,
        default_grace: Callable[[], float],
        record_request: Callable[[int, str, float | None], None],
        ended: Callable[[int], None],
    ) -> None:
        self._reactor = reactor
        self._default_grace = default_grace
        self._record_request = record_request
        self._ended = ended
        # Guards _pending: stops are asked for from any thread, exits arrive on the reactor.
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Execution, StopPolicy, threading.Event]] = {}

    @property
    def pending(self) -> int:
        """How many stopped jobs have not ended yet."""
        with self._lock:
            return len(self._pending)

    def stop(
        self,
        job_id: int,
        executor: Executor,
        ref: Mapping[str, Any] | None,
        by: str,
        grace: float | None = None,
    ) -> threading.Event:
        """Stop job ``job_id``, whose execution ``executor`` finds from ``ref``.

        Returns an event that is set once the job has ended and ``ended(job_id)`` ran:
        at once for a job that had ended, else after its grace period at the latest.
        """
        with self._lock:
            pending = self._pending.get(job_id)
        if pending is not None:
            pending[1].request(by, grace)
            return pending[2]
        execution = executor.attach(ref)
        if execution is None:
            # Gone already: only its record may need finishing.
            self._record_request(job_id, by, None)
            self._ended(job_id)
            done = threading.Event()
            done.set()
            return done
        policy = StopPolicy(
            execution,
            self._reactor,
            self._default_grace,
            functools.partial(self._record_request, job_id),
        )
        done = threading.Event()
        with self._lock:
            if job_id in self._pending:  # another thread got there first
                execution.close()
                pending = self._pending[job_id]
            else:
                self._pending[job_id] = (execution, policy, done)
        if pending is not None:
            pending[1].request(by, grace)
            return pending[2]
        execution.on_exit(self._reactor, functools.partial(self._exited, job_id))
        policy.request(by, grace)
        return done

    def kill_all(self) -> None:
        """End every pending stop now (SIGKILL): nobody will be there to wait for them."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for execution, policy, done in pending:
            policy.ended()
            execution.kill()
            execution.close()
            done.set()

    def _exited(self, job_id: int) -> None:
        with self._lock:
            pending = self._pending.pop(job_id, None)
        if pending is None:
            return
        execution, policy, done = pending
        policy.ended()
        execution.close()
        try:
            self._ended(job_id)
        finally:
            done.set()
