"""A loop-lag probe: how late the server's event loop runs a timer, for the benchmarks.

Off unless ``$JOBMAGIC_LOOP_LAG_LOG`` names a file (see ``JobmagicServer.attach``). A
timer is asked for every ``INTERVAL`` seconds; each time it fires, one line
``<loop time> <lag>`` (seconds, the loop's clock being ``time.monotonic()``) is appended
to the file. A loop that a callback holds for 50 ms shows a lag of about 50 ms. It is the
one timer of the server extension, and only for measuring.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

#: The environment variable naming the file the probe appends to; unset, no probe runs.
LOOP_LAG_LOG_VAR = "JOBMAGIC_LOOP_LAG_LOG"
#: Seconds between the probe's timers.
INTERVAL = 0.01


class LoopLagProbe:
    """Appends how late each of its timers fired to a file, until closed.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop to measure; every method must be called from its thread.
    path : Path
        The file the ``<loop time> <lag>`` lines are appended to (created if missing).
    interval : float
        Seconds between timers.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, path: Path, interval: float = INTERVAL
    ) -> None:
        self._loop = loop
        self._interval = interval
        # Line-buffered: a reader sees each lag as soon as it is measured.
        self._file = path.open("a", buffering=1, encoding="ascii")
        self._due = loop.time() + interval
        self._timer: asyncio.TimerHandle | None = loop.call_later(interval, self._fired)

    @classmethod
    def from_environment(cls, loop: asyncio.AbstractEventLoop) -> LoopLagProbe | None:
        """The probe ``$JOBMAGIC_LOOP_LAG_LOG`` asks for; None when it is unset or empty."""
        path = os.environ.get(LOOP_LAG_LOG_VAR)
        return cls(loop, Path(path)) if path else None

    def _fired(self) -> None:
        now = self._loop.time()
        self._file.write(f"{now:.6f} {max(0.0, now - self._due):.6f}\n")
        self._due = now + self._interval
        self._timer = self._loop.call_later(self._interval, self._fired)

    def close(self) -> None:
        """Stop measuring and close the file; idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._file.close()
