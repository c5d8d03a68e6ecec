"""A running job's live usage, read when someone shows it and at most once a second.

A reading is cheap (a few cgroup files, or ``/proc`` for a job without a cgroup) but
hundreds of jobs shown by a panel, a table and a status call at once must not multiply
it: a meter keeps its last reading for ``MIN_INTERVAL`` seconds and works out the CPU
rate between readings. Nothing here runs unless asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobmagic.core.limits import Usage

#: Seconds a reading is reused for.
MIN_INTERVAL = 1.0


class UsageMeter:
    """Live usage of one job from ``read`` (a backend's reading, no rate).

    Parameters
    ----------
    read:
        Returns what the job uses now, None once it has ended (or when unknown).
    started_at:
        Returns when the job started (the first CPU rate is worked out since then).
    """

    def __init__(
        self, read: Callable[[], Usage | None], started_at: Callable[[], float | None]
    ) -> None:
        self._read = read
        self._started_at = started_at
        # Guards the last reading (panels read from a widget thread, cells from another).
        self._lock = threading.Lock()
        self._last: Usage | None = None
        self._last_at: float | None = None  # time.time() of the last reading

    def read(self) -> Usage | None:
        """The job's usage now (a reading at most ``MIN_INTERVAL`` old), with CPU percent."""
        now = time.time()
        with self._lock:
            if self._last_at is not None and now - self._last_at < MIN_INTERVAL:
                return self._last
            previous = None
            if self._last is not None and self._last.cpu_seconds is not None:
                assert self._last_at is not None
                previous = (self._last_at, self._last.cpu_seconds)
            usage = self._read()
            if usage is not None:
                usage = usage.with_rate(previous, now, self._started_at())
            self._last, self._last_at = usage, now
            return usage
