"""The change feed: one version number that moves whenever any job record changes.

Kernels write the store from other processes; the server learns about it from the kernel
(inotify on ``jobs.sqlite`` and its WAL), not by asking. SQLite's ``PRAGMA data_version``
then says whether another connection committed; the server's own writes (``reconcile``,
``request_stop``) bump the version directly, since ``data_version`` ignores them.

The feed's state (the version, the waiters, the watches) lives on the event loop; every
store call it makes runs on the server's store thread (``store_thread.py``), and a
version moves only once the store call that saw the change has returned, so whoever
reads the store after a change woke it sees that change.

Some changes write nothing the server could see: a kernel dies (its running jobs become
orphaned) or an orphaned job ends. The feed watches the owners of running jobs through
pidfds, and the jobs' executions through their backends, and reconciles when one ends.
Nothing runs while nothing changes: no timers, no polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from inotify_simple import flags

from jobmagic.backends.base import Execution
from jobmagic.backends.registry import Executors
from jobmagic.core.state import JobState
from jobmagic.store.job_store import JobStore
from jobmagic.store.reconcile import reconcile
from jobmagic.store.records import JobRecord

from .coalesced import CoalescedPass
from .file_events import FileEvents
from .process_exits import ProcessExits
from .reactor import LoopReactor
from .store_thread import StoreThread

# Writes to the database land in the WAL; a checkpoint writes the main file; every
# writer touches the store's "changed" file once its commit is visible (IN_ATTRIB).
_DB_EVENTS = (
    flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.ATTRIB
)


class ChangeFeed:
    """The store's change version, kept current by inotify and pidfd events.

    Parameters
    ----------
    store : JobStore
        The store to follow.
    executors : Executors
        The server's executors, by backend (to reconcile, and to watch executions).
    store_thread : StoreThread
        Where every call of ``store`` runs.
    loop : asyncio.AbstractEventLoop
        The server's event loop; every method must be called from its thread.
    log : logging.Logger
        Where errors in change callbacks go.

    Notes
    -----
    ``version`` is an opaque integer: clients only compare it for equality. It starts at
    the server's start time in milliseconds, so a client holding a version from a previous
    server never mistakes it for the current one.
    """

    def __init__(
        self,
        store: JobStore,
        executors: Executors,
        store_thread: StoreThread,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
    ) -> None:
        self.store = store
        self.store_thread = store_thread
        self._executors = executors
        self._loop = loop
        self._log = log
        self._version = time.time_ns() // 1_000_000
        # The store's data_version at the last look; None before the first.
        self._data_version: int | None = None
        self._refreshes = CoalescedPass(loop, self._refresh_pass, log, "change feed's refresh")
        self._reconciles = CoalescedPass(loop, self._reconcile_pass, log, "reconcile")
        self._process_watches = CoalescedPass(
            loop, self._watch_processes, log, "watch of running jobs"
        )
        # Resolved (and replaced) on the next change; shared by every waiter, so a waiter
        # that gives up leaves nothing behind.
        self._next_change: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._files: FileEvents | None = None
        self._exits: ProcessExits | None = None
        self._reactor: LoopReactor | None = None
        # job id -> cancels the pidfd watch on the job's owner.
        self._owner_watches: dict[int, Callable[[], None]] = {}
        # job id -> the job's execution, watched for its end.
        self._executions: dict[int, Execution] = {}
        self._unwatch_files: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """The current change version (read ``refresh()`` first for an up-to-date one)."""
        return self._version

    def start(self, files: FileEvents, exits: ProcessExits, reactor: LoopReactor) -> None:
        """Begin watching the store's files and the running jobs and their owners."""
        self._files = files
        self._exits = exits
        self._reactor = reactor
        db_names = {
            self.store.path.name,
            self.store.path.name + "-wal",
            self.store.changed_path.name,
        }

        def on_home_event(name: str, mask: int) -> None:
            if name in db_names or mask & flags.Q_OVERFLOW:
                self._refreshes.soon()

        self._unwatch_files = [files.watch(self.store.home, _DB_EVENTS, on_home_event)]
        self._reconciles.soon()
        self._process_watches.soon()

    def close(self) -> None:
        """Stop watching; wake every waiter. Idempotent."""
        for passes in (self._refreshes, self._reconciles, self._process_watches):
            passes.close()
        for unwatch in self._unwatch_files:
            unwatch()
        self._unwatch_files = []
        for cancel in self._owner_watches.values():
            cancel()
        self._owner_watches.clear()
        for execution in self._executions.values():
            execution.close()
        self._executions.clear()
        self._listeners.clear()
        if self._next_change is not None and not self._next_change.done():
            self._next_change.set_result(None)

    # -- the version ---------------------------------------------------------------------
    async def refresh(self) -> int:
        """Look at ``data_version``, move the version if another process committed.

        Returns the version once a look that began after the call has been made.
        """
        await self._refreshes.wait()
        return self._version

    async def reconcile(self) -> None:
        """Finish the records of jobs that ended unwatched (``store.reconcile``), then refresh.

        Returns once a reconcile that began after the call has ended.
        """
        await self._reconciles.wait()

    def reconcile_soon(self) -> None:
        """Ask for a reconcile from a callback, without waiting for it."""
        self._reconciles.soon()

    async def _refresh_pass(self) -> None:
        data_version = await self.store_thread.run(self.store.data_version)
        if self._data_version is None:
            self._data_version = data_version  # the first look: nothing to compare with
        elif data_version != self._data_version:
            self._data_version = data_version
            self.bump()

    async def _reconcile_pass(self) -> None:
        if await self.store_thread.run(reconcile, self.store, self._executors):
            self.bump()
        await self.refresh()

    def bump(self) -> None:
        """Record that something changed: move the version, wake waiters and listeners.

        Call it once the change is in the store (or, for a change the store cannot show,
        such as a kernel's death, once it happened): the waiters read the store next.
        """
        self._version += 1
        if self._next_change is not None and not self._next_change.done():
            self._next_change.set_result(None)
        self._next_change = None
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - one failing listener must not starve the rest
                self._log.exception("jobmagic: error in a change listener")
        self._process_watches.soon()

    def next_change(self) -> asyncio.Future[None]:
        """Return a future resolved at the next change. Never cancel it: others share it."""
        if self._next_change is None or self._next_change.done():
            self._next_change = self._loop.create_future()
        return self._next_change

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after each change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # -- ends that write nothing the server sees ---------------------------------------------
    async def _watch_processes(self) -> None:
        """Watch every running job and its owner; drop the watches of the others."""
        if self._exits is None or self._reactor is None:
            return
        records = await self.store_thread.run(
            self.store.list, states=[JobState.RUNNING, JobState.PAUSED]
        )
        running = {r.id: r for r in records}
        # A job that ended since that read is attached to and found gone: reconciled.
        for job_id in [i for i in self._owner_watches if i not in running]:
            self._owner_watches.pop(job_id)()
        for job_id in [i for i in self._executions if i not in running]:
            self._executions.pop(job_id).close()
        gone = False
        for record in running.values():
            if record.id not in self._executions:
                gone |= self._watch_execution(record, self._reactor)
            if record.id not in self._owner_watches and record.owner_alive:
                gone |= self._watch_owner(record, self._exits)
        if gone:
            self._reconciles.soon()  # gone already: its record may need finishing

    def _watch_execution(self, record: JobRecord, reactor: LoopReactor) -> bool:
        """Watch a running job's execution for its end; True when it has ended already."""
        executor = self._executors.get(record.backend)
        if executor is None:
            return False  # a backend this server does not have: its owner records the end
        try:
            execution = executor.attach(record.backend_ref)
        except OSError as exc:
            # Out of descriptors: this end will be noticed at the next request.
            self._log.warning("jobmagic: cannot watch job %s: %s", record.id, exc)
            return False
        if execution is None:
            return True
        self._executions[record.id] = execution
        execution.on_exit(reactor, self._ended_callback(record.id))
        return False

    def _watch_owner(self, record: JobRecord, exits: ProcessExits) -> bool:
        """Watch the kernel that owns a running job; True when it is gone already."""
        try:
            cancel = exits.watch(
                record.owner_pid, record.owner_start, self._owner_gone_callback(record.id)
            )
        except OSError as exc:
            self._log.warning("jobmagic: cannot watch the kernel of job %s: %s", record.id, exc)
            return False
        if cancel is None:
            return True
        self._owner_watches[record.id] = cancel
        return False

    def _ended_callback(self, job_id: int) -> Callable[[], None]:
        def ended() -> None:
            execution = self._executions.pop(job_id, None)
            if execution is not None:
                execution.close()
            self._reconciles.soon()

        return ended

    def _owner_gone_callback(self, job_id: int) -> Callable[[], None]:
        def gone() -> None:
            self._owner_watches.pop(job_id, None)
            # The job is orphaned now: its JSON changed though no record did.
            self.bump()
            self._reconciles.soon()

        return gone
