"""A real local Ray head for the tests: ``ray start --head --block`` on free ports.

Every port Ray opens is chosen free, so the head does not collide with another one on the
machine (a developer's, a second test run). Readiness is Ray's own line "Ray runtime
started", then one answer from the Jobs API. Teardown ends the ``ray start`` process
(it stops what it started), then kills whatever is left in its session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: Seconds the head may take to start (about 12 s on 2 cores).
START_TIMEOUT = 90.0

# The ports `ray start` opens besides the ones it reads from the worker range.
_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--object-manager-port",
    "--node-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_range(size: int) -> tuple[int, int]:
    """A run of ``size`` ports that are free now, for Ray's workers."""
    for base in range(20000, 60000, 1000):
        ports = range(base, base + size)
        with contextlib.ExitStack() as stack:
            try:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return ports[0], ports[-1]
    raise RuntimeError("no free port range for Ray's workers")


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, dashboard_port: int | None = None) -> Iterator[str]:
    """Run a Ray head; yields its Jobs API address (``http://127.0.0.1:PORT``).

    ``dashboard_port``: the Jobs API's port (a head started again where one was); None:
    a free one.
    """
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        raise RuntimeError(f"{ray} is missing: install jobmagic[ray] (make test does)")
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    if dashboard_port is not None:
        ports["--dashboard-port"] = dashboard_port
    low, high = _free_range(200)
    # Ray puts Unix sockets under the temp dir: keep its path short.
    temp_dir = tempfile.mkdtemp(prefix="jmray-", dir="/tmp")
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--min-worker-port={low}",
        f"--max-worker-port={high}",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    output: list[str] = []
    started = threading.Event()
    reader = threading.Thread(target=_read, args=(process, output, started), daemon=True)
    reader.start()
    try:
        if not started.wait(START_TIMEOUT):
            raise RuntimeError("ray start did not start:\n" + "".join(output[-40:]))
        _wait_for_jobs_api(address, process, output)
        yield address
    finally:
        _stop(process)
        reader.join(10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _read(process: subprocess.Popen[bytes], output: list[str], started: threading.Event) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        output.append(line)
        if "Ray runtime started" in line:
            started.set()
    started.set()  # it exited: the caller reads why from the output


def _wait_for_jobs_api(address: str, process: subprocess.Popen[bytes], output: list[str]) -> None:
    """The dashboard answers shortly after Ray says it started; give it a few seconds."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError("ray start exited:\n" + "".join(output[-40:]))
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=5) as response:
                response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray's Jobs API at {address} never answered") from None
            time.sleep(0.25)  # an external server's start-up: nothing to wait on
        else:
            return


def _stop(process: subprocess.Popen[bytes]) -> None:
    session = process.pid
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for pid in _session_members(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _session_members(session: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session:
                    members.append(int(entry))
    return members


def main() -> None:
    """Run a head until SIGTERM or SIGINT; prints its address (one line) once it answers.

    ``make nbval`` starts one this way for the notebooks that use Ray.
    """
    signals = {signal.SIGTERM, signal.SIGINT}
    with ray_head() as address:
        # Blocked only now: Ray's processes must not inherit a mask that blocks SIGTERM.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        sys.stdout.write(address + "\n")
        sys.stdout.flush()
        signal.sigwait(signals)


if __name__ == "__main__":
    main()
