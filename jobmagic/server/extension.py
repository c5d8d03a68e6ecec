"""The server extension's shared state and settings: one object per Jupyter server."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from traitlets import Float
from traitlets.config import LoggingConfigurable

from jobmagic.backends.registry import Executors
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import JobRecord

from .changes import ChangeFeed
from .file_events import FileEvents
from .job_events import JobEvents
from .log_follow import LogFollowers
from .loop_lag import LoopLagProbe
from .process_exits import ProcessExits
from .reactor import LoopReactor
from .stopper import JobStopper
from .store_thread import StoreThread

if TYPE_CHECKING:
    from jupyter_events import EventLogger


class JobmagicServer(LoggingConfigurable):
    """The job store and its watchers, shared by every request of one Jupyter server.

    Created by ``_load_jupyter_server_extension`` and kept in the web app's settings as
    ``settings["jobmagic"]``. Its watchers attach to the event loop on first use (the
    loop may not run yet while extensions load) and cost nothing while no job changes.
    Its store calls run on its ``store_thread``, never on the event loop. With an
    ``event_logger`` (jupyter_server's event bus, the job-changes schema registered) it
    emits each change there (``job_events.py``).

    Configure it like any Jupyter object, e.g. ``c.JobmagicServer.stop_timeout = 10``.
    """

    stop_timeout = Float(
        5.0,
        min=0.0,
        config=True,
        help="Seconds between SIGTERM and SIGKILL when a job is stopped from the UI.",
    )
    long_poll_timeout = Float(
        30.0,
        min=0.0,
        config=True,
        help=(
            "Longest a change-feed or log-follow request waits, in seconds; a request's "
            "?timeout= may ask for less, never for more."
        ),
    )

    def __init__(
        self, store: JobStore, event_logger: EventLogger | None = None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self._event_logger = event_logger
        self.executors = Executors(store.home)
        self.store_thread = StoreThread()
        self._feed: ChangeFeed | None = None
        self._events: JobEvents | None = None
        self._files: FileEvents | None = None
        self._exits: ProcessExits | None = None
        self._followers: LogFollowers | None = None
        self._stopper: JobStopper | None = None
        self._lag_probe: LoopLagProbe | None = None
        self._closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching the store from ``loop``; a no-op once attached."""
        if self._feed is not None:
            return
        if self._closed:
            raise RuntimeError("the jobmagic server extension was closed")
        self._files = FileEvents(loop, self.log)
        self._exits = ProcessExits(loop, self.log)
        reactor = LoopReactor(loop, self.log)
        self._feed = ChangeFeed(self.store, self.executors, self.store_thread, loop, self.log)
        self._followers = LogFollowers(self._files, self._feed)
        self._stopper = JobStopper(self._feed, self.executors, reactor, self.stop_timeout, self.log)
        if self._event_logger is not None:
            # Before the feed starts: the events count from its first look.
            self._events = JobEvents(self._feed, loop, self._event_logger, self.log)
        self._feed.start(self._files, self._exits, reactor)
        # Measuring only: $JOBMAGIC_LOOP_LAG_LOG turns it on (see loop_lag.py).
        self._lag_probe = LoopLagProbe.from_environment(loop)

    @property
    def feed(self) -> ChangeFeed:
        """The change feed (attaching to the running loop on first use)."""
        if self._feed is None:
            self.attach(asyncio.get_running_loop())
        if self._feed is None:
            raise RuntimeError("the jobmagic server extension is not attached")
        return self._feed

    @property
    def followers(self) -> LogFollowers:
        """The log followers (attaching to the running loop on first use)."""
        if self._followers is None:
            self.attach(asyncio.get_running_loop())
        if self._followers is None:
            raise RuntimeError("the jobmagic server extension is not attached")
        return self._followers

    @property
    def stopper(self) -> JobStopper:
        """The stopper (attaching to the running loop on first use)."""
        if self._stopper is None:
            self.attach(asyncio.get_running_loop())
        if self._stopper is None:
            raise RuntimeError("the jobmagic server extension is not attached")
        return self._stopper

    def clamp_wait(self, requested: float | None) -> float:
        """Seconds a long-poll may wait: ``requested``, at most ``long_poll_timeout``."""
        limit = float(self.long_poll_timeout)
        if requested is None:
            return limit
        return max(0.0, min(requested, limit))

    async def get(self, job_id: int) -> JobRecord | None:
        """Return the job's record once the feed is settled (an orphan that ended reads so)."""
        await self.feed.settled(version=False)
        return await self.store_thread.run(self.store.get, job_id)

    def close(self) -> None:
        """Release every watcher and the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._lag_probe is not None:
            self._lag_probe.close()
            self._lag_probe = None
        if self._stopper is not None:
            self._stopper.close()
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._followers is not None:
            self._followers.close()
        if self._feed is not None:
            self._feed.close()
        if self._exits is not None:
            self._exits.close()
        if self._files is not None:
            self._files.close()
        self._feed = self._files = self._exits = None
        self._followers = None
        self._stopper = None
        self.store_thread.close()
        self.store.close()
