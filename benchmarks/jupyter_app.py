"""A real ``jupyter lab`` or ``jupyter server`` for the cases that measure the frontend or
the server extension: its own config, data, runtime, workspace and settings dirs, a free
port of 127.0.0.1, a random token, and its output in ``<workdir>/<app>.log``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import BenchError, Context

#: Seconds a server may take to listen (a loaded 2-core machine takes ~10).
START_TIMEOUT = 120.0


@dataclass
class JupyterApp:
    """A running server: where it listens, its token, its process and its log file."""

    port: int
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:PORT/`` + ``path``, with the token as a query parameter."""
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, chars: int = 500) -> str:
        """The end of what the server wrote, for an error message."""
        return self.log.read_text(errors="replace")[-chars:]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def jupyter_app(
    ctx: Context,
    workdir: Path,
    home: Path,
    *,
    app: str = "lab",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[JupyterApp]:
    """Run ``jupyter APP`` (``lab`` or ``server``) on the job home ``home`` until exit.

    ``args`` are added to its command line and ``env`` to its environment. It is
    stopped with SIGTERM, then its whole session with SIGKILL.
    """
    root, jupyter = workdir / "root", workdir / "jupyter"
    for path in (root, jupyter / "config", jupyter / "data", jupyter / "runtime"):
        path.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # JupyterLab's server extension loads under `jupyter server` too: its own dirs.
        f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
        f"--LabApp.user_settings_dir={jupyter / 'settings'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *args,
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    full_env = {
        **ctx.env(home),
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        **(env or {}),
    }
    log_path = workdir / f"{app}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=workdir,
            start_new_session=True,
        )
    running = JupyterApp(port, token, process, log_path)
    try:
        _wait_listening(running)
        yield running
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_listening(app: JupyterApp) -> None:
    """Return once the server accepts connections; BenchError if it exits or never does.

    (A server says nothing a waiter could block on: a connection attempt every 0.1 s,
    within a deadline, is the handshake. Measuring starts only after it.)
    """
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", app.port), timeout=5).close()
        except ConnectionRefusedError:
            if app.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"jupyter did not start: {app.log_tail()}") from None
            threading.Event().wait(0.1)
        else:
            return
