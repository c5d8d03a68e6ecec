"""The server's store thread: every job-store call of the server runs there, off the loop.

A store call can take long: a read of a few hundred records and their JSON takes
milliseconds, and a write waits up to ``BUSY_TIMEOUT`` (60 s) while a kernel holds the
database's write lock. On tornado's event loop that would stall every request and every
log follower; on this thread it holds up only the store calls queued behind it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """One worker thread that runs store calls for the event loop, in the order asked.

    One thread, not a pool: ``JobStore`` shares one SQLite connection between threads
    behind one lock, so a second thread would only wait on that lock. And one thread runs
    the calls in the order they were submitted, which the change feed relies on: a list
    submitted after the ``data_version`` read that saw a commit runs after that read,
    and sees the commit.

    Owned by ``JobmagicServer``, closed with it. The thread starts with the first call.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobmagic-store")

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Return ``function(*args, **kwargs)``, called on the store thread.

        Its exception, if it raises, is raised here. Call it from the event loop.

        Raises
        ------
        RuntimeError
            When the thread was closed.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    def close(self) -> None:
        """Drop the calls that have not begun and let the thread end; idempotent.

        Does not wait for a call under way (one waiting for the write lock may take up
        to a minute); the interpreter waits for it at exit.
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
