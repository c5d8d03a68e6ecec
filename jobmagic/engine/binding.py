"""What ties a ``Worker`` to its job once a service holds it: ``JobBinding``.

A Worker is bound once, by the ``WorkerService`` that adds it (or that shows another
process's job through it), and reads everything about its job through the binding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError

from .foreign import ForeignJob
from .lifecycle import JobLifecycle
from .output_feed import OutputFeed
from .usage import UsageMeter


class JobFacts(Protocol):
    """Where a job's state is read: its lifecycle, or the record of another's job."""

    @property
    def state(self) -> JobState:
        """Where the job is in its life."""
        ...

    @property
    def exit_code(self) -> int | None:
        """Its exit code, or None."""
        ...

    @property
    def error(self) -> str | None:
        """What went wrong, in one line, or None."""
        ...

    @property
    def pid(self) -> int | None:
        """Its leader's pid, or None."""
        ...

    @property
    def started_at(self) -> float | None:
        """When it started (epoch seconds), or None."""
        ...

    @property
    def ended_at(self) -> float | None:
        """When it ended (epoch seconds), or None."""
        ...

    @property
    def queue_reason(self) -> str | None:
        """Why it waits in the queue, or None."""
        ...

    @property
    def detail(self) -> str | None:
        """What its backend says of it while it runs ("waiting for the Ray cluster"), or None."""
        ...

    @property
    def paused_at(self) -> float | None:
        """When the pause under way began (epoch seconds), or None."""
        ...

    @property
    def containment(self) -> str | None:
        """What holds it ("cgroup v1"), once it runs; None before."""
        ...

    @property
    def paused_for(self) -> float:
        """Seconds of the pauses that are over."""
        ...


@dataclasses.dataclass(frozen=True)
class JobBinding:
    """A Worker's job in a service: exactly one of ``lifecycle`` and ``foreign`` is set.

    Attributes
    ----------
    job_id, log_path:
        The job's id in the store and its log file.
    feed:
        Its output's readers and handlers.
    parent_logger:
        The service's logger: the parent of the job's logger.
    lifecycle:
        The job's state machine, when this kernel owns the job.
    foreign:
        The store's view of the job, when another process owns it (or it is history).
    submit:
        Hands an owned job to the service's scheduler, which launches it when admitted;
        None once there is nothing to start.
    restart:
        Starts the job again as a new job of the service (``WorkerService.restart``).
    pause:
        ``pause(job_id, paused)``: pauses or resumes it (``WorkerService.pause``).
    usage:
        Reads what it uses while it runs (``Worker.usage``).
    """

    job_id: int
    log_path: Path
    feed: OutputFeed
    parent_logger: logging.Logger
    lifecycle: JobLifecycle | None = None
    foreign: ForeignJob | None = None
    submit: Callable[[], None] | None = None
    restart: Callable[[int], Any] | None = None
    pause: Callable[[int, bool], None] | None = None
    usage: UsageMeter | None = None

    @property
    def facts(self) -> JobFacts:
        """Where the job's state is read now."""
        if self.lifecycle is not None:
            return self.lifecycle
        assert self.foreign is not None
        return self.foreign.record


class _Service(Protocol):
    # Any, not Worker: the worker module imports this one.
    def add(self, worker: Any) -> Any: ...


#: Makes the kernel's service for a Worker started before anyone added it; set by
#: ``jobmagic.engine.default`` (the service depends on the worker, not the other way).
_default_service: Callable[[], _Service] | None = None


def set_default_service(provider: Callable[[], _Service]) -> None:
    """Name what gives a Worker started on its own its service (``get_service``)."""
    global _default_service
    _default_service = provider


def default_service() -> _Service:
    """The service a Worker started on its own joins.

    Raises
    ------
    JobmagicError
        When no kernel service was set up (``jobmagic.engine.default`` not imported).
    """
    if _default_service is None:
        raise JobmagicError("add the Worker to a WorkerService first: svc.add(worker)")
    return _default_service()
