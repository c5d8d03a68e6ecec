"""The server's event loop is never held by the job store: store calls run on a thread.

Against a real ``jupyter server`` (the fixtures of ``test_server_api``): while another
connection holds the store's write lock, a jobmagic request whose store write must wait
for it waits, and the server goes on answering every other request at once. Also: the
incremental ``GET jobs`` answer is byte for byte the one made from scratch, and the
loop-lag probe of the benchmarks sees a blocked loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_server_api
from test_server_api import (
    _DYING_KERNEL,
    _INIT,
    API,
    Server,
    _leader_parent,
    _wait_reaped,
    finish_pending,
    get_json,
    job_in,
    start_pending,
)

from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.server.job_list import JobListBodies
from jobmagic.server.loop_lag import LoopLagProbe
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.wire import job_list_json

pytestmark = pytest.mark.timeout(60)

# The fixtures of the REST API's other tests: pytest finds them here by their names.
server = test_server_api.server

#: Seconds a request that needs no store may take while the store is locked (the old
#: server took the lock's whole wait, up to 60 s).
PROMPT = 2.0


def _release(fifo: Path) -> None:
    """Let a job that still waits on ``fifo`` end (after a failure, so that none is left)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # nobody reads it any more: the job has ended
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"go\n")
    os.close(fd)


def _jupyter_status(server: Server) -> float:
    """Seconds ``GET /api/status`` (jupyter_server's own, no jobmagic) takes; 200 or fail."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PROMPT * 5)
    try:
        began = time.monotonic()
        conn.request("GET", "/api/status", headers={"Authorization": f"token {server.token}"})
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 200
        return time.monotonic() - began
    finally:
        conn.close()


def test_a_locked_store_holds_the_list_not_the_server(server: Server, tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    # An orphan (its kernel died) that is still running: when it ends, the server is the
    # one to record its end, a write that must wait for the store's write lock.
    init = subprocess.Popen(
        [sys.executable, "-c", _INIT, _DYING_KERNEL, str(server.home), f"read x < {fifo}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert init.stdout is not None
    locker = sqlite3.connect(server.home / "jobs.sqlite", isolation_level=None, timeout=10)
    try:
        job_id, pid = map(int, init.stdout.readline().split())  # the kernel is dead now
        job = job_in(get_json(server, API), job_id)
        assert (job["state"], job["orphaned"]) == ("running", True)
        parent = _leader_parent(server.home, job_id, pid)

        locker.execute("BEGIN IMMEDIATE")  # what a kernel's long write looks like
        with fifo.open("w") as go:  # the job ends...
            go.write("go\n")
        _wait_reaped(init, parent)  # ...and its end is on disk
        pending = start_pending(server, API)  # reconciles first: it waits for the lock

        waits = [_jupyter_status(server) for _ in range(3)]

        assert max(waits) < PROMPT, waits
        assert pending.sock is not None
        assert not select.select([pending.sock], [], [], 0)[0], "the list did not wait"
        locker.execute("ROLLBACK")
        listing = finish_pending(pending)
        assert listing.status == 200, listing.body
        job = job_in(listing.json(), job_id)
        # The answer shows the write it waited for: the end the server recorded.
        assert (job["state"], job["exit_code"], job["orphaned"]) == ("succeeded", 0, False)
    finally:
        locker.close()
        _release(fifo)
        init.wait(30)
        init.stdout.close()


def test_the_change_feed_answers_with_the_write_that_woke_it(
    server: Server, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    init = subprocess.Popen(
        [sys.executable, "-c", _INIT, _DYING_KERNEL, str(server.home), f"read x < {fifo}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert init.stdout is not None
    try:
        job_id, _ = map(int, init.stdout.readline().split())
        listing = get_json(server, API)
        while job_in(listing, job_id)["orphaned"] is not True:  # its kernel's death is a change
            listing = get_json(server, f"{API}?wait_for={listing['version']}&timeout=20")
        pending = start_pending(server, f"{API}?wait_for={listing['version']}")

        with fifo.open("w") as go:  # the orphan ends: the server writes its end, then wakes
            go.write("go\n")
        woken = finish_pending(pending)

        assert woken.status == 200, woken.body
        answer = woken.json()
        assert answer["version"] != listing["version"]
        # Nothing else writes this job: the first change the feed reports is its end.
        assert job_in(answer, job_id)["state"] == "succeeded"
    finally:
        _release(fifo)
        init.wait(30)
        init.stdout.close()


def _fill(store: JobStore) -> list[int]:
    """Jobs in every state: ended, running, queued behind a full group, waiting on a job."""
    queue = JobQueue(store)
    queue.set_group("single", 1)
    ids = []
    for n in range(6):
        record = store.create(JobSpec(f"echo {n}", group="single", after=(1,) if n == 5 else ()))
        ids.append(record.id)
    store.finish(ids[0], JobState.SUCCEEDED, 0, None)
    store.finish(ids[1], JobState.FAILED, -9, "killed")
    # (No start time: a running job's runtime would differ between two lists.)
    store.update(ids[2], state=JobState.RUNNING, pid=os.getpid())
    store.update(ids[5], queue_reason="waiting for job 1")
    return ids


def _from_scratch(store: JobStore, states: list[JobState] | None, version: int) -> str:
    records = store.list(states=states)
    return json.dumps(job_list_json(records, version, JobQueue(store).reasons(records)))


def test_the_incremental_list_is_the_list_made_from_scratch(jobmagic_home: Path) -> None:
    store = JobStore(jobmagic_home)
    bodies = JobListBodies()
    try:
        ids = _fill(store)
        for states in (None, [JobState.QUEUED], [JobState.SUCCEEDED, JobState.FAILED], None):
            assert bodies.body(store, states, 7) == _from_scratch(store, states, 7)
        assert '"queue_reason": "1st in group single (1/1 running)"' in bodies.body(store, None, 7)

        # A kept text goes with its row: a changed ended job, a removed one, a new end.
        store.update(ids[0], log_size=12345, error="edited")
        store.delete(ids[1])
        store.finish(ids[2], JobState.STOPPED, -15, None)
        for states in (None, [JobState.SUCCEEDED], [JobState.QUEUED], None):
            assert bodies.body(store, states, 8) == _from_scratch(store, states, 8)
        assert '"error": "edited"' in bodies.body(store, None, 8)

        store.delete(ids[0])
        assert bodies.body(store, None, 9) == _from_scratch(store, None, 9)
        for job_id in ids[2:]:
            store.delete(job_id)
        assert bodies.body(store, None, 10) == _from_scratch(store, None, 10)
    finally:
        store.close()


def test_the_loop_lag_probe_sees_a_blocked_loop(tmp_path: Path) -> None:
    log = tmp_path / "lag.log"

    def hold() -> None:
        time.sleep(0.2)  # a callback that holds the loop: the next timer is ~0.2 s late

    async def block_the_loop() -> None:
        loop = asyncio.get_running_loop()
        probe = LoopLagProbe(loop, log, interval=0.01)
        try:
            ended = loop.create_future()
            loop.call_later(0.05, hold)  # a few timers at their time first
            loop.call_later(0.35, ended.set_result, None)
            await ended
        finally:
            probe.close()

    asyncio.run(block_the_loop())

    lags = [float(line.split()[1]) for line in log.read_text().splitlines()]
    assert len(lags) >= 3
    assert max(lags) >= 0.15
    assert min(lags) < 0.05
