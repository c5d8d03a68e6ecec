"""The server extension's REST API, against a real ``jupyter server`` and real jobs.

One server runs for the module (starting one costs seconds); it serves its own job home,
and each test starts its jobs there with a ``WorkerService`` in this process (the job's
"kernel"), then talks to the server over HTTP like JupyterLab does.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from conftest import IS_ROOT, MARK_VAR
from helpers import free_port, python_cmd, stop_server, wait_until

from jobmagic.core.state import JobState
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker
from jobmagic.store import wire
from jobmagic.store.job_store import JobStore

pytestmark = pytest.mark.timeout(60)

API = "/jobmagic/api/jobs"
STOP_TIMEOUT = 2.0  # seconds; the server's SIGTERM -> SIGKILL grace in these tests


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A running ``jupyter server`` with the jobmagic extension."""

    port: int
    token: str
    home: Path
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=50)


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _drain(stream: Any, lines: list[str], ready: threading.Event) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if "is running at" in line:
            ready.set()
    ready.set()


def _accepts(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, _private_dirs: dict[str, Path]
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("server-home")
    root = tmp_path_factory.mktemp("server-root")
    port = free_port()
    token = secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "server",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        '--ServerApp.jpserver_extensions={"jobmagic": True}',
        f"--JobmagicServer.stop_timeout={STOP_TIMEOUT}",
    ]
    if IS_ROOT:
        cmd.append("--allow-root")
    env = {
        **os.environ,
        "JOBMAGIC_HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(_private_dirs["config"]),
        "JUPYTER_RUNTIME_DIR": str(_private_dirs["runtime"]),
    }
    # The server outlives single tests: it must not carry one test's leak-guard mark.
    env.pop(MARK_VAR, None)
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    assert process.stdout is not None
    output: list[str] = []
    ready = threading.Event()
    drainer = threading.Thread(target=_drain, args=(process.stdout, output, ready), daemon=True)
    drainer.start()
    try:
        started = ready.wait(60) and process.poll() is None
        assert started, "jupyter server did not start:\n" + "\n".join(output[-40:])
        # It says "is running at" before its loop binds the port: wait for that too.
        wait_until(lambda: _accepts(port), 30, message="the jupyter server to listen")
        yield Server(port=port, token=token, home=home, process=process, output=output)
    finally:
        stop_server(process, drainer)


@pytest.fixture
def service(server: Server) -> Iterator[WorkerService]:
    """The jobs' "kernel": a service in this process, on the server's job home."""
    svc = WorkerService(home=server.home, stop_timeout=STOP_TIMEOUT)
    try:
        yield svc
    finally:
        svc.shutdown()


def request(
    server: Server,
    method: str,
    path: str,
    *,
    auth: bool = True,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Response:
    """One HTTP request; ``auth`` sends the token in the Authorization header."""
    all_headers = dict(headers or {})
    if auth:
        all_headers["Authorization"] = f"token {server.token}"
    own = conn is None
    conn = conn or server.connect()
    try:
        conn.request(method, path, headers=all_headers)
        reply = conn.getresponse()
        return Response(reply.status, reply.headers, reply.read())
    finally:
        if own:
            conn.close()


def get_json(server: Server, path: str) -> Any:
    reply = request(server, "GET", path)
    assert reply.status == 200, reply.body
    return reply.json()


def job_in(listing: dict[str, Any], job_id: int) -> dict[str, Any]:
    [job] = [j for j in listing["jobs"] if j["id"] == job_id]
    return job


def start_pending(
    server: Server, path: str, parked: Callable[[], bool] | None = None
) -> http.client.HTTPConnection:
    """Send a long-poll GET and return its connection, still waiting for the answer.

    ``parked`` tells when the server holds the request (e.g. it watches the followed
    log); the server offers nothing to wait on for that, so it is checked until true.
    """
    conn = server.connect()
    conn.request("GET", path, headers={"Authorization": f"token {server.token}"})
    if parked is not None:
        wait_until(parked, 20, message=f"the server to park {path}")
    assert conn.sock is not None
    readable, _, _ = select.select([conn.sock], [], [], 0)
    assert not readable, f"{path} answered without waiting"
    return conn


def finish_pending(conn: http.client.HTTPConnection) -> Response:
    try:
        reply = conn.getresponse()
        return Response(reply.status, reply.headers, reply.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- processes


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2 :][:1] != b"Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def server_watches(server: Server) -> list[int]:
    """Inodes the server's jobmagic inotify descriptor watches (the one on its job home)."""
    home_inode = server.home.stat().st_ino
    pid = server.process.pid
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        inodes = [
            int(word[4:], 16)
            for line in info.splitlines()
            if line.startswith("inotify wd:")
            for word in line.split()
            if word.startswith("ino:")
        ]
        if home_inode in inodes:
            return inodes
    return []  # not attached yet: the extension attaches once the server's loop runs


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_until(worker: Worker, needle: bytes) -> bytes:
    """Read the job's output until ``needle`` (a handshake line); return the last bytes read."""
    window = b""
    for chunk in worker.stream():
        # Search only the recent bytes: the output may be large.
        window = window[-len(needle) :] + chunk
        if needle in window:
            return window
    raise AssertionError(f"job ended without printing {needle!r}; it ended with {window!r}")


# --------------------------------------------------------------------------- auth


def test_requests_without_credentials_get_403(server: Server, service: WorkerService) -> None:
    job = service.start("true")
    job.wait(30)
    for method, path in [
        ("GET", API),
        ("GET", f"{API}/{job.id}"),
        ("GET", f"{API}/{job.id}/log"),
        ("POST", f"{API}/{job.id}/stop"),
        ("POST", f"{API}/{job.id}/pause"),
        ("POST", f"{API}/{job.id}/resume"),
        ("POST", f"{API}/{job.id}/restart"),
    ]:
        reply = request(server, method, path, auth=False)
        assert reply.status == 403, (method, path, reply.body)


def test_cookie_authenticated_post_needs_the_xsrf_token(
    server: Server, service: WorkerService
) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(job, b"ready")
    # Log in the way a browser does: the token once in the URL sets the login cookie.
    login = request(server, "GET", f"{API}?token={server.token}", auth=False)
    assert login.status == 200
    cookies = SimpleCookie()
    for header in login.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    assert request(server, "GET", API, auth=False, headers={"Cookie": cookie}).status == 200

    forged = request(server, "POST", f"{API}/{job.id}/stop", auth=False, headers={"Cookie": cookie})

    assert forged.status == 403, forged.body
    assert "xsrf" in forged.json()["message"].lower()
    assert job.state is JobState.RUNNING
    assert process_alive(job.pid or 0)
    assert get_json(server, f"{API}/{job.id}")["stop_requested_by"] is None

    # With the token (as JupyterLab's requests carry it) the same POST goes through.
    reply = request(server, "POST", f"{API}/{job.id}/stop")
    assert reply.status == 202, reply.body
    assert job.wait(30) is not None


# --------------------------------------------------------------------------- listing


def test_list_shows_every_job_and_filters_by_state(server: Server, service: WorkerService) -> None:
    ok = service.start("true", name="ok")
    bad = service.start("exit 3", name="bad")
    ok.wait(30)
    bad.wait(30)
    running = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(running, b"ready")
    try:
        listing = get_json(server, API)
        assert isinstance(listing["version"], int)
        assert listing["schema_version"] == wire.SCHEMA_VERSION
        # The wire schema, exactly: nothing of the store's bookkeeping leaves the server.
        assert all(list(job) == [f.name for f in wire.FIELDS] for job in listing["jobs"])
        assert job_in(listing, ok.id or 0)["state"] == "succeeded"
        failed = job_in(listing, bad.id or 0)
        assert (failed["state"], failed["exit_code"], failed["name"]) == ("failed", 3, "bad")
        assert (failed["exit_text"], failed["error"], failed["backend"]) == (
            "exit code 3",
            "exit code 3",
            "local",
        )
        assert isinstance(failed["runtime"], float)
        assert failed["runtime"] >= 0
        live = job_in(listing, running.id or 0)
        assert (live["state"], live["orphaned"], live["pid"]) == ("running", False, running.pid)

        only_failed = get_json(server, f"{API}?state=failed")["jobs"]
        assert {j["state"] for j in only_failed} == {"failed"}
        assert bad.id in {j["id"] for j in only_failed}

        both = get_json(server, f"{API}?state=running&state=failed")["jobs"]
        assert {j["state"] for j in both} == {"running", "failed"}
        assert {bad.id, running.id} <= {j["id"] for j in both}
        assert ok.id not in {j["id"] for j in both}

        reply = request(server, "GET", f"{API}?state=done")
        assert reply.status == 400
        assert "done" in reply.json()["message"]
    finally:
        running.stop(timeout=5)


def test_one_job_unknown_job_and_bad_ids(server: Server, service: WorkerService) -> None:
    job = service.start("printf hi")
    job.wait(30)
    shown = get_json(server, f"{API}/{job.id}")
    assert (shown["id"], shown["command"], shown["state"], shown["exit_code"]) == (
        job.id,
        "printf hi",
        "succeeded",
        0,
    )
    assert list(shown) == [f.name for f in wire.FIELDS]
    assert shown["exit_text"] == "exit code 0"

    missing = request(server, "GET", f"{API}/987654")
    assert missing.status == 404
    assert missing.json()["message"] == "no job 987654"
    assert request(server, "GET", f"{API}/987654/log").status == 404
    assert request(server, "POST", f"{API}/987654/stop").status == 404

    for bad in ("abc", "1.5"):
        reply = request(server, "GET", f"{API}/{bad}")
        assert reply.status == 400, reply.body
        assert "integer" in reply.json()["message"]


# --------------------------------------------------------------------------- stop


def test_stop_from_the_ui_ends_the_whole_group(server: Server, service: WorkerService) -> None:
    # The job's program starts a grandchild in the job's process group.
    job = service.start(
        python_cmd(
            "import subprocess, time\n"
            "child = subprocess.Popen(['sleep', '300'])\n"
            "print('child', child.pid, flush=True)\n"
            "child.wait()"
        )
    )
    child_pid = int(read_until(job, b"\n").split()[1])
    assert job.pid is not None
    assert process_alive(child_pid)

    reply = request(server, "POST", f"{API}/{job.id}/stop")

    assert reply.status == 202, reply.body
    assert reply.json()["stop_requested_by"] == "ui"
    assert job.wait(30) is not None
    shown = get_json(server, f"{API}/{job.id}")
    assert (shown["state"], shown["stop_requested_by"]) == ("stopped", "ui")
    assert not process_alive(job.pid)
    assert not process_alive(child_pid)
    assert group_members(job.pid) == []

    again = request(server, "POST", f"{API}/{job.id}/stop")
    assert again.status == 409
    assert "stopped" in again.json()["message"]


def test_stop_escalates_to_sigkill_after_the_grace_period(
    server: Server, service: WorkerService
) -> None:
    # The whole job ignores SIGTERM (an ignored signal stays ignored in children).
    job = service.start("trap '' TERM; echo ignoring SIGTERM; sleep 300")
    read_until(job, b"ignoring SIGTERM")
    started = time.monotonic()

    assert request(server, "POST", f"{API}/{job.id}/stop").status == 202

    assert job.wait(30) == -signal.SIGKILL
    # After the configured grace (c.JobmagicServer.stop_timeout), not the 5 s default.
    assert STOP_TIMEOUT * 0.9 <= time.monotonic() - started < 4.5
    shown = get_json(server, f"{API}/{job.id}")
    assert (shown["state"], shown["exit_code"]) == ("stopped", -signal.SIGKILL)
    assert group_members(job.pid or 0) == []


def test_stop_of_a_finished_job_is_409(server: Server, service: WorkerService) -> None:
    job = service.start("exit 0")
    job.wait(30)
    reply = request(server, "POST", f"{API}/{job.id}/stop")
    assert reply.status == 409
    assert reply.json()["message"] == f"job {job.id} has already succeeded"
    assert get_json(server, f"{API}/{job.id}")["stop_requested_by"] is None


# --------------------------------------------------------------------------- queue actions


def process_states(pgid: int) -> set[bytes]:
    """The /proc state letters of the live processes of process group ``pgid``."""
    states = set()
    for pid in group_members(pgid):
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        states.add(stat[stat.rindex(b")") + 2 :][:1])
    return states


def test_pause_and_resume_from_the_ui_hold_the_whole_job_and_let_it_go(
    server: Server, service: WorkerService
) -> None:
    job = service.start(
        python_cmd(
            "import subprocess, time\n"
            "child = subprocess.Popen(['sleep', '300'])\n"
            "print('ready', flush=True)\n"
            "child.wait()"
        )
    )
    read_until(job, b"ready")
    paused = threading.Event()
    service.subscribe(lambda _e: paused.set() if job.state is JobState.PAUSED else None)

    reply = request(server, "POST", f"{API}/{job.id}/pause")

    assert reply.status == 200, reply.body
    shown = reply.json()
    assert shown["state"] == "paused"
    assert shown["paused_at"] is not None
    # SIGSTOP lands as each process is next scheduled: /proc is read until it shows.
    wait_until(lambda: process_states(job.pid or 0) == {b"T"}, 10, message="the job to stop")
    assert paused.wait(10), "the job's kernel did not hear of the pause"
    assert get_json(server, f"{API}/{job.id}")["state"] == "paused"

    reply = request(server, "POST", f"{API}/{job.id}/resume")

    assert reply.status == 200, reply.body
    assert (reply.json()["state"], reply.json()["paused_at"]) == ("running", None)
    assert b"T" not in process_states(job.pid or 0)
    job.stop()
    assert group_members(job.pid or 0) == []


def test_pause_of_a_queued_or_ended_job_is_409(server: Server, service: WorkerService) -> None:
    service.pause(group="held")
    queued = service.start("true", group="held")
    reply = request(server, "POST", f"{API}/{queued.id}/pause")
    assert reply.status == 409
    assert "has not started" in reply.json()["message"]
    service.resume(group="held")
    assert queued.wait(30) == 0
    reply = request(server, "POST", f"{API}/{queued.id}/resume")
    assert reply.status == 409
    assert reply.json()["message"] == f"job {queued.id} has already ended (succeeded)"
    assert request(server, "POST", f"{API}/{queued.id}/explode").status == 404


def test_restart_from_the_ui_runs_an_ended_job_again_as_a_new_job(
    server: Server, service: WorkerService
) -> None:
    running = service.start(python_cmd("import signal; print('ready', flush=True); signal.pause()"))
    read_until(running, b"ready")
    reply = request(server, "POST", f"{API}/{running.id}/restart")
    assert reply.status == 409
    assert "only an ended job can be restarted" in reply.json()["message"]
    running.stop()
    old = service.start("echo again; exit 3", name="flaky", group="retry")
    assert old.wait(30) == 3

    reply = request(server, "POST", f"{API}/{old.id}/restart")

    assert reply.status == 201, reply.body
    new = reply.json()
    assert new["id"] > old.id
    assert (new["restarted_from"], new["command"], new["group"]) == (old.id, old.command, "retry")
    assert new["detached"] is True  # nobody's kernel owns it
    ended = wait_until(
        lambda: (j := get_json(server, f"{API}/{new['id']}"))["state"] == "failed" and j,
        30,
        message="the restarted job to end",
    )
    assert ended["exit_code"] == 3
    log = request(server, "GET", f"{API}/{new['id']}/log")
    assert log.body == b"again\n"


def test_a_restart_that_must_wait_in_the_queue_answers_at_once(
    server: Server, service: WorkerService
) -> None:
    service.set_group("single", 1)
    old = service.start("exit 1", group="single")
    assert old.wait(30) == 1
    holder = service.start(
        python_cmd("import signal; print('ready', flush=True); signal.pause()"), group="single"
    )
    read_until(holder, b"ready")

    reply = request(server, "POST", f"{API}/{old.id}/restart")

    assert reply.status == 201, reply.body
    new = reply.json()
    assert (new["state"], new["queue_reason"]) == ("queued", "1st in group single (1/1 running)")
    holder.stop()  # its slot goes to the restarted job, started by the waiting command line
    ended = wait_until(
        lambda: (j := get_json(server, f"{API}/{new['id']}"))["state"] == "failed" and j,
        30,
        message="the restarted job to run and end",
    )
    assert ended["exit_code"] == 1


# A stand-in for a kernel that dies: it starts a detached job and exits at once, without
# shutting its service down. It runs under a small init (a child subreaper), so the job
# is reparented to a process that reaps it, as on any machine with a real init.
_DYING_KERNEL = textwrap.dedent(
    """
    import os, sys
    from jobmagic.engine.service import WorkerService
    job = WorkerService(home=sys.argv[1]).start(sys.argv[2], detach=True)
    print(job.id, job.pid, flush=True)
    os._exit(0)
    """
)
_INIT = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    kernel = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
                              stdout=subprocess.PIPE, text=True)
    line = kernel.stdout.readline()
    kernel.wait()
    print(line.strip(), flush=True)
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        print("reaped", pid, flush=True)
    """
)


def _leader_parent(home: Path, job_id: int, pid: int) -> int:
    """The pid of the job's leader's parent as our init sees it go: its spawner (which
    exits once it has reaped the leader, and what the job left to it), or the leader
    itself when no spawner started it (its wrapper leads it)."""
    store = JobStore(home)
    try:
        record = store.get(job_id)
    finally:
        store.close()
    assert record is not None
    assert record.backend_ref is not None
    parent: int = (record.backend_ref.get("spawner") or [pid])[0]
    return parent


def _wait_reaped(init: subprocess.Popen[str], pid: int) -> None:
    """Return once our init has reaped ``pid``."""
    assert init.stdout is not None
    reaped = set()
    while pid not in reaped:
        reaped.add(int(init.stdout.readline().split()[1]))


def test_stopping_an_orphaned_job_records_stopped(server: Server) -> None:
    command = python_cmd("import time; time.sleep(300)")
    init = subprocess.Popen(
        [sys.executable, "-c", _INIT, _DYING_KERNEL, str(server.home), command],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert init.stdout is not None
    try:
        job_id, pid = map(int, init.stdout.readline().split())  # the kernel is dead now
        before = get_json(server, API)
        job = job_in(before, job_id)
        assert (job["state"], job["orphaned"]) == ("running", True)

        reply = request(server, "POST", f"{API}/{job_id}/stop")
        assert reply.status == 202, reply.body

        # Follow the change feed (as the sidebar does) until the job is no longer running.
        version = before["version"]
        while job["state"] == "running":
            listing = get_json(server, f"{API}?wait_for={version}")
            version, job = listing["version"], job_in(listing, job_id)
        assert (job["state"], job["stop_requested_by"]) == ("stopped", "ui")
        _wait_reaped(init, _leader_parent(server.home, job_id, pid))
        assert group_members(pid) == []
    finally:
        if init.poll() is None:
            init.kill()
        init.wait(10)
        init.stdout.close()


# --------------------------------------------------------------------------- logs


def test_log_ranges_are_byte_exact(server: Server, service: WorkerService) -> None:
    payload = bytes(range(256)) * 4
    job = service.start(python_cmd(f"import sys; sys.stdout.buffer.write({payload!r})"))
    job.wait(30)

    whole = request(server, "GET", f"{API}/{job.id}/log")
    assert whole.status == 200
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.body == payload
    assert whole.headers["X-Log-Size"] == str(len(payload))
    assert whole.headers["X-Job-State"] == "succeeded"

    part = request(server, "GET", f"{API}/{job.id}/log?offset=250&length=10")
    assert part.body == payload[250:260]
    at_end = request(server, "GET", f"{API}/{job.id}/log?offset={len(payload)}")
    assert (at_end.status, at_end.body) == (200, b"")

    for query in (
        f"offset={len(payload) + 1}",
        "offset=-1",
        "offset=abc",
        "length=-5",
        "length=1e3",
    ):
        bad = request(server, "GET", f"{API}/{job.id}/log?{query}")
        assert bad.status == 400, query
        assert bad.json()["message"], query


def test_log_length_defaults_to_1_mib_and_is_capped_at_8_mib(
    server: Server, service: WorkerService
) -> None:
    size = 9 << 20
    job = service.start(f"head -c {size} /dev/zero")
    job.wait(30)
    default = request(server, "GET", f"{API}/{job.id}/log")
    assert len(default.body) == 1 << 20
    assert default.headers["X-Log-Size"] == str(size)
    capped = request(server, "GET", f"{API}/{job.id}/log?offset=4&length={size}")
    assert len(capped.body) == 8 << 20


def test_follow_delivers_bytes_written_after_the_request(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job = service.start(f"echo first; read line < {fifo}; echo second")
    read_until(job, b"first\n")
    log_inode = job.log_path.stat().st_ino

    pending = start_pending(
        server,
        f"{API}/{job.id}/log?offset=6&follow=1",
        parked=lambda: log_inode in server_watches(server),
    )
    with fifo.open("w") as go:  # the job prints its second line only now
        go.write("go\n")
    reply = finish_pending(pending)

    assert reply.status == 200
    assert reply.body == b"second\n"
    assert reply.headers["X-Log-Size"] == "13"
    assert job.wait(30) == 0
    # At the end of a finished job's log, follow answers at once, empty.
    done = request(server, "GET", f"{API}/{job.id}/log?offset=13&follow=1")
    assert (done.body, done.headers["X-Job-State"]) == (b"", "succeeded")


def test_follow_returns_when_the_job_ends_without_output(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job = service.start(f"read line < {fifo}")
    log_inode = job.log_path.stat().st_ino

    pending = start_pending(
        server,
        f"{API}/{job.id}/log?offset=0&follow=1",
        parked=lambda: log_inode in server_watches(server),
    )
    with fifo.open("w") as go:
        go.write("go\n")
    reply = finish_pending(pending)

    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["X-Job-State"] == "succeeded"


def test_a_log_is_watched_only_while_a_request_follows_it(
    server: Server, service: WorkerService
) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(job, b"ready\n")
    log_inode = job.log_path.stat().st_ino
    try:
        assert log_inode not in server_watches(server)

        pending = start_pending(
            server,
            f"{API}/{job.id}/log?offset=6&follow=1",
            parked=lambda: log_inode in server_watches(server),
        )
        pending.close()  # the client gives up; the server must notice and let go

        wait_until(
            lambda: log_inode not in server_watches(server),
            20,
            message="the server to drop the watch of an abandoned follow",
        )
    finally:
        job.stop(timeout=5)


def test_follow_times_out_with_the_headers(server: Server, service: WorkerService) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(job, b"ready\n")
    try:
        started = time.monotonic()
        reply = request(server, "GET", f"{API}/{job.id}/log?offset=6&follow=1&timeout=0.5")
        assert time.monotonic() - started >= 0.5
        assert (reply.status, reply.body) == (200, b"")
        assert (reply.headers["X-Log-Size"], reply.headers["X-Job-State"]) == ("6", "running")
    finally:
        job.stop(timeout=5)


# --------------------------------------------------------------------------- change feed


def test_wait_for_returns_when_a_job_changes_state(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job = service.start(f"read line < {fifo}")
    version = get_json(server, API)["version"]

    pending = start_pending(server, f"{API}?wait_for={version}")
    with fifo.open("w") as go:  # lets the job end
        go.write("go\n")
    listing = finish_pending(pending).json()

    assert listing["version"] != version
    # The first change may be an earlier write of the job's end; follow until it shows.
    while job_in(listing, job.id or 0)["state"] != "succeeded":
        listing = get_json(server, f"{API}?wait_for={listing['version']}")
    assert job.state is JobState.SUCCEEDED


def test_log_output_neither_wakes_the_change_feed_nor_costs_the_server(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    start, end = tmp_path / "start", tmp_path / "end"
    os.mkfifo(start)
    os.mkfifo(end)
    size = 64 << 20
    job = service.start(f"read x < {start}; head -c {size} /dev/zero; echo; read x < {end}")
    version = get_json(server, API)["version"]
    cpu_before = cpu_seconds(server.process.pid)

    pending = start_pending(server, f"{API}?wait_for={version}")
    with start.open("w") as go:
        go.write("go\n")
    read_until(job, b"\n")  # 64 MiB written to the log while the feed waits
    assert job.log_path.stat().st_size == size + 1
    assert pending.sock is not None
    assert not select.select([pending.sock], [], [], 0)[0], "the feed woke for log output"
    assert cpu_seconds(server.process.pid) - cpu_before < 0.5

    with end.open("w") as go:  # the job ends: that is a change
        go.write("go\n")
    listing = finish_pending(pending).json()
    assert listing["version"] != version
    assert job.wait(30) == 0


def test_wait_for_does_not_return_early_when_nothing_changed(
    server: Server, service: WorkerService
) -> None:
    job = service.start("true")
    job.wait(30)
    version = get_json(server, API)["version"]
    started = time.monotonic()

    listing = get_json(server, f"{API}?wait_for={version}&timeout=1.5")

    assert time.monotonic() - started >= 1.5
    assert listing["version"] == version
    assert get_json(server, f"{API}?wait_for={version - 1}&timeout=20")["version"] == version


def test_bad_change_feed_arguments_get_400(server: Server) -> None:
    for query in ("wait_for=abc", "wait_for=1&timeout=-1", "wait_for=1&timeout=soon"):
        reply = request(server, "GET", f"{API}?{query}")
        assert reply.status == 400, query
        assert reply.json()["message"], query


# --------------------------------------------------------------------------- odd ids and arguments

HUGE = [2**63, 2**64, 10**30]
TOO_LONG = "9" * 5000  # past Python's limit for int(str): not even read as a number
# Ids SQLite cannot hold (its INTEGER is 64-bit signed) name no job, like any other unused id.
OUT_OF_RANGE_IDS = [*HUGE, -(2**63) - 1, -(10**30)]
ID_ENDPOINTS = [
    pytest.param("GET", "{API}/{id}", id="job"),
    pytest.param("POST", "{API}/{id}/stop", id="stop"),
    pytest.param("GET", "{API}/{id}/log", id="log"),
    pytest.param("GET", "{API}/{id}/log?offset=0&follow=1", id="follow"),
]


@pytest.mark.parametrize("job_id", [*OUT_OF_RANGE_IDS, 2**63 - 1, 0, -1], ids=str)
@pytest.mark.parametrize(("method", "endpoint"), ID_ENDPOINTS)
def test_ids_no_job_can_have_are_404(
    server: Server, method: str, endpoint: str, job_id: int
) -> None:
    reply = request(server, method, endpoint.format(API=API, id=job_id))
    assert reply.status == 404, reply.body
    assert reply.json()["message"] == f"no job {job_id}"


@pytest.mark.parametrize(("method", "endpoint"), ID_ENDPOINTS)
def test_an_id_too_long_to_parse_is_400(server: Server, method: str, endpoint: str) -> None:
    reply = request(server, method, endpoint.format(API=API, id=TOO_LONG))
    assert reply.status == 400, reply.body[:200]
    message = reply.json()["message"]
    assert "integer" in message
    assert len(message) < 200, "the message repeats the whole argument"


def test_integer_arguments_out_of_range_are_400_or_clamped_never_500(
    server: Server, service: WorkerService
) -> None:
    job = service.start("printf hello")
    job.wait(30)
    log = f"{API}/{job.id}/log"
    rejected = [
        *(f"{log}?offset={n}&follow=1" for n in [*HUGE, TOO_LONG]),
        *(f"{log}?offset=-{n}" for n in [*HUGE, TOO_LONG]),
        *(f"{log}?length=-{n}" for n in [*HUGE, TOO_LONG]),
        f"{log}?length={TOO_LONG}",
        f"{API}?wait_for={TOO_LONG}",
    ]
    for path in rejected:
        reply = request(server, "GET", path)
        assert reply.status == 400, (path[:80], reply.body[:200])
        assert len(reply.json()["message"]) < 200, f"the message repeats {path[:80]}"
    # A length past the cap is the cap; a timeout past the server's limit is the limit.
    for query in [*(f"length={n}" for n in HUGE), *(f"timeout={n}" for n in [*HUGE, TOO_LONG])]:
        reply = request(server, "GET", f"{log}?{query}&follow=1")
        assert (reply.status, reply.body) == (200, b"hello"), query[:80]
    # A version the server never gave (it is opaque): the listing as it is, at once.
    version = get_json(server, API)["version"]
    for n in HUGE:
        for wait_for in (n, -n):
            listing = get_json(server, f"{API}?wait_for={wait_for}&timeout=20")
            assert listing["version"] == version


# --------------------------------------------------------------------------- deleted logs


def test_following_a_finished_job_whose_log_was_deleted_ends(
    server: Server, service: WorkerService
) -> None:
    job = service.start("printf 'some output'")
    job.wait(30)
    log = f"{API}/{job.id}/log"
    assert request(server, "GET", f"{log}?offset=0").body == b"some output"
    os.unlink(job.log_path)

    # The follower had 11 bytes; the answer is the end of a finished job's log.
    for query in ("offset=11&follow=1", "offset=11", "offset=0&follow=1"):
        reply = request(server, "GET", f"{log}?{query}")
        assert reply.status == 200, (query, reply.body)
        assert reply.body == b""
        assert (reply.headers["X-Job-State"], reply.headers["X-Log-Size"]) == ("succeeded", "0")

    # A removed job (record and log) is 404, like any job the store does not have.
    service.remove(job.id or 0)
    gone = request(server, "GET", f"{log}?offset=11&follow=1")
    assert (gone.status, gone.json()["message"]) == (404, f"no job {job.id}")


def test_a_follower_of_a_running_job_whose_log_is_deleted_gets_404_at_once(
    server: Server, service: WorkerService
) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(job, b"ready\n")
    log_inode = job.log_path.stat().st_ino
    log = f"{API}/{job.id}/log"
    try:
        pending = start_pending(
            server,
            f"{log}?offset=6&follow=1&timeout=30",
            parked=lambda: log_inode in server_watches(server),
        )
        started = time.monotonic()
        os.unlink(job.log_path)
        reply = finish_pending(pending)
        assert time.monotonic() - started < 15, "the follower waited for its timeout"
        assert reply.status == 404, reply.body
        assert reply.json()["message"] == f"the log of job {job.id} was deleted"

        for query in ("offset=6&follow=1", "offset=0", "offset=0&follow=1"):
            again = request(server, "GET", f"{log}?{query}")
            assert again.status == 404, (query, again.body)
        assert get_json(server, f"{API}/{job.id}")["state"] == "running"
    finally:
        job.stop(timeout=5)
