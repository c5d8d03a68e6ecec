"""Stopping a job from the UI: SIGTERM to its process group, SIGKILL after a grace period.

The server is not the job's parent, so it names the job by (pid, start time) and signals
only through ``procinfo.signal_job``, which refuses a pid that now belongs to another
process. The wait for the exit is a pidfd on the event loop and the deadline a loop timer:
nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable

from jobmagic import procinfo
from jobmagic.store import JobRecord

from .changes import ChangeFeed
from .process_exits import ProcessExits


@dataclasses.dataclass
class _PendingStop:
    record: JobRecord
    cancel_watch: Callable[[], None]
    deadline: asyncio.TimerHandle
    leader_gone: bool = False
    grace_over: bool = False


class JobStopper:
    """Stops jobs on behalf of the server's clients.

    Parameters
    ----------
    feed : ChangeFeed
        The store's change feed (records stop requests, reconciles after exits).
    exits : ProcessExits
        The pidfd watcher.
    loop : asyncio.AbstractEventLoop
        The server's event loop (for the SIGKILL deadline).
    grace : float
        Seconds between SIGTERM and SIGKILL.
    log : logging.Logger
        Where stops and escalations are logged.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        exits: ProcessExits,
        loop: asyncio.AbstractEventLoop,
        grace: float,
        log: logging.Logger,
    ) -> None:
        self._feed = feed
        self._exits = exits
        self._loop = loop
        self._grace = grace
        self._log = log
        # job id -> its stop in progress; a second request for the same job joins it.
        self._pending: dict[int, _PendingStop] = {}

    def stop(self, record: JobRecord, by: str = "ui") -> None:
        """Ask a job to stop: record who asked, SIGTERM its group, arm the SIGKILL.

        Returns at once; the job's record ends STOPPED when the job has exited (written by
        its kernel, or by ``reconcile`` here when the kernel is gone).
        """
        self._feed.store.request_stop(record.id, by=by)
        self._feed.bump()
        if record.id in self._pending:
            return
        try:
            cancel_watch = self._exits.watch(
                record.pid, record.pid_start, lambda: self._leader_exited(record.id)
            )
        except OSError as exc:
            # Out of descriptors: stop it anyway; only the exit goes unnoticed (the deadline
            # still SIGKILLs it, and the next request reconciles its record).
            self._log.warning("jobmagic: cannot watch job %s for its exit: %s", record.id, exc)
            cancel_watch = _nothing
        if cancel_watch is None:
            # Already gone (or never started): only the record may need finishing.
            self._feed.reconcile()
            return
        self._log.info("jobmagic: stopping job %s (pid %s) for the %s", record.id, record.pid, by)
        procinfo.signal_job(record.pid, record.pid_start, record.pgid, signal.SIGTERM)
        deadline = self._loop.call_later(self._grace, self._kill, record.id)
        self._pending[record.id] = _PendingStop(record, cancel_watch, deadline)

    @property
    def pending(self) -> int:
        """How many stops are waiting for their job to exit."""
        return len(self._pending)

    def close(self) -> None:
        """Server shutdown: SIGKILL every job still being stopped (nobody will wait for it)."""
        for job_id in list(self._pending):
            self._kill(job_id)
            self._done(job_id)

    def _kill(self, job_id: int) -> None:
        """The grace period is over: SIGKILL whatever is left of the job's group."""
        stop = self._pending.get(job_id)
        if stop is None:
            return
        stop.grace_over = True
        record = stop.record
        if not stop.leader_gone and procinfo.signal_job(
            record.pid, record.pid_start, record.pgid, signal.SIGKILL
        ):
            self._log.warning(
                "jobmagic: job %s ignored SIGTERM for %g s; sent SIGKILL", job_id, self._grace
            )
            if stop.cancel_watch is not _nothing:
                return  # the leader's exit (pidfd) ends this stop
        _kill_leftovers(record)
        self._done(job_id)

    def _leader_exited(self, job_id: int) -> None:
        stop = self._pending.get(job_id)
        if stop is None:
            return
        stop.leader_gone = True
        # A job whose kernel is gone has nobody else to record its end.
        self._feed.reconcile()
        if stop.grace_over:
            _kill_leftovers(stop.record)
        elif stop.record.pgid is not None and procinfo.group_alive(stop.record.pgid):
            # The command's children may still be shutting down after SIGTERM: they keep
            # their grace period, and the deadline SIGKILLs what is left (as the owning
            # kernel does for the stops it makes).
            return
        self._done(job_id)

    def _done(self, job_id: int) -> None:
        stop = self._pending.pop(job_id, None)
        if stop is not None:
            stop.deadline.cancel()
            stop.cancel_watch()


def _nothing() -> None:
    pass


def _kill_leftovers(record: JobRecord) -> None:
    """SIGKILL the job's process group if it is still the job's."""
    if record.pgid is not None and _group_is_still_the_jobs(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pgid, signal.SIGKILL)


def _group_is_still_the_jobs(record: JobRecord) -> bool:
    """True when the job's process group is alive and its id was not reused.

    A group id stays allocated while any member of the group lives, so a live group with
    this id is the job's, unless every member ended and a new process took the id as its
    own pid since; that process would own the id now, which is checked here.
    """
    pgid = record.pgid
    if pgid is None or not procinfo.group_alive(pgid):
        return False
    if pgid == record.pid:
        leader_start = procinfo.process_start_time(pgid)
        return leader_start is None or leader_start == record.pid_start
    return True
