"""Long-poll followers of job logs: wake when a log grows, is deleted, or its job ends.

A log file is watched (inotify IN_MODIFY) only while at least one request follows it: a
job writing 4 KiB blocks raises an event per write, and nobody should pay for events
nobody waits for. A job's end shows up as a change of the store's version. The watch also
reports the log's deletion (IN_ATTRIB: its link count fell, while the job still holds it
open) and its move (IN_MOVE_SELF): nothing more can be read from its path then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from inotify_simple import flags

from jobmagic.core.files import file_size
from jobmagic.core.state import JobState
from jobmagic.store.records import JobRecord

from .changes import ChangeFeed
from .file_events import FileEvents

#: A log's writes, and its deletion or move (IN_ATTRIB for the fall of its link count).
_LOG_EVENTS = flags.MODIFY | flags.ATTRIB | flags.MOVE_SELF | flags.DELETE_SELF


def log_deleted(record: JobRecord, log_path: Path) -> bool:
    """Whether the job's log was deleted (or moved away): it exists before the job starts.

    A queued job's log may not exist yet (its record is written first).
    """
    return record.state is not JobState.QUEUED and not log_path.exists()


class _FollowedLog:
    """One log file and the requests following it."""

    def __init__(self) -> None:
        self.followers = 0
        self.unwatch: Callable[[], None] | None = None
        # Resolved (and replaced) at the next write; shared by this file's followers.
        self.next_write: asyncio.Future[None] | None = None

    def wake(self, _name: str, mask: int) -> None:
        if mask & flags.IGNORED:
            self.unwatch = None  # the file was deleted; the kernel dropped the watch
        if self.next_write is not None and not self.next_write.done():
            self.next_write.set_result(None)
        self.next_write = None


class LogFollowers:
    """The registry of followed logs.

    Parameters
    ----------
    files : FileEvents
        The server's inotify watcher.
    feed : ChangeFeed
        The store's change feed (for job ends and for the job records).
    """

    def __init__(self, files: FileEvents, feed: ChangeFeed) -> None:
        self._files = files
        self._feed = feed
        self._logs: dict[Path, _FollowedLog] = {}

    @property
    def followed(self) -> int:
        """How many log files are watched right now."""
        return len(self._logs)

    async def wait(
        self,
        job_id: int,
        log_path: Path,
        offset: int,
        max_wait: float,
        give_up: asyncio.Future[None] | None = None,
    ) -> None:
        """Return once the log is longer than ``offset`` bytes, is deleted, or the job ended.

        Parameters
        ----------
        job_id : int
            The job whose log this is.
        log_path : Path
            The log file (it may not exist yet).
        offset : int
            Bytes the caller already has.
        max_wait : float
            Seconds to wait at most; then return anyway.
        give_up : asyncio.Future or None
            Return as soon as this resolves (the client went away).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        followed = self._logs.setdefault(log_path, _FollowedLog())
        followed.followers += 1
        try:
            while True:
                # Take the futures before looking, so a write or a change that lands
                # between the look and the wait still wakes us.
                if followed.unwatch is None:
                    with contextlib.suppress(FileNotFoundError):
                        followed.unwatch = self._files.watch(log_path, _LOG_EVENTS, followed.wake)
                if followed.next_write is None:
                    followed.next_write = loop.create_future()
                wakers: list[asyncio.Future[None]] = [
                    followed.next_write,
                    self._feed.next_change(),
                ]
                if give_up is not None:
                    wakers.append(give_up)
                if file_size(log_path) > offset:
                    return
                # On the store thread: the futures taken above still catch what lands meanwhile.
                record = await self._feed.store_thread.run(self._feed.store.get, job_id)
                if record is None or record.state.is_finished:
                    return
                if log_deleted(record, log_path):
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                done, _ = await asyncio.wait(
                    wakers, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if not done or (give_up is not None and give_up.done()):
                    return
        finally:
            followed.followers -= 1
            if followed.followers == 0:
                del self._logs[log_path]
                if followed.unwatch is not None:
                    followed.unwatch()

    def close(self) -> None:
        """Wake every follower (they return what they have)."""
        for followed in self._logs.values():
            followed.wake("", 0)
