"""Small helpers for tests: waiting on a condition, free ports, child commands.

Import them as ``from helpers import wait_until, free_port, python_cmd`` (pytest puts
``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there).
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval_event: threading.Event | None = None,
    *,
    message: str = "",
) -> T:
    """Return ``predicate()``'s first truthy value; raise ``TimeoutError`` after ``timeout`` s.

    For tests only. Prefer a handshake (a line the child prints, an event a callback
    sets) and use this where the thing under test offers nothing to wait on.

    With ``interval_event``, the predicate is re-checked each time the event is set
    (the event is cleared before each check), and at the deadline: no fixed polling
    interval. Without it, the predicate is checked every 10 ms at first, backing off
    to every 100 ms.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        if interval_event is not None:
            interval_event.clear()
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = message or getattr(predicate, "__name__", repr(predicate))
            msg = f"condition not met within {timeout} s: {what}"
            raise TimeoutError(msg)
        if interval_event is not None:
            interval_event.wait(remaining)
        else:
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def python_cmd(code: str) -> str:
    """A shell command line that runs ``code`` with this interpreter (``sys.executable -c``)."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def strip_ansi(text: str) -> str:
    """``text`` without terminal color codes (``jupyter ... list`` prints them)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def stop_server(process: subprocess.Popen[Any], drainer: threading.Thread) -> None:
    """End a Jupyter server started by a fixture (SIGTERM, then SIGKILL after 30 s)."""
    process.terminate()  # jupyter_server shuts its kernels down on SIGTERM
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    drainer.join(10)
    if process.stdout is not None:
        process.stdout.close()
