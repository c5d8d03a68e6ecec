"""Case 10, server: the Jupyter server's event loop while jobs churn and clients follow.

A real ``jupyter server`` with the jobmagic extension and its loop-lag probe
(``$JOBMAGIC_LOOP_LAG_LOG``: how late a 10 ms timer on the server's event loop fires).
A separate process (a ``WorkerService``, the jobs' "kernel") starts 500 short jobs, 20 at
a time, each printing four lines over ~0.6 s. Meanwhile 10 clients follow the logs of the
newest jobs (``GET jobs/ID/log?follow=1``, again from the new offset until the job has
ended), one follows the change feed as JupyterLab's sidebar does (``GET jobs?wait_for=V``,
then again with the new version), and one asks for the jobs list (``GET jobs``, the whole
store) every 50 ms, timing each answer and that of jupyter_server's own ``GET api/status``
beside it; this sampler first runs 3 s unmeasured, to let the server settle after its
start. When the last job has ended, the same sampler runs against the server left idle (the same
store, 500 jobs): the baseline of each row.

Rows: event-loop lag p99 under load (goal <= 20 ms) and ``GET jobs`` p99 under load
(goal <= 50 ms); the issue's "``/api/status``" is read as jobmagic's jobs list, the only
list endpoint (``jobmagic/server/routes.py``), and literally, as jupyter_server's ``GET
api/status`` (same goal). The clients are threads of this process
(keep-alive connections), so their times include this process's share of 2 cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.cookies
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import BenchError, Context, engine_missing, fresh_dir
from benchmarks.jupyter_app import jupyter_app
from benchmarks.report import Goal, Row, median, percentile

JOBS = 500
AT_ONCE = 20  # jobs the churn process keeps running
FOLLOWERS = 10  # clients following logs
SAMPLE_EVERY = 0.050  # seconds between the sampler's requests
IDLE = 8.0  # seconds of sampling the idle server
# Seconds of sampling, not measured, before the load: after "is running at" the server
# goes on importing and collecting garbage (full collections of a growing heap) a while.
WARM_UP = 3.0
LONG_POLL = 2  # seconds: the ?timeout= of the clients' long-polls
JOB = "echo one; sleep 0.2; echo two; sleep 0.2; echo three; sleep 0.2; echo four"
API = "/jobmagic/api/jobs"
CHURN_TIMEOUT = 120.0  # seconds the 500 jobs get, start to end
_CHURN_MAIN = "import sys; from benchmarks.case_server import churn; churn(*sys.argv[1:])"


def churn(home: str, jobs: str, at_once: str) -> None:
    """The jobs' "kernel" (run in its own process): start ``jobs`` jobs, ``at_once`` at a time.

    The arguments come from the command line, as text. Prints ``started ID`` as each job
    starts and ``done N`` (N jobs ended with 0) at the end.
    """
    from jobmagic import WorkerService

    service = WorkerService(home=home)
    lock = threading.Lock()  # guards left, codes and stdout
    left = [int(jobs)]
    codes: list[int | None] = []

    def lane() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            worker = service.start(JOB)
            with lock:
                print(f"started {worker.id}", flush=True)
            code = worker.wait(60)
            with lock:
                codes.append(code)

    try:
        lanes = [threading.Thread(target=lane) for _ in range(int(at_once))]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
        print(f"done {sum(1 for c in codes if c == 0)}", flush=True)
    finally:
        service.shutdown(timeout=1)


@dataclass
class Server:
    """The running ``jupyter server``."""

    port: int
    token: str
    process: subprocess.Popen[bytes]
    #: The cookies the server set, sent back as a browser does (JupyterLab sends its
    #: token and the login cookie): a token-only request has the server sign a new login
    #: cookie each time, work that no page's request costs it.
    cookies: http.cookies.SimpleCookie = dataclasses.field(
        default_factory=http.cookies.SimpleCookie
    )
    _cookie_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, conn: http.client.HTTPConnection, path: str) -> tuple[int, dict, bytes]:
        """One GET on a keep-alive connection: status, headers, body."""
        headers = {"Authorization": f"token {self.token}"}
        with self._cookie_lock:  # the clients are threads
            cookie = "; ".join(f"{name}={m.value}" for name, m in self.cookies.items())
        if cookie:
            headers["Cookie"] = cookie
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        for header in reply.headers.get_all("Set-Cookie") or ():
            with self._cookie_lock:
                self.cookies.load(header)
        return reply.status, dict(reply.getheaders()), body


@contextlib.contextmanager
def _server(ctx: Context, workdir: Path, lag_log: Path) -> Iterator[tuple[Server, Path]]:
    """A ``jupyter server`` with the loop-lag probe on; yields it and the job home."""
    home = workdir / "home"
    with jupyter_app(
        ctx,
        workdir,
        home,
        app="server",
        args=['--ServerApp.jpserver_extensions={"jobmagic": True}'],
        env={"JOBMAGIC_LOOP_LAG_LOG": str(lag_log)},
    ) as app:
        yield Server(app.port, app.token, app.process), home


def _sample(server: Server, stop: threading.Event, jobs: list[float], status: list[float]) -> None:
    """``GET jobs`` then ``GET api/status`` every ``SAMPLE_EVERY`` seconds, timed, until stop."""
    conn = server.connect()
    try:
        while not stop.is_set():
            began = time.perf_counter()
            code, _, body = server.get(conn, API)
            if code != 200:
                raise BenchError(f"GET jobs answered {code}: {body[:200]!r}")
            jobs.append(time.perf_counter() - began)
            began = time.perf_counter()
            code, _, _ = server.get(conn, "/api/status")
            status.append(time.perf_counter() - began)
            stop.wait(SAMPLE_EVERY)
    finally:
        conn.close()


def _version(body: bytes) -> int:
    """The ``version`` of a ``GET jobs`` answer, read from its head.

    Not ``json.loads`` of the whole: parsing 300 kB would hold this process's GIL, and
    the sampler's timings with it.
    """
    match = re.match(rb'\{"schema_version": \d+, "version": (-?\d+),', body)
    if match is None:
        raise BenchError(f"not a jobs list: {body[:200]!r}")
    return int(match[1])


def _sidebar(server: Server, stop: threading.Event, answers: list[int]) -> None:
    """Follow the change feed as JupyterLab's sidebar does, until stop."""
    conn = server.connect()
    try:
        _, _, body = server.get(conn, API)
        version = _version(body)
        while not stop.is_set():
            code, _, body = server.get(conn, f"{API}?wait_for={version}&timeout={LONG_POLL}")
            if code != 200:
                raise BenchError(f"GET jobs?wait_for answered {code}: {body[:200]!r}")
            version = _version(body)
            answers.append(1)
    finally:
        conn.close()


def _follow(server: Server, stop: threading.Event, ids: queue.LifoQueue, counts: list[int]) -> None:
    """Follow the newest started job's log to its end, then the next newest, until stop."""
    conn = server.connect()
    try:
        while not stop.is_set():
            try:
                job_id = ids.get(timeout=0.5)
            except queue.Empty:
                continue
            offset = 0
            while True:
                path = f"{API}/{job_id}/log?offset={offset}&follow=1&timeout={LONG_POLL}"
                code, headers, body = server.get(conn, path)
                counts.append(1)
                if code != 200:
                    raise BenchError(f"GET {path} answered {code}: {body[:200]!r}")
                offset += len(body)
                if not body and headers.get("X-Job-State") in {"succeeded", "failed", "stopped"}:
                    break
    finally:
        conn.close()


def _threads(
    targets: list[Callable[[], None]], errors: list[BaseException]
) -> list[threading.Thread]:
    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported by the case
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def _lags(lag_log: Path, start: float, end: float) -> list[float]:
    """The probe's lags (seconds) measured between ``start`` and ``end`` (monotonic)."""
    lags = []
    for line in lag_log.read_text().splitlines():
        at, lag = map(float, line.split())
        if start <= at <= end:
            lags.append(lag)
    return lags


def _load(ctx: Context, server: Server, home: Path, workdir: Path) -> dict:
    """The load phase: the churn process, 10 followers, the sidebar, the sampler."""
    stop = threading.Event()
    ids: queue.LifoQueue[int] = queue.LifoQueue()
    jobs_times: list[float] = []
    status_times: list[float] = []
    sidebar: list[int] = []
    follows: list[int] = []
    errors: list[BaseException] = []
    threads = _threads(
        [lambda: _sample(server, stop, jobs_times, status_times)]
        + [lambda: _sidebar(server, stop, sidebar)]
        + [lambda: _follow(server, stop, ids, follows) for _ in range(FOLLOWERS)],
        errors,
    )
    argv = [
        sys.executable,
        "-c",
        _CHURN_MAIN,
        str(home),
        str(JOBS),
        str(AT_ONCE),
    ]
    start = time.monotonic()
    churner = subprocess.Popen(
        argv,
        env=ctx.env(home),
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert churner.stdout is not None
    succeeded = None
    killer = threading.Timer(CHURN_TIMEOUT, lambda: os.killpg(churner.pid, signal.SIGKILL))
    killer.start()
    try:
        for raw in churner.stdout:
            word, number = raw.split()
            if word == b"started":
                ids.put(int(number))
            elif word == b"done":
                succeeded = int(number)
        end = time.monotonic()
    finally:
        killer.cancel()
        churner.wait()
        churner.stdout.close()
        stop.set()
        for thread in threads:
            thread.join(30)
    if errors:
        raise BenchError(f"a client failed: {errors[0]!r}")
    if succeeded != JOBS:
        raise BenchError(f"of {JOBS} jobs, {succeeded} succeeded (churn exit {churner.returncode})")
    return {
        "start": start,
        "end": end,
        "jobs": jobs_times,
        "status": status_times,
        "sidebar": len(sidebar),
        "follows": len(follows),
    }


def _idle(server: Server, seconds: float = IDLE) -> dict:
    """The baseline: the same sampler against the server with nothing else going on."""
    stop = threading.Event()
    jobs_times: list[float] = []
    status_times: list[float] = []
    errors: list[BaseException] = []
    start = time.monotonic()
    threads = _threads([lambda: _sample(server, stop, jobs_times, status_times)], errors)
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    if errors:
        raise BenchError(f"the sampler failed: {errors[0]!r}")
    return {"start": start, "end": time.monotonic(), "jobs": jobs_times, "status": status_times}


def run(ctx: Context) -> list[Row]:
    lag_name, jobs_name = "server: event-loop lag p99", "server: GET jobs p99"
    missing = engine_missing()
    if missing:
        return [
            Row(lag_name, missing=missing, goal=Goal("value", 0.020)),
            Row(jobs_name, missing=missing, goal=Goal("value", 0.050)),
        ]
    with fresh_dir(ctx, "server-") as workdir:
        lag_log = workdir / "loop-lag.log"
        with _server(ctx, workdir, lag_log) as (server, home):
            _idle(server, WARM_UP)  # not measured: the server still settles after its start
            loaded = _load(ctx, server, home, workdir)
            idle = _idle(server)
        load_lags = _lags(lag_log, loaded["start"], loaded["end"])
        idle_lags = _lags(lag_log, idle["start"], idle["end"])
    if not load_lags or not idle_lags:
        raise BenchError("the loop-lag probe wrote nothing ($JOBMAGIC_LOOP_LAG_LOG)")
    seconds = loaded["end"] - loaded["start"]
    note = (
        f"{JOBS} jobs ({AT_ONCE} at a time) in {seconds:.1f} s; under load {len(load_lags)} lag "
        f"samples, {len(loaded['jobs'])} GET jobs, {loaded['follows']} log follows, "
        f"{loaded['sidebar']} change-feed answers; idle {len(idle['jobs'])} GET jobs"
    )
    return [
        Row(
            lag_name,
            percentile(load_lags, 0.99),
            "s",
            percentile(idle_lags, 0.99),
            "idle server",
            Goal("value", 0.020),
            note=note,
        ),
        Row(
            jobs_name,
            percentile(loaded["jobs"], 0.99),
            "s",
            percentile(idle["jobs"], 0.99),
            "idle server",
            Goal("value", 0.050),
        ),
        Row("server: event-loop lag max", max(load_lags), "s", max(idle_lags), "idle server"),
        Row(
            "server: GET jobs p50",
            median(loaded["jobs"]),
            "s",
            median(idle["jobs"]),
            "idle server",
        ),
        Row(
            "server: GET api/status (jupyter_server's) p99",
            percentile(loaded["status"], 0.99),
            "s",
            percentile(idle["status"], 0.99),
            "idle server",
            Goal("value", 0.050),  # the words read literally: checked too
        ),
    ]
