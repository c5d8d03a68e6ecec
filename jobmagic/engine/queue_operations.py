"""The queue's side of ``WorkerService``: groups, pause and resume, pools, restarts."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from typing import TYPE_CHECKING, NamedTuple

from jobmagic.backends.registry import Executors
from jobmagic.core.spec import JobSpec, check_group_name
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError, JobNotFound, StoreError
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import pause_attached, pause_epoch, set_group_paused
from jobmagic.store.records import JobRecord

from .pools import GPUS_ENV, discover_gpus
from .scheduler import Scheduler
from .views import not_found_message
from .worker import Worker

_log = logging.getLogger("jobmagic")


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


class QueueOperations:
    """The queue's part of ``WorkerService``: groups, pauses, pools and restarts.

    A mixin: it works on the service's own store, queue, scheduler and jobs.
    """

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    queue: JobQueue
    scheduler: Scheduler
    executors: Executors
    gpus: list[str] | None
    resources: dict[str, int]
    _discovered_gpus: list[str] | None
    _lock: threading.RLock
    _workers: dict[int, Worker]
    _pause_epoch: int
    _data_version: int | None

    if TYPE_CHECKING:

        def get(self, id_or_name: int | str) -> Worker:
            """The service's ``get``."""
            ...

        def _add_and_start(self, worker: Worker, *, restarted_from: int | None = None) -> Worker:
            """The service's ``add(worker).start()`` in one store write."""
            ...

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
        spec = spec_here(record, "restart it again")
        if detach is not None:
            spec = dataclasses.replace(spec, detach=detach)
        return self._add_and_start(Worker.from_spec(spec), restarted_from=record.id)

    def restart_failed(self, group: str | None = None) -> list[Worker]:
        """Restart every FAILED job (of ``group``) that was not restarted before."""
        records = self.store.list(states=[JobState.FAILED])
        done = {r.restarted_from for r in self.store.list() if r.restarted_from is not None}
        return [
            self.restart(r.id)
            for r in records
            if r.id not in done and (group is None or r.group_name == group)
        ]

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
        executors = self.executors
        pause_attached(
            self.store, record, lambda r: executors.require(r.backend).attach(r.backend_ref), paused
        )

    def _on_store_change(self) -> None:
        """The store changed (end writer thread): the queue may move, a job may be paused.

        Not when the change was this process's own (its connection's ``data_version``
        did not move): a thousand job ends of its own would cost a thousand queue and
        pause reads. What its own ends free is looked at once per round instead
        (``_tidy_after_ends``).
        """
        try:
            version = self.store.data_version()
        except StoreError as exc:
            _log.warning("jobmagic could not read the job store: %s", exc)
            return
        if version == self._data_version:
            return
        self._data_version = version
        self.scheduler.store_changed()
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
            if not active:
                return
            # One read for all of them, not one per job.
            records = {r.id: r for r in self.store.list(states=[JobState.RUNNING, JobState.PAUSED])}
            for lifecycle in active:
                record = records.get(lifecycle.job_id)
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


def spec_here(record: JobRecord, then: str) -> JobSpec:
    """``record``'s spec with its environment variables' values from this kernel's."""
    missing = [key for key in record.env_keys if key not in os.environ]
    if missing:
        raise JobmagicError(
            f"job {record.id} was given environment variables this kernel does not have "
            f"({', '.join(missing)}); set them (os.environ) and {then}"
        )
    return dataclasses.replace(record.spec(), env={k: os.environ[k] for k in record.env_keys})
