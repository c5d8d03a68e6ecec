"""``GET jobs/{id}/usage``: what a job uses now, or used in all, read only when asked.

A running (or paused) job's figures come live from its backend's executor, at most one
reading per job a second however many pages ask; the CPU rate is worked out between a
job's readings, which the server keeps for a bounded number of jobs. Nothing here polls:
a job is read only when a request asks for it. An ended job answers with what its
record kept (peak memory and CPU seconds).
"""

from __future__ import annotations

import collections
import time

from jupyter_server.auth.decorator import authorized
from tornado import web

from jobmagic.backends.registry import Executors
from jobmagic.core.limits import Usage
from jobmagic.core.state import JobState
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import usage_json

from .handlers import JobmagicHandler

#: Seconds a job's reading is reused for: more requests than that read it no more often.
MIN_INTERVAL = 1.0
#: How many jobs' last readings are kept (the least recently read are forgotten first).
CAPACITY = 256

_LIVE = frozenset({JobState.RUNNING, JobState.PAUSED})


class UsageReadings:
    """The last usage reading of each job the server was asked about.

    Used from the server's event loop only (handlers run there), so it needs no lock.
    A forgotten job's next reading works out its CPU rate since the job's start.

    Parameters
    ----------
    capacity:
        How many jobs' readings are kept.
    min_interval:
        Seconds a reading is reused for.
    """

    def __init__(self, capacity: int = CAPACITY, min_interval: float = MIN_INTERVAL) -> None:
        self._capacity = capacity
        self._min_interval = min_interval
        # Job id -> (time.time() of the reading, the reading with its rate); oldest first.
        self._last: collections.OrderedDict[int, tuple[float, Usage]] = collections.OrderedDict()

    def read(self, record: JobRecord, executors: Executors) -> Usage | None:
        """What the running job of ``record`` uses now, with its CPU percent.

        None when its backend cannot tell (the job ended meanwhile, or the server lacks
        its backend).
        """
        now = time.time()
        last = self._last.get(record.id)
        if last is not None and 0 <= now - last[0] < self._min_interval:
            return last[1]
        executor = executors.get(record.backend)
        usage = executor.usage(record.backend_ref) if executor is not None else None
        if usage is None:
            self.forget(record.id)
            return None
        previous = None
        if last is not None and last[1].cpu_seconds is not None:
            previous = (last[0], last[1].cpu_seconds)
        usage = usage.with_rate(previous, now, record.started_at)
        self._last[record.id] = (now, usage)
        self._last.move_to_end(record.id)
        while len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return usage

    def forget(self, job_id: int) -> None:
        """Drop the job's reading (it ended, or was never read)."""
        self._last.pop(job_id, None)


class UsageHandler(JobmagicHandler):
    """``GET jobs/{id}/usage``: a job's memory and CPU use.

    ``{"memory", "peak_memory", "cpu_seconds", "cpu_percent", "running"}`` as
    ``wire.usage_json`` makes it (bytes, seconds, percent with 100 per busy core; null
    where unknown). While the job runs or is paused (``"running": true``) the figures
    are live, at most a second old; ``cpu_percent`` is its rate since the previous
    reading, or since its start for the first. Once it has ended (``"running": false``)
    they are what it used in all: ``peak_memory`` and ``cpu_seconds``, with ``memory`` and
    ``cpu_percent`` null. A queued job answers with every figure null.
    """

    def initialize(self, readings: UsageReadings) -> None:
        """Take the server's readings (one ``UsageReadings`` per server, from the routes)."""
        self.readings = readings

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """Read the job's usage."""
        record = await self.job(self.job_id(job_id))
        if record.state in _LIVE:
            usage = self.readings.read(record, self.jobmagic.executors)
            if usage is not None:
                self.finish_json(usage_json(usage, running=True))
                return
            # Gone between the record and the reading: answer as the record now says.
            record = await self.job(record.id)
        self.readings.forget(record.id)
        if record.state in _LIVE:  # still live, but its backend cannot tell
            self.finish_json(usage_json(None, running=True))
        else:
            self.finish_json(usage_json(record.usage, running=False))
