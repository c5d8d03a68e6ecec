"""``Worker``: the public face of one job, whoever owns it.

A Worker holds its :class:`~jobmagic.core.spec.JobSpec` and, once a ``WorkerService``
holds it, a :class:`~jobmagic.engine.binding.JobBinding`: the job's state machine when
this kernel owns it, or a view of the store when another process does, and its output
feed. Every method is safe to call from any thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Generic, TypeVar, Unpack, cast, overload

from jobmagic.core.limits import Limits, Usage
from jobmagic.core.spec import JobOptions, JobSpec
from jobmagic.core.state import JobState, run_seconds
from jobmagic.errors import JobmagicError

from .binding import JobBinding, JobFacts, default_service
from .lifecycle import JobLifecycle
from .worker_output import WorkerOutput

T = TypeVar("T")


class _Delegated(Generic[T]):
    """A read-only Worker attribute: the same-named attribute of ``source(worker)``.

    ``source`` returning None (a Worker not added to a service yet) gives ``default``.
    """

    def __init__(self, source: Callable[[Worker], object | None], default: T, doc: str) -> None:
        self._source = source
        self._default = default
        self.__doc__ = doc
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, worker: None, owner: type) -> _Delegated[T]: ...
    @overload
    def __get__(self, worker: Worker, owner: type) -> T: ...
    def __get__(self, worker: Worker | None, owner: type) -> T | _Delegated[T]:
        if worker is None:
            return self
        source = self._source(worker)
        if source is None:
            return self._default
        return cast(T, getattr(source, self._name))


def _spec(worker: Worker) -> JobSpec:
    return worker.spec


def _facts(worker: Worker) -> JobFacts | None:
    binding = worker.binding
    return binding.facts if binding is not None else None


class Worker(WorkerOutput):
    r"""One job: a shell command run in the background, its output in a log file.

    Create it with :meth:`WorkerService.start`, or build it and hand it to
    :meth:`WorkerService.add`, then call :meth:`start` (the original two-step design;
    ``start()`` alone adds it to the kernel's service).

    Parameters
    ----------
    command:
        A shell command line, run as ``shell -c command``.
    logger:
        Where output records go while handlers listen; ``None`` means a child of the
        service's logger named after the job id.
    **options:
        ``name``, ``cwd``, ``env``, ``timeout``, ``pty``, ``detach``, ``shell``,
        ``backend``: see :class:`jobmagic.core.spec.JobSpec`.
    """

    command = _Delegated[str](_spec, "", "The shell command line.")
    name = _Delegated[str | None](_spec, None, "The job's alias, or None.")
    cwd = _Delegated[str | None](_spec, None, "Its working directory; None means the kernel's.")
    timeout = _Delegated[float | None](_spec, None, "Seconds after which it is stopped, or None.")
    pty = _Delegated[bool](_spec, False, "Whether it runs under a pseudo-terminal.")
    detach = _Delegated[bool](_spec, False, "Whether it keeps running when its kernel stops.")
    group = _Delegated[str](_spec, "default", "The queue group it waits and runs in.")
    priority = _Delegated[int](_spec, 0, "Its priority in its group (higher starts first).")
    after = _Delegated[tuple[int, ...]](_spec, (), "Ids of jobs that must succeed before it.")
    limits = _Delegated[Limits](_spec, Limits(), "The resource limits it runs under.")

    state = _Delegated(_facts, JobState.QUEUED, "The job's :class:`JobState`.")
    exit_code = _Delegated[int | None](_facts, None, "The exit code; -N: killed by signal N.")
    error = _Delegated[str | None](_facts, None, "One line a person can act on, or None.")
    pid = _Delegated[int | None](_facts, None, "The pid of the job's group leader (its wrapper).")
    started_at = _Delegated[float | None](_facts, None, "When it started, in epoch seconds.")
    ended_at = _Delegated[float | None](_facts, None, "When it ended, in epoch seconds, or None.")
    containment = _Delegated[str | None](
        _facts,
        None,
        'What holds it and enforces its limits: "cgroup v1", "cgroup v2", "none" (with'
        " best effort: which limits were dropped); None until it runs.",
    )
    queue_reason = _Delegated[str | None](
        _facts,
        None,
        'Why it has not started: "waiting for job 7", "2nd in group gpu (2/2 running)".',
    )
    detail = _Delegated[str | None](
        _facts,
        None,
        'What its backend says of it while it runs: "waiting for the Ray cluster" (Ray has'
        ' not started it yet), "lost contact with the Ray cluster at ..."; None: nothing.',
    )

    def __init__(
        self, command: str, logger: logging.Logger | None = None, **options: Unpack[JobOptions]
    ) -> None:
        self.spec = JobSpec.from_options(command, options)
        # Guards _binding and _logger (a Worker is bound once, by its service).
        self._lock = threading.Lock()
        self._binding: JobBinding | None = None
        self._logger = logger

    @classmethod
    def from_spec(cls, spec: JobSpec, logger: logging.Logger | None = None) -> Worker:
        """A Worker for ``spec``, not yet added to a service."""
        return cls(spec.command, logger, **spec.options())

    @property
    def binding(self) -> JobBinding | None:
        """What ties the Worker to its job in a service; None until it is added to one."""
        return self._binding

    def bind(self, binding: JobBinding) -> None:
        """Tie the Worker to its job; called once, by the service that holds it."""
        with self._lock:
            if self._binding is not None:
                raise JobmagicError(f"job {self._binding.job_id} already belongs to a service")
            self._binding = binding

    # -- where it stands ---------------------------------------------------------------------
    @property
    def id(self) -> int | None:
        """The store's id for this job (None until added to a service)."""
        binding = self._binding
        return binding.job_id if binding is not None else None

    @property
    def owned(self) -> bool:
        """True when this kernel started or adopted the job and so controls it."""
        binding = self._binding
        return binding is None or binding.lifecycle is not None

    @property
    def runtime(self) -> float | None:
        """Seconds it has run (so far), or None before it started."""
        facts = _facts(self)
        if facts is None:
            return None
        return run_seconds(
            facts.started_at, facts.ended_at, facts.paused_at, facts.paused_for, time.time()
        )

    @property
    def log_path(self) -> Path:
        """The log file holding the job's merged stdout and stderr."""
        return self._bound().log_path

    @property
    def orphaned(self) -> bool:
        """True for another kernel's RUNNING job whose kernel is dead (see ``adopt``)."""
        binding = self._binding
        return (
            binding is not None and binding.foreign is not None and binding.foreign.record.orphaned
        )

    @property
    def logger(self) -> logging.Logger:
        """The logger that receives this job's output records while handlers listen."""
        with self._lock:
            if self._logger is None:
                binding = self._binding
                if binding is None:
                    raise JobmagicError(
                        "the job has no logger until it is added to a WorkerService"
                    )
                # Not registered with logging (logging.getLogger keeps loggers forever): it
                # goes when the Worker goes. Records reach the service logger as its child.
                name = f"{binding.parent_logger.name}.{binding.job_id}"
                logger = logging.Logger(name)  # noqa: LOG001 - unregistered on purpose, see above
                logger.setLevel(logging.INFO)
                logger.parent = binding.parent_logger
                self._logger = logger
            return self._logger

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        code = self.exit_code
        ending = f" exit_code={code}" if code is not None else ""
        return f"<Worker {self.id}{label} {self.state.value}{ending}: {self.command!r}>"

    def usage(self) -> Usage | None:
        """What the job uses, or used; None before it runs or when it cannot be told.

        While it runs: memory now, peak memory (where its cgroup keeps it), CPU time and
        CPU percent since the previous reading (readings are at most a second apart; a
        reading within a second of the last gives the same figures). Once it has ended:
        its peak memory and CPU time in all. See :class:`jobmagic.core.limits.Usage`.
        """
        binding = self._binding
        if binding is None:
            return None
        facts = binding.facts
        if facts.state.is_finished:
            if binding.lifecycle is not None:
                return binding.lifecycle.final_usage
            return binding.foreign.refresh().usage if binding.foreign is not None else None
        if facts.state is JobState.QUEUED or binding.usage is None:
            return None
        return binding.usage.read()

    def _bound(self) -> JobBinding:
        binding = self._binding
        if binding is None:
            raise JobmagicError(
                "this Worker is not in a WorkerService yet: svc.add(worker) or worker.start()"
            )
        return binding

    def _owned_job(self) -> JobLifecycle | None:
        """The job's lifecycle (None for one that ended elsewhere).

        Raises
        ------
        JobmagicError
            For another process's job that still runs: only its owner follows it.
        """
        binding = self._bound()
        foreign = binding.foreign
        if foreign is not None and not foreign.refresh().state.is_finished:
            raise JobmagicError(foreign.not_owned_message())
        return binding.lifecycle

    # -- its life ----------------------------------------------------------------------------
    def start(self) -> Worker:
        """Launch the job, as soon as the service's scheduler admits it (now, for now).

        A command that cannot start leaves the job FAILED.

        Raises
        ------
        JobmagicError
            When the job was already started.
        """
        if self._binding is None:
            default_service().add(self)
        binding = self._bound()
        if binding.submit is None:
            raise JobmagicError(f"job {binding.job_id} was already started")
        binding.submit()
        return self

    def restart(self) -> Worker:
        """Start this ended job again as a new job; see :meth:`WorkerService.restart`."""
        binding = self._bound()
        if binding.restart is None:
            raise JobmagicError(f"job {binding.job_id} cannot be restarted here")
        restarted: Worker = binding.restart(binding.job_id)
        return restarted

    def pause(self) -> None:
        """Hold the running job still: SIGSTOP to its whole process group; PAUSED.

        Its runtime (and timeout) stop counting until :meth:`resume`; it keeps its place
        in its group and its devices. Another kernel's job is paused the same way.

        Raises
        ------
        JobmagicError
            When it is queued (pause its group instead) or has ended.
        """
        self._set_paused(True)

    def resume(self) -> None:
        """Let a paused job go on (SIGCONT to its process group); RUNNING again."""
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        binding = self._bound()
        if binding.pause is None:
            raise JobmagicError(f"job {binding.job_id} cannot be paused here")
        binding.pause(binding.job_id, paused)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the job ends; return its exit code.

        Parameters
        ----------
        timeout:
            Seconds to wait at most; ``None`` waits as long as it takes.

        Returns
        -------
        The exit code, or None when the timeout passed first (or no exit code is known).
        """
        lifecycle = self._owned_job()
        return self.exit_code if lifecycle is None else lifecycle.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> int | None:  # noqa: ASYNC109 - mirrors wait(timeout)
        """Like :meth:`wait`, without blocking the event loop (``await w.wait_async()``)."""
        lifecycle = self._owned_job()
        if lifecycle is not None and not await lifecycle.ended_async(timeout):
            return None
        return self.exit_code

    def __await__(self) -> Generator[Any, None, int | None]:
        return self.wait_async().__await__()

    def add_done_callback(self, callback: Callable[[Worker], None]) -> None:
        """Call ``callback(worker)`` once the job has ended (now, if it has already).

        It runs on the thread that saw the job end (often the service's watcher thread).
        """
        lifecycle = self._owned_job()
        if lifecycle is None or not lifecycle.add_done_callback(functools.partial(callback, self)):
            callback(self)

    def stop(self, timeout: float | None = None, wait: bool = True, *, by: str = "kernel") -> None:
        """Stop the whole job: SIGTERM to its process group, SIGKILL after ``timeout``.

        Idempotent, and safe from any thread while others wait or stream. A job that has
        already ended is left as it is. Another kernel's job, or one whose kernel is gone,
        is stopped with the same policy; with ``wait`` this returns once its end is
        recorded.

        Parameters
        ----------
        timeout:
            Seconds between SIGTERM and SIGKILL; ``None`` means the service's
            ``stop_timeout`` (5 s unless configured). A later stop may only shorten it.
        wait:
            Block until the job has ended.
        by:
            Who asks, as recorded in the store: "kernel", "ui" or "timeout".
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        binding = self._binding
        if binding is None:
            return
        if binding.foreign is not None:
            binding.foreign.stop(by, timeout, wait)
        elif binding.lifecycle is not None:
            binding.lifecycle.stop(by, timeout, wait)
