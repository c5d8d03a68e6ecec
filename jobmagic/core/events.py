"""What listeners hear about jobs: one event per change."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

#: "added": a job appeared; "state": its state or details changed; "removed": it is gone.
EventKind = Literal["added", "state", "removed"]

JobT = TypeVar("JobT")


@dataclasses.dataclass(frozen=True)
class JobEvent(Generic[JobT]):
    """Something happened to a job: ``kind`` is "added", "state" or "removed".

    ``worker`` is the job it happened to (a :class:`jobmagic.Worker` for the events a
    ``WorkerService`` sends).
    """

    kind: EventKind
    worker: JobT


class Listeners(Generic[JobT]):
    """Who listens to a source of job events; thread-safe.

    Listeners run on whichever thread made the change and must return quickly; one that
    raises is logged and the others still hear the event.
    """

    def __init__(self) -> None:
        # Guards _listeners: listeners come and go, and events fire, from any thread.
        self._lock = threading.Lock()
        self._listeners: list[Callable[[JobEvent[JobT]], None]] = []

    def subscribe(self, listener: Callable[[JobEvent[JobT]], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns the unsubscriber."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def __len__(self) -> int:
        with self._lock:
            return len(self._listeners)

    def emit(self, kind: EventKind, worker: JobT) -> None:
        """Tell every listener that ``kind`` happened to ``worker``."""
        with self._lock:
            listeners = list(self._listeners)
        event = JobEvent(kind, worker)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logging.getLogger("jobmagic").exception("jobmagic event listener failed")
