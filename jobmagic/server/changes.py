"""The change feed: the store's revision, looked at whenever the store may have changed.

The version is the store's revision (``jobmagic.store.revisions``): SQLite triggers move
it at every change of a job, whoever writes, so it survives server restarts and means
the same to every server of one store (``JobStore.generation`` tells stores apart).
Kernels write the store from other processes; the server learns that they did from the
kernel (inotify on ``jobs.sqlite``, its WAL and ``jobs.changed``), not by asking, then
reads the revision.

The feed's state (the version, the waiters, the watches) lives on the event loop; every
store call it makes runs on the server's store thread (``store_thread.py``), and a
version moves only once the store call that saw the change has returned, so whoever
reads the store after a change woke it sees that change.

Some changes write nothing to a job's row: a kernel dies (its jobs become orphaned), a
queued job's place in its group moves. Each look works those out again and touches the
jobs whose JSON changed (``derived.py``), so that they, too, have a revision. The feed
watches the owners of unfinished jobs through pidfds, and the executions of running jobs
whose owner is gone through their backends (a live owner records its jobs' ends itself),
and looks again (reconciling first) when one ends. Nothing runs
while nothing changes: no timers, no polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from inotify_simple import flags

from jobmagic.backends.base import Execution
from jobmagic.backends.registry import Executors
from jobmagic.core.process_identity import same_process
from jobmagic.core.state import JobState
from jobmagic.errors import StoreError
from jobmagic.store import revisions
from jobmagic.store.job_store import JobStore
from jobmagic.store.reconcile import reconcile
from jobmagic.store.records import JobRecord

from .coalesced import CoalescedPass
from .derived import UNFINISHED_OWNERS, DerivedFields, Owner
from .file_events import FileEvents
from .process_exits import ProcessExits
from .reactor import LoopReactor
from .store_thread import StoreThread

# Writes to the database land in the WAL; a checkpoint writes the main file; every
# writer opens and closes the store's "changed" file once its commit is visible
# (IN_CLOSE_WRITE).
_DB_EVENTS = (
    flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.ATTRIB
)


class ChangeFeed:
    """The store's revision, kept current by inotify and pidfd events.

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
    ``version`` is the store's revision at the last look: every change of a job (its
    row, or what ``derived.py`` works out) moves it, and nothing else does. Two stores
    (a store reset, another job home) may have the same revision: clients compare
    ``store.generation`` too.
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
        # The store's revision at the last look (0 before the first look).
        self._version = 0
        self._looked = False
        self._derived = DerivedFields()
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
        # (pid, start) of a kernel that owns unfinished jobs -> cancels the pidfd watch on
        # it: one per kernel, however many jobs it has queued.
        self._owner_watches: dict[Owner, Callable[[], None]] = {}
        # job id -> the job's execution, watched for its end.
        self._executions: dict[int, Execution] = {}
        # Running jobs whose watch could not be made (out of descriptors): while there
        # are any, each request reconciles.
        self._unwatched: set[int] = set()
        self._unwatch_files: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """The current change version (read ``refresh()`` first for an up-to-date one)."""
        return self._version

    def start(self, files: FileEvents, exits: ProcessExits, reactor: LoopReactor) -> None:
        """Begin watching the store's files and the unfinished jobs and their owners."""
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
        """Look at the store's revision (touching jobs whose derived fields changed).

        Returns the version once a look that began after the call has been made.
        """
        await self._refreshes.wait()
        return self._version

    async def reconcile(self) -> None:
        """Finish the records of jobs that ended unwatched (``store.reconcile``), then refresh.

        Returns once a reconcile that began after the call has ended.
        """
        await self._reconciles.wait()

    async def settled(self, *, version: bool = True) -> None:
        """Return once the store is up to date for a request made now.

        While the feed watches every running job and every kernel that owns jobs (after
        ``start``), a job that ended unrecorded is reconciled when its watch fires: a
        request then waits only for the watches and the reconcile under way, not for a
        reconcile of its own (one per request: a sidebar asking twenty times a second
        read every running job's process twenty times a second). Without the watches,
        it reconciles. ``version``: and ``self.version`` is up to date too (one look at
        the store, for a request that compares versions); a request that reads the
        store itself does without.
        """
        if self._exits is None or self._unwatched:
            await self.reconcile()
            return
        await self._process_watches.idle()
        await self._reconciles.idle()
        if version:
            await self.refresh()

    def reconcile_soon(self) -> None:
        """Ask for a reconcile from a callback, without waiting for it."""
        self._reconciles.soon()

    async def _refresh_pass(self) -> None:
        revision = await self.store_thread.run(self._look)
        if revision != self._version or not self._looked:
            self._looked = True
            self._version = revision
            self._changed()

    def _look(self) -> int:
        """The store's revision, once the jobs whose derived fields changed are touched.

        On the store thread.
        """
        try:
            self._derived.touch_changed(self.store)
        except StoreError as exc:
            # (Locked for a minute, or the disk is full.) The next look tries again; the
            # listing itself must not fail for it.
            self._log.warning("jobmagic: cannot record a change of unfinished jobs: %s", exc)
        return revisions.current(self.store)

    async def _reconcile_pass(self) -> None:
        await self.store_thread.run(reconcile, self.store, self._executors)
        await self.refresh()

    def bump(self) -> None:
        """Ask for a look at the store soon: this server has just changed a job.

        The store's triggers moved its revision with the write; the look (which every
        list request makes first as well) moves the version and wakes the waiters.
        """
        self._refreshes.soon()

    def _changed(self) -> None:
        """The version moved (or was read for the first time): wake waiters and listeners."""
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
        """Call ``listener()`` each time the version moves; returns the unsubscribe function.

        The first look at the store counts as a move (from "not known yet"): a listener
        subscribed before it hears of every version the feed ever has.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # -- ends that write nothing the server sees ---------------------------------------------
    async def _watch_processes(self) -> None:
        """Watch every kernel that owns unfinished jobs, and the running jobs of none.

        A live kernel records its jobs' ends itself, and its death is watched: only a job
        whose kernel is gone needs its own watch (nobody else will see it end). Those
        are found at the pass its kernel's death asks for.
        """
        if self._exits is None or self._reactor is None:
            return
        orphans, owners = await self.store_thread.run(_orphans_and_owners, self.store)
        orphaned = {r.id: r for r in orphans}
        # A job that ended since that read is attached to and found gone: reconciled.
        for owner in [o for o in self._owner_watches if o not in owners]:
            self._owner_watches.pop(owner)()
        for job_id in [i for i in self._executions if i not in orphaned]:
            self._executions.pop(job_id).close()
        self._unwatched &= orphaned.keys()
        gone = False
        for record in orphaned.values():
            if record.id not in self._executions:
                gone |= self._watch_execution(record, self._reactor)
        # A kernel of queued jobs too: its death orphans them and moves others' places.
        for owner, alive in owners.items():
            if alive and owner not in self._owner_watches:
                gone |= self._watch_owner(owner, self._exits)
        if gone:
            self._reconciles.soon()  # gone already: its record may need finishing

    def _watch_execution(self, record: JobRecord, reactor: LoopReactor) -> bool:
        """Watch a running job's execution for its end; True when it needs a reconcile."""
        executor = self._executors.get(record.backend)
        if executor is None:
            return False  # a backend this server does not have: its owner records the end
        try:
            execution = executor.attach(record.backend_ref)
        except OSError as exc:
            # Out of descriptors: this end is noticed by the requests' reconciles.
            self._log.warning("jobmagic: cannot watch job %s: %s", record.id, exc)
            self._unwatched.add(record.id)
            return False
        self._unwatched.discard(record.id)
        if execution is None:
            # Ended already: its owner records that, unless the owner is gone too.
            return not same_process(record.owner_pid, record.owner_start)
        self._executions[record.id] = execution
        execution.on_exit(reactor, self._ended_callback(record))
        return False

    def _watch_owner(self, owner: Owner, exits: ProcessExits) -> bool:
        """Watch a kernel that owns unfinished jobs; True when it is gone already."""
        try:
            cancel = exits.watch(*owner, self._owner_gone_callback(owner))
        except OSError as exc:
            self._log.warning("jobmagic: cannot watch the kernel with pid %s: %s", owner[0], exc)
            return False
        if cancel is None:
            return True
        self._owner_watches[owner] = cancel
        return False

    def _ended_callback(self, record: JobRecord) -> Callable[[], None]:
        owner = (record.owner_pid, record.owner_start)

        def ended() -> None:
            execution = self._executions.pop(record.id, None)
            if execution is not None:
                execution.close()
            # A live owner records the end itself (reconcile leaves its jobs alone); if it
            # dies first, its own watch asks for the reconcile.
            if not same_process(*owner):
                self._reconciles.soon()

        return ended

    def _owner_gone_callback(self, owner: Owner) -> Callable[[], None]:
        def gone() -> None:
            self._owner_watches.pop(owner, None)
            # Its jobs are orphaned now: the look after the reconcile touches them, and
            # those still running are watched from now on.
            self._reconciles.soon()
            self._process_watches.soon()

        return gone


def _orphans_and_owners(store: JobStore) -> tuple[list[JobRecord], dict[Owner, bool]]:
    """The running (and paused) jobs whose owner is gone, and which owners are alive.

    The owners are those of every unfinished job. On the store thread. Of the other jobs
    only their owners are read: the running jobs of live kernels are many at times, and
    the queued ones more (10,000 in a full group).
    """
    rows = store.read(UNFINISHED_OWNERS)
    owners: dict[Owner, bool] = {(pid, start): same_process(pid, start) for pid, start in rows}
    if all(owners.values()):
        return [], owners
    running = store.list(states=[JobState.RUNNING, JobState.PAUSED])
    # An owner that came with a commit after the read above is alive: it just wrote.
    return [r for r in running if not owners.get((r.owner_pid, r.owner_start), True)], owners
