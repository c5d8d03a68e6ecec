"""``WorkerService.stop_all``: every job of the kernel stopped at once.

A thousand jobs stop in well under a second: their stop requests are recorded in one
transaction, the signals go out from the watcher thread (which also handles the ends
they cause, so no signal waits for the GIL behind the end of the one before), and the
ends are recorded a round of the watcher at a time (``end_recorder.py``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from jobmagic.errors import StoreError
from jobmagic.store.job_store import JobStore

from .watcher import Watcher
from .worker import Worker


class Stopping:
    """The stopping part of ``WorkerService``. A mixin: it works on the service's jobs."""

    # What the mixin uses of the service (set by WorkerService.__init__).
    store: JobStore
    watcher: Watcher
    stop_timeout: float

    if TYPE_CHECKING:

        def list(self, all: bool = False) -> list[Worker]:
            """The service's ``list``."""
            ...

        @property
        def closed(self) -> bool:
            """The service's ``closed``."""
            ...

    def stop_all(self, timeout: float | None = None, *, include_detached: bool = True) -> None:
        """Stop every running job of this kernel, all at once, and wait for them to end."""
        running = [
            w for w in self.list() if not w.state.is_finished and (include_detached or not w.detach)
        ]
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        owned = [w.binding.lifecycle for w in running if w.binding and w.binding.lifecycle]
        recorded = False
        with contextlib.suppress(StoreError):  # else each stop records its own request
            self.store.request_stops(
                [lifecycle.job_id for lifecycle in owned],
                "kernel",
                self.stop_timeout if timeout is None else timeout,
            )
            recorded = True

        asked = threading.Event()

        def ask_all() -> None:
            try:
                for lifecycle in owned:
                    lifecycle.stop("kernel", timeout, wait=False, recorded=recorded)
            finally:
                asked.set()

        # The signals go out from the watcher thread, which also handles the ends they
        # cause: from this thread, each signal would wait for the GIL while the watcher
        # handles the ends of the ones before (a thousand waits of up to 5 ms).
        if threading.current_thread() is self.watcher.thread or self.closed:
            ask_all()
        else:
            self.watcher.call_later(0, ask_all)
            asked.wait()
        for worker in running:
            if worker.binding is None or worker.binding.lifecycle is None:
                worker.stop(timeout, wait=False)
        for worker in running:
            worker.wait()
