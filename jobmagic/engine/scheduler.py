"""Admission: when a queued job may start.

Every job goes through the scheduler between being added and being launched. A job with
no ``after`` in a group without a limit starts at once (no queue pass, no extra write).
Any other job waits in the queue, which is shared by every kernel through the store: a
pass (``JobStore.admit``, the rule in ``store/queue.py``) decides in one transaction which
of this kernel's queued jobs start now, which never will (a job they wait for failed) and
why the others wait. Passes run when a job is queued, and whenever the store's queue
epoch moved (any kernel's job ended, a group's limit changed): the service's watch on the
store's change file tells the scheduler (``store_changed``). Nothing polls.

A detached queued job whose owner is gone (and that needs no environment values, which
the store never keeps) is nobody's: any live kernel's pass may admit it, and the kernel
that does adopts and launches it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from jobmagic.backends.base import Execution, Executor
from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.errors import StoreError
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.queue import Admission

from .pools import gpu_environment
from .watcher import Watcher

_log = logging.getLogger("jobmagic")


class Admittable(Protocol):
    """A job the scheduler can start (a ``JobLifecycle``)."""

    job_id: int
    spec: JobSpec

    @property
    def state(self) -> JobState:
        """Where the job is."""
        ...

    def launch(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the job now (with ``extra_env`` added: the devices it was given)."""
        ...

    def wait_in_queue(self, reason: str | None) -> None:
        """Say why the job waits (None: for a slot of its group)."""
        ...

    def never_start(self, reason: str) -> None:
        """End the queued job FAILED, with ``reason``."""
        ...


class Scheduler:
    """The kernel's side of the shared queue. Thread-safe.

    Parameters
    ----------
    queue:
        The store's queue.
    watcher:
        Wakes the scheduler when the store changes (while anything is queued here).
    pools:
        Returns the GPU pool's devices and the named pools' capacities, read at each pass.
    executors, reconcile:
        The service's: a job that waits for a pool another's orphan holds needs that
        orphan's end to be seen (nobody records it), so the scheduler watches it.
    adopt:
        Makes an ownerless job this pass admitted (and adopted) one of the service's;
        returns it, ready to launch.
    """

    def __init__(
        self,
        queue: JobQueue,
        watcher: Watcher,
        *,
        pools: Callable[[], tuple[list[str], dict[str, int]]] = lambda: ([], {}),
        executors: Mapping[str, Executor] | None = None,
        reconcile: Callable[[], object] = lambda: None,
        adopt: Callable[[int], Admittable | None] = lambda _job_id: None,
    ) -> None:
        self._queue = queue
        self._watcher = watcher
        self._pools = pools
        self._executors = executors or {}
        self._reconcile = reconcile
        self._adopt = adopt
        self._orphans_watched: dict[int, Execution] = {}  # guarded by _lock
        self._epoch = -1  # the store's queue epoch at the last pass
        # Guards the four fields below and _orphans_watched; passes hold _pass so that two never
        # overlap (a job that ends during a pass, e.g. one that cannot start, runs a nested
        # one). What a pass does costs the jobs decided, not all the jobs queued: ten
        # thousand queued jobs must not slow each slot's handoff.
        self._lock = threading.Lock()
        self._pass = threading.RLock()
        self._queued: dict[int, Admittable] = {}
        self._pooled: set[int] = set()  # the queued jobs that want GPUs or pool units
        self._told: set[int] = set()  # the queued jobs last told a reason (not None)
        self._in_group: collections.Counter[str] = collections.Counter()  # queued, by group

    @property
    def queued(self) -> int:
        """How many of this kernel's jobs wait in the queue."""
        with self._lock:
            return len(self._queued)

    def submit(self, job: Admittable) -> None:
        """A job is ready to run: launch it now, or queue it until it is admitted."""
        spec = job.spec
        plain = not (spec.after or spec.gpus or spec.resources)
        if plain and self._queue.starts_at_once(spec.group):
            job.launch()
            return
        with self._lock:
            self._queued[job.job_id] = job
            self._in_group[spec.group] += 1
            if spec.gpus or spec.resources:
                self._pooled.add(job.job_id)
        # A plain job in a full group can only wait: joining the queue costs no pass
        # over it (a sweep of thousands enqueues at a flat cost per job).
        if not plain or self._queue.has_room(spec.group):
            self.run()
        else:
            self._watch_orphan_holders({spec.group})  # a dead kernel's job may hold the slot

    def withdraw(self, job_ids: Collection[int]) -> None:
        """These jobs have ended: those that ended queued (stopped, removed) are forgotten."""
        with self._lock:
            for job_id in job_ids:
                self._forget_locked(job_id)

    def _forget_locked(self, job_id: int) -> None:
        job = self._queued.pop(job_id, None)
        if job is not None:
            self._pooled.discard(job_id)
            self._told.discard(job_id)
            self._in_group[job.spec.group] -= 1
            if not self._in_group[job.spec.group]:
                del self._in_group[job.spec.group]

    def store_changed(self) -> None:
        """The store changed (watcher thread): run a pass if something may have freed up.

        Only when the store's queue epoch moved: a job ended, a limit changed.
        """
        try:
            if self._queue.epoch() != self._epoch:
                self.run()
        except StoreError as exc:
            _log.warning("jobmagic could not run the job queue: %s", exc)

    def run(self) -> None:
        """One pass of the queue for this kernel's queued jobs: start those admitted.

        Returns once the jobs admitted are launched, by this pass or by one that was
        under way on another thread.
        """
        with self._pass:
            with self._lock:
                mine = dict(self._queued)
                queued_in = dict(self._in_group)
                pooled = bool(self._pooled)
            self._epoch = self._queue.epoch()  # before the pass: a later change wakes us again
            if not mine and not self._queue.has_ownerless():
                return
            gpu_pool, capacity = self._pools()
            if pooled:
                # An orphan that held a device may have ended unseen: record it first.
                with contextlib.suppress(StoreError):
                    self._reconcile()
            admission = self._queue.admit(mine, gpu_pool, capacity)
            decided = {*admission.admitted, *admission.never, *admission.waiting}
            with self._lock:
                for job_id in [*admission.admitted, *admission.never]:
                    self._forget_locked(job_id)
                # Undecided: a slot of its full group, or its group is paused (worked out
                # when shown). Only those told a reason before need to hear of it.
                untold = self._told - decided
                self._told -= untold
                self._told |= {i for i in admission.waiting if i in mine}
                # A full group's jobs may not even have been read (see JobQueue.admit):
                # every job of ours that nothing was decided for waits for a slot of its
                # group. Such a group has more of our jobs than were decided in it.
                decided_in = collections.Counter(mine[i].spec.group for i in decided if i in mine)
            for job_id in admission.adopted:
                adopted = self._adopt(job_id)
                if adopted is not None:
                    mine[job_id] = adopted
            self._apply(admission, mine, untold)
            full_groups = {g for g, n in queued_in.items() if n > decided_in[g]}
            if (pooled and admission.waiting) or full_groups:
                self._watch_orphan_holders(full_groups)

    @staticmethod
    def _apply(
        admission: Admission, mine: Mapping[int, Admittable], untold: Collection[int]
    ) -> None:
        """Launch what was admitted, end what never starts, tell the rest why they wait.

        Only for this kernel's jobs: a pass also decides for jobs that are nobody's.
        ``untold``: jobs told a reason before that nothing was decided for this time.
        """
        for job_id in admission.admitted:
            devices = admission.devices.get(job_id)
            if job_id in mine:
                mine[job_id].launch(gpu_environment(devices) if devices else None)
        for job_id, reason in admission.never.items():
            if job_id in mine:
                mine[job_id].never_start(reason)
        for job_id, reason in admission.waiting.items():
            if job_id in mine:
                mine[job_id].wait_in_queue(reason)
        for job_id in untold:
            if job_id in mine:
                mine[job_id].wait_in_queue(None)

    def _watch_orphan_holders(self, groups: set[str]) -> None:
        """Run a pass when an orphan that holds devices, units or a slot we wait for ends."""
        ended_unseen = False
        for job_id, backend, ref in self._queue.orphan_holders(groups):
            with self._lock:
                if job_id in self._orphans_watched:
                    continue
            executor = self._executors.get(backend)
            execution = executor.attach(ref) if executor is not None else None
            if execution is None:
                # Gone since its record was read (its last processes were still dying
                # when its end was looked for): nobody else will record that.
                ended_unseen = ended_unseen or executor is not None
                continue
            with self._lock:
                duplicate = job_id in self._orphans_watched  # another thread got there first
                if not duplicate:
                    self._orphans_watched[job_id] = execution
            if duplicate:
                execution.close()
                continue
            execution.on_exit(self._watcher, functools.partial(self._orphan_ended, job_id))
        if ended_unseen:
            with contextlib.suppress(StoreError):
                if self._reconcile():  # ends were recorded: what they held is free now
                    self._watcher.call_later(0, self._pass_after_orphans)

    def _pass_after_orphans(self) -> None:
        try:
            self.run()
        except StoreError as exc:
            _log.warning("jobmagic could not run the job queue: %s", exc)

    def _orphan_ended(self, job_id: int) -> None:
        with self._lock:
            execution = self._orphans_watched.pop(job_id, None)
        if execution is not None:
            execution.close()
        # Its end is recorded by nobody: record it here, and what it held comes free.
        try:
            self._reconcile()
            self.run()
        except StoreError as exc:
            _log.warning("jobmagic could not run the job queue: %s", exc)

    def close(self) -> None:
        """Stop watching orphans (the service shuts down)."""
        with self._lock:
            watched, self._orphans_watched = list(self._orphans_watched.values()), {}
        for execution in watched:
            execution.close()
