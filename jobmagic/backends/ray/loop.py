"""The one asyncio loop, on a thread of its own, on which a process follows its Ray jobs.

Every Ray job a process follows (its log's websocket, the calls made when it ends) is a
task on this loop, so twenty jobs cost one thread, not twenty. The loop starts with the
first job and lives as long as the process (a daemon thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Guards _loop: the first two jobs may start from two threads at once.
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def run_soon(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coroutine`` on the loop; its future (cancel it to cancel the task)."""
    return asyncio.run_coroutine_threadsafe(coroutine, _running_loop())


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="jobmagic-ray", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


_session: Any = None  # the loop's aiohttp.ClientSession, made on the loop when first asked


async def session() -> Any:
    """The aiohttp session every follower on the loop shares (call on the loop)."""
    global _session
    if _session is None:
        import aiohttp

        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=_keepalive_socket),
            timeout=aiohttp.ClientTimeout(total=None, connect=10),
        )
    return _session


#: TCP keepalive on the log sockets: a cluster that vanished without closing them (its
#: host gone, a partition) is noticed after 30 s of silence and 3 unanswered probes 10 s
#: apart. Not a websocket ping: Ray's tail handler never reads, so it never answers one.
_KEEPALIVE = ((socket.TCP_KEEPIDLE, 30), (socket.TCP_KEEPINTVL, 10), (socket.TCP_KEEPCNT, 3))


def _keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto = addr_info[:3]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in _KEEPALIVE:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return sock


# One thread tells every follower's news (a detail changed), in order, off the loop: the
# listeners write to the store, which must not hold up the loop's sockets.
_teller = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="jobmagic-ray-tell"
)


def tell(callback: Callable[[T], object], value: T) -> None:
    """Call ``callback(value)`` on the teller thread, after what was told before."""
    _teller.submit(callback, value)
