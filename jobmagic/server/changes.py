"""The change feed: one version number that moves whenever any job record changes.

Kernels write the store from other processes; the server learns about it from the kernel
(inotify on ``jobs.sqlite`` and its WAL), not by asking. SQLite's ``PRAGMA data_version``
then says whether another connection committed; the server's own writes (``reconcile``,
``request_stop``) bump the version directly, since ``data_version`` ignores them.

Some changes write nothing the server could see: a kernel dies (its running jobs become
orphaned) or an orphaned job's wrapper exits. The feed watches the processes of running
jobs through pidfds for that, and reconciles when one exits. Nothing runs while nothing
changes: no timers, no polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from inotify_simple import flags

from jobmagic.state import JobState
from jobmagic.store import JobStore

from .file_events import FileEvents
from .process_exits import ProcessExits

# Writes to the database land in the WAL; a checkpoint writes the main file.
_DB_EVENTS = flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO | flags.DELETE
# The wrapper writes status/<id>.status when the command ends (a create, a write, a close).
_STATUS_EVENTS = flags.CLOSE_WRITE | flags.MOVED_TO


class ChangeFeed:
    """The store's change version, kept current by inotify and pidfd events.

    Parameters
    ----------
    store : JobStore
        The store to follow; all its calls happen on ``loop``'s thread.
    loop : asyncio.AbstractEventLoop
        The server's event loop.
    log : logging.Logger
        Where errors in change callbacks go.

    Notes
    -----
    ``version`` is an opaque integer: clients only compare it for equality. It starts at
    the server's start time in milliseconds, so a client holding a version from a previous
    server never mistakes it for the current one.
    """

    def __init__(self, store: JobStore, loop: asyncio.AbstractEventLoop, log: logging.Logger):
        self.store = store
        self._loop = loop
        self._log = log
        self._version = time.time_ns() // 1_000_000
        self._data_version = store.data_version()
        # Resolved (and replaced) on the next change; shared by every waiter, so a waiter
        # that gives up leaves nothing behind.
        self._next_change: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._files: FileEvents | None = None
        self._exits: ProcessExits | None = None
        # (job id, "job" or "owner") -> cancels the pidfd watch on that process.
        self._process_watches: dict[tuple[int, str], Callable[[], None]] = {}
        self._unwatch_files: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """The current change version (read ``refresh()`` first for an up-to-date one)."""
        return self._version

    def start(self, files: FileEvents, exits: ProcessExits) -> None:
        """Begin watching the store's files and the running jobs' processes."""
        self._files = files
        self._exits = exits
        db_names = {self.store.path.name, self.store.path.name + "-wal"}

        def on_home_event(name: str, mask: int) -> None:
            if name in db_names or mask & flags.Q_OVERFLOW:
                self.refresh()

        def on_status_event(_name: str, _mask: int) -> None:
            self.reconcile()

        self._unwatch_files = [
            files.watch(self.store.home, _DB_EVENTS, on_home_event),
            files.watch(self.store.status_dir, _STATUS_EVENTS, on_status_event),
        ]
        self.reconcile()
        self._watch_processes()

    def close(self) -> None:
        """Stop watching; wake every waiter. Idempotent."""
        for unwatch in self._unwatch_files:
            unwatch()
        self._unwatch_files = []
        for cancel in self._process_watches.values():
            cancel()
        self._process_watches.clear()
        self._listeners.clear()
        if self._next_change is not None and not self._next_change.done():
            self._next_change.set_result(None)

    # -- the version ---------------------------------------------------------------------
    def refresh(self) -> int:
        """Look at ``data_version``, move the version if another process committed."""
        data_version = self.store.data_version()
        if data_version != self._data_version:
            self._data_version = data_version
            self.bump()
        return self._version

    def reconcile(self) -> None:
        """Finish the records of jobs that ended unwatched (``JobStore.reconcile``)."""
        if self.store.reconcile():
            self.bump()
        self.refresh()

    def bump(self) -> None:
        """Record that something changed: move the version, wake waiters and listeners."""
        self._version += 1
        if self._next_change is not None and not self._next_change.done():
            self._next_change.set_result(None)
        self._next_change = None
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - one failing listener must not starve the rest
                self._log.exception("jobmagic: error in a change listener")
        self._watch_processes()

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

    # -- processes that end without writing anything the server sees ----------------------
    def _watch_processes(self) -> None:
        """Watch the wrapper and the owner of every running job; drop the other watches."""
        if self._exits is None:
            return
        wanted: dict[tuple[int, str], tuple[int | None, int | None]] = {}
        for record in self.store.list(states=[JobState.RUNNING]):
            wanted[(record.id, "job")] = (record.pid, record.pid_start)
            if record.owner_alive:
                wanted[(record.id, "owner")] = (record.owner_pid, record.owner_start)
        for key in list(self._process_watches):
            if key not in wanted:
                self._process_watches.pop(key)()
        for key, (pid, start) in wanted.items():
            if key in self._process_watches:
                continue
            try:
                cancel = self._exits.watch(pid, start, self._process_exited_callback(key))
            except OSError as exc:
                # Out of descriptors: this exit will be noticed at the next request instead.
                self._log.warning("jobmagic: cannot watch process %s: %s", pid, exc)
                continue
            if cancel is None:
                # Gone already: reconcile soon (not now: this may run inside bump()).
                self._loop.call_soon(self.reconcile)
            else:
                self._process_watches[key] = cancel

    def _process_exited_callback(self, key: tuple[int, str]) -> Callable[[], None]:
        def exited() -> None:
            self._process_watches.pop(key, None)
            if key[1] == "owner":
                # The job is orphaned now: its JSON changed though no record did.
                self.bump()
            self.reconcile()

        return exited
