"""The backends jobmagic has, by the name a job's spec and record give them.

Every process that deals with jobs (a kernel, the Jupyter server, the command line) keeps
one ``Executors`` per job home and looks a job's backend up in it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from jobmagic.errors import UnknownBackend

from .base import Executor

#: Every backend's name, in the order they are offered.
BACKENDS = ("local", "ray")


def create_executor(name: str, home: Path) -> Executor:
    """A new executor of backend ``name`` for the job home ``home``.

    Raises
    ------
    UnknownBackend
        When jobmagic has no backend called ``name``.
    """
    if name == "local":
        from .local.process import LocalExecutor

        return LocalExecutor(home)
    if name == "ray":
        from .ray.executor import RayExecutor

        return RayExecutor(home)
    raise UnknownBackend(f"unknown backend {name!r}; jobmagic has: {', '.join(BACKENDS)}")


class Executors(Mapping[str, Executor]):
    """Every backend's executor for the job home ``home``, made on first use.

    As a mapping it holds every backend jobmagic has (``reconcile`` looks records up in
    it); :meth:`require` is the lookup that explains an unknown name.
    """

    def __init__(self, home: Path) -> None:
        self._home = home
        # Guards _made: jobs are started and reconciled from several threads.
        self._lock = threading.Lock()
        self._made: dict[str, Executor] = {}

    def require(self, backend: str) -> Executor:
        """The executor of ``backend``.

        Raises
        ------
        UnknownBackend
            When jobmagic has no such backend.
        """
        with self._lock:
            executor = self._made.get(backend)
            if executor is None:
                executor = self._made[backend] = create_executor(backend, self._home)
            return executor

    def close(self) -> None:
        """Release what the executors hold (the local one's spawner exits after its jobs)."""
        with self._lock:
            made = list(self._made.values())
        for executor in made:
            close = getattr(executor, "close", None)
            if close is not None:
                close()

    def __getitem__(self, backend: str) -> Executor:
        if backend not in BACKENDS:
            raise KeyError(backend)
        return self.require(backend)

    def __iter__(self) -> Iterator[str]:
        return iter(BACKENDS)

    def __len__(self) -> int:
        return len(BACKENDS)
