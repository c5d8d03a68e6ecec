"""The seam between jobmagic and what runs its jobs: ``Executor`` and ``Execution``.

An executor launches a :class:`~jobmagic.core.spec.JobSpec` and returns an execution,
the handle on one running job: stop it politely or by force, hear when it has ended, read
how it ended. The store keeps the execution's ``ref`` (JSON values only its backend
reads), so that another process can ``attach`` to the same execution later: another
kernel, the Jupyter server, the command line. Whatever the backend, the job's output is
appended to the job's log file on this machine, so every reader of output works unchanged.

Waiting is done by whoever holds the execution, on its own event loop: a ``Reactor``
(the kernel's watcher thread, the server's asyncio loop) that watches descriptors and
keeps timers. Nothing here polls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from jobmagic.core.limits import Usage
from jobmagic.core.outcome import Outcome
from jobmagic.core.spec import JobSpec

Callback = Callable[[], None]


class Cancellable(Protocol):
    """A registration that can be undone (a timer, a descriptor watch)."""

    def cancel(self) -> None:
        """Undo it; a no-op once it has fired or was cancelled."""
        ...


class Reactor(Protocol):
    """The event loop an execution waits on; callbacks run on the loop's thread."""

    @property
    def iteration(self) -> int:
        """Counts the loop's dispatch rounds: callbacks run in one round see one value."""
        ...

    def watch_readable(self, fd: int, callback: Callback) -> Cancellable:
        """Call ``callback`` once, when ``fd`` becomes readable (a pidfd: its process exited)."""
        ...

    def call_later(self, delay: float, callback: Callback) -> Cancellable:
        """Call ``callback`` once, after ``delay`` seconds."""
        ...


class Execution(Protocol):
    """One running job as its backend runs it.

    Methods may be called from any thread; ``on_exit`` callbacks run on the reactor.
    """

    @property
    def ref(self) -> dict[str, Any]:
        """The reference the store keeps (JSON values) for ``Executor.attach`` and ``probe``."""
        ...

    @property
    def pid(self) -> int | None:
        """The process id people know the job by, where the backend has one."""
        ...

    @property
    def containment(self) -> str | None:
        """What holds the job and enforces its limits, for its record.

        ``cgroup v1``, ``none``; with best effort, which limits were dropped. None:
        nothing to say.
        """
        ...

    def usage(self) -> Usage | None:
        """What the job uses now (memory, CPU time; no rate), None when not known."""
        ...

    def terminate(self) -> None:
        """Ask the whole job to stop (the local backend: SIGTERM to its process group)."""
        ...

    def kill(self) -> None:
        """End whatever is left of the job now (the local backend: SIGKILL)."""
        ...

    def pause(self) -> None:
        """Hold the whole job still (the local backend: SIGSTOP to its process group).

        Raises
        ------
        JobmagicError
            When this backend cannot pause its jobs.
        """
        ...

    def resume(self) -> None:
        """Let a paused job go on (the local backend: SIGCONT to its process group)."""
        ...

    def on_detail(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(text)`` now and whenever what the backend says of the job changes.

        ``text``: one line such as "waiting for the Ray cluster" or "lost contact with the
        Ray cluster at ..."; None: nothing to say (it runs). Called from any thread, in
        order, never after the job ended. The local backend has nothing to say: it never
        calls.
        """
        ...

    def on_exit(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` once the whole job has ended (once, from ``reactor``).

        After a ``terminate()``, "the whole job" includes what the job started: programs
        still shutting down gracefully keep the rest of their grace period.
        """
        ...

    def outcome(self) -> Outcome:
        """How it ended; call once ``on_exit`` has fired (and ``release`` after it)."""
        ...

    def release(self) -> None:
        """Free what the ended job still holds on this machine (local: its cgroup).

        Call after ``outcome``, on any thread: apart from it, so that the thread that
        sees jobs end need not wait for this (a cgroup's removal takes ~0.1 ms, a
        thousand of them in one ``stop_all``). Idempotent.

        Raises
        ------
        OSError
            What was held could not be freed (it stays).
        """
        ...

    def close(self) -> None:
        """Release the handle without stopping the job (it goes on running)."""
        ...


class Executor(Protocol):
    """A backend: starts jobs and finds them again."""

    name: str
    #: True when its jobs take GPUs and units from this machine's pools.
    pooled: bool

    def prepared(self, spec: JobSpec) -> JobSpec:
        """``spec`` as it is recorded: defaults this backend fills in made explicit.

        Raises
        ------
        ValueError
            Saying in one line what is wrong (an address that is not one).
        """
        ...

    def check(self, spec: JobSpec) -> None:
        """Refuse, before anything is recorded, a spec this backend can never run.

        Raises
        ------
        ValueError
            Saying in one line what is wrong (a command longer than the system runs).
        """
        ...

    def launch(self, job_id: int, spec: JobSpec, log_path: Path) -> Execution:
        """Start job ``job_id`` of ``spec``, its output appended to ``log_path``.

        Raises
        ------
        jobmagic.errors.LaunchError
            When it cannot start; the message says why in one line.
        """
        ...

    def attach(self, ref: Mapping[str, Any] | None) -> Execution | None:
        """The execution named by ``ref`` if it still runs; None once it has ended."""
        ...

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """How the execution ``ref`` ended, or None while it runs (it is not disturbed)."""
        ...

    def usage(self, ref: Mapping[str, Any] | None) -> Usage | None:
        """What the running execution ``ref`` uses now (no rate), None once it ended."""
        ...

    def discard(self, job_id: int, ref: Mapping[str, Any] | None) -> None:
        """Delete what the backend kept for a finished job that is being removed."""
        ...
