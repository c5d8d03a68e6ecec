"""Stopping a job from the UI, with the one stop policy every stopper uses.

The server is not the job's parent: it attaches to the job's execution through the job's
backend (which for local jobs checks the recorded start time, so a reused pid is never
signalled), records who asked, terminates the whole job and kills what is left after the
grace period. The wait for the exit is a pidfd on the event loop and the deadline a loop
timer: nothing polls. The request is written to the store on the store thread, before the
job is signalled, so that whoever records the job's end knows it was stopped.
"""

from __future__ import annotations

import logging

from jobmagic.backends.registry import Executors
from jobmagic.backends.stop_policy import Stops
from jobmagic.errors import UnknownBackend
from jobmagic.store.records import JobRecord

from .changes import ChangeFeed
from .reactor import LoopReactor


class JobStopper:
    """Stops jobs on behalf of the server's clients.

    Parameters
    ----------
    feed:
        The store's change feed (and its store thread, which records stop requests;
        it reconciles after exits).
    executors:
        The server's executors, by backend.
    reactor:
        The server's event loop.
    grace:
        Seconds between terminate (SIGTERM) and kill (SIGKILL).
    log:
        Where stops are logged.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        executors: Executors,
        reactor: LoopReactor,
        grace: float,
        log: logging.Logger,
    ) -> None:
        self._feed = feed
        self._executors = executors
        self._log = log
        self._grace = grace
        self._stops = Stops(reactor, lambda: grace, self._recorded_already, self._ended)

    async def stop(self, record: JobRecord, by: str = "ui") -> None:
        """Ask a job to stop; returns once the request is recorded and the job signalled.

        The job's record ends STOPPED once it has exited (written by its kernel, or by the
        reconcile here when the kernel is gone). A job of a backend this server lacks only
        gets the request recorded: a process that has its backend may act on it.

        Raises
        ------
        StoreError
            When the request cannot be recorded (the job is stopped all the same).
        """
        store = self._feed.store
        try:
            await self._feed.store_thread.run(store.request_stop, record.id, by, self._grace)
        finally:
            self._feed.bump()
            # Even when the request could not be recorded: that must not save the job.
            self._signal(record, by)

    def _signal(self, record: JobRecord, by: str) -> None:
        try:
            executor = self._executors.require(record.backend)
        except UnknownBackend:
            return
        self._log.info("jobmagic: stopping job %s (pid %s) for the %s", record.id, record.pid, by)
        self._stops.stop(record.id, executor, record.backend_ref, by)

    @property
    def pending(self) -> int:
        """How many stops are waiting for their job to exit."""
        return self._stops.pending

    def close(self) -> None:
        """Server shutdown: kill every job still being stopped (nobody will wait for it)."""
        self._stops.kill_all()

    def _recorded_already(self, _job_id: int, _by: str, _grace: float | None) -> None:
        # stop() wrote the request before it asked for the stop (a write may wait for the
        # store's lock, which the event loop must not).
        return

    def _ended(self, _job_id: int) -> None:
        # A job whose kernel is gone has nobody else to record its end.
        self._feed.reconcile_soon()
