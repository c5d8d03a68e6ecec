"""Pushed job changes and the incremental list, against a real ``jupyter server``.

The server of ``test_server_api`` (its fixtures, one server for the module, its own job
home); jobs run in a ``WorkerService`` of this process, or are written to the store
directly when only their rows matter. Events are read as JupyterLab reads them: a
websocket on ``/api/events/subscribe``, opened with tornado's ``websocket_connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import test_server_api
from finished_jobs import insert_finished_jobs
from helpers import python_cmd
from jupyter_events.schema import EventSchema
from test_server_api import (
    _INIT,
    API,
    Server,
    get_json,
    job_in,
    read_until,
    request,
)
from tornado.websocket import WebSocketClientConnection, websocket_connect

from jobmagic.core.spec import JobSpec
from jobmagic.core.state import JobState
from jobmagic.engine.service import WorkerService
from jobmagic.server.event_schema import SCHEMA_PATH, schema, schema_text
from jobmagic.server.job_events import MAX_EVENT_JOBS
from jobmagic.store import revisions, wire
from jobmagic.store.job_store import JobStore

pytestmark = pytest.mark.timeout(90)

# The fixtures of the REST API's tests: pytest finds them here by their names.
server = test_server_api.server
service = test_server_api.service

#: Seconds to wait for an event that must come.
EVENT_WAIT = 20.0


class EventStream:
    """The server's event bus as a page sees it: job-change events, in order."""

    def __init__(self, server: Server) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        url = f"ws://127.0.0.1:{server.port}/api/events/subscribe?token={server.token}"
        self._socket: WebSocketClientConnection = asyncio.run_coroutine_threadsafe(
            self._connect(url), self._loop
        ).result(30)
        self._reader = asyncio.run_coroutine_threadsafe(self._read(), self._loop)

    async def _connect(self, url: str) -> WebSocketClientConnection:
        return await websocket_connect(url)

    async def _read(self) -> None:
        while (message := await self._socket.read_message()) is not None:
            data = json.loads(message)
            if data.get("schema_id") == wire.JOB_CHANGES_SCHEMA_ID:
                data["frame_bytes"] = len(message.encode() if isinstance(message, str) else message)
                self.events.put(data)

    def next(self, timeout: float = EVENT_WAIT) -> dict[str, Any]:
        """The next job-change event; fails after ``timeout`` seconds without one."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no job-change event within {timeout} s") from None

    def until(self, condition: Any, timeout: float = EVENT_WAIT) -> list[dict[str, Any]]:
        """Events up to the first one for which ``condition(event)`` holds."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = self.next(max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if condition(event):
                return seen

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._socket.close)
        self._reader.result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture
def events(server: Server) -> Iterator[EventStream]:
    stream = EventStream(server)
    try:
        yield stream
    finally:
        stream.close()


@pytest.fixture
def store(server: Server) -> Iterator[JobStore]:
    """The server's store, opened by this process (as a kernel opens it)."""
    opened = JobStore(server.home)
    try:
        yield opened
    finally:
        opened.close()


def job_of(event: dict[str, Any], job_id: int | None) -> dict[str, Any] | None:
    return next((job for job in event["jobs"] if job["id"] == job_id), None)


# --------------------------------------------------------------------------- the schema


def test_the_shipped_schema_is_the_one_made_from_the_wire_fields() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "regenerate it: python -m jobmagic.server.event_schema > " + str(SCHEMA_PATH)
    )
    job = schema()["properties"]["jobs"]["items"]
    assert list(job["properties"]) == [field.name for field in wire.FIELDS]
    assert job["required"] == [field.name for field in wire.FIELDS]
    registered = EventSchema(SCHEMA_PATH)  # what jupyter_server checks it with
    assert (registered.id, registered.version) == (wire.JOB_CHANGES_SCHEMA_ID, "1")


def test_the_schema_takes_real_jobs_and_refuses_a_wrong_one(store: JobStore) -> None:
    record = store.create(JobSpec("echo hi"))
    event = {
        "version": 3,
        "previous": 2,
        "store": store.generation,
        "reload": False,
        "jobs": [wire.job_json(record)],
        "removed": [],
        "counts": revisions.state_counts(store),
    }
    checked = EventSchema(SCHEMA_PATH)
    checked.validate(event)
    wrong = {**event, "jobs": [{**wire.job_json(record), "state": "sleeping"}]}
    with pytest.raises(Exception, match="sleeping"):
        checked.validate(wrong)


def test_events_are_made_only_while_someone_would_hear_them() -> None:
    import logging

    from jupyter_events import EventLogger

    from jobmagic.server.job_events import listened_to

    async def heard(event: Any, /, *args: Any) -> None:
        pass

    logger = EventLogger()
    logger.register_event_schema(SCHEMA_PATH)
    assert listened_to(logger) is False  # (what a server with no page open has)
    other = "https://events.jobmagic.dev/test-other"
    logger.register_event_schema({"$id": other, "version": "1", "type": "object", "properties": {}})
    logger.add_listener(schema_id=other, listener=heard)
    assert listened_to(logger) is False
    logger.add_listener(listener=heard)  # every schema: a page's /api/events/subscribe
    assert listened_to(logger) is True
    logger.remove_listener(listener=heard)
    assert listened_to(logger) is False
    logger.register_handler(logging.NullHandler())  # an events log file, say
    assert listened_to(logger) is True


# --------------------------------------------------------------------------- GET jobs


def test_every_answer_names_the_store_its_revision_total_and_counts(
    server: Server, store: JobStore
) -> None:
    listing = get_json(server, API)
    assert listing["store"] == store.generation
    assert listing["version"] == revisions.current(store)
    assert listing["counts"] == revisions.state_counts(store)
    assert listing["total"] == len(listing["jobs"]) == sum(listing["counts"].values())
    assert "since" not in listing
    assert "full" not in listing
    only = get_json(server, f"{API}?state=failed&state=stopped")
    assert only["total"] == listing["counts"]["failed"] + listing["counts"]["stopped"]


def test_since_answers_the_changed_jobs_and_the_removed_ids(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    waiting = service.start(f"read line < {fifo}", name="waiter")
    untouched = service.start("true")
    doomed = service.start("true")
    assert untouched.wait(30) == 0
    assert doomed.wait(30) == 0
    before = get_json(server, API)

    with fifo.open("w") as go:
        go.write("go\n")
    assert waiting.wait(30) == 0
    service.remove(doomed.id or 0)
    added = service.start("exit 4")
    assert added.wait(30) == 4

    changes = get_json(server, f"{API}?since={before['version']}&store={before['store']}")

    assert changes["since"] == before["version"]
    assert changes["version"] > before["version"]
    assert [job["id"] for job in changes["jobs"]] == [waiting.id, added.id]
    assert [job["state"] for job in changes["jobs"]] == ["succeeded", "failed"]
    assert changes["removed"] == [doomed.id]
    assert changes["counts"] == get_json(server, API)["counts"]
    assert list(changes["jobs"][0]) == [field.name for field in wire.FIELDS]
    # From the revision it answered at, nothing more.
    again = get_json(server, f"{API}?since={changes['version']}")
    assert (again["jobs"], again["removed"]) == ([], [])


def test_since_of_another_store_or_of_a_later_revision_is_the_whole_list(server: Server) -> None:
    listing = get_json(server, API)
    for query in (
        f"since={listing['version']}&store=0ther5tore",
        f"since={listing['version'] + 1000}",
        f"since={2**70}",
    ):
        full = get_json(server, f"{API}?{query}")
        assert full["full"] is True, query
        assert "since" not in full
        assert "removed" not in full
        assert [job["id"] for job in full["jobs"]] == [job["id"] for job in listing["jobs"]]


def test_limit_offset_and_order_page_through_the_jobs(server: Server, store: JobStore) -> None:
    made = insert_finished_jobs(store, 7, ended_before=time.time())
    finished = "state=succeeded&state=failed&state=stopped"
    everything = get_json(server, f"{API}?{finished}")
    ids = [job["id"] for job in everything["jobs"]]
    assert ids == sorted(ids)
    assert set(made) <= set(ids)

    newest = get_json(server, f"{API}?{finished}&order=newest&limit=3")
    assert [job["id"] for job in newest["jobs"]] == ids[::-1][:3] == made[::-1][:3]
    assert newest["total"] == len(ids)
    page = get_json(server, f"{API}?{finished}&order=newest&limit=2&offset=3")
    assert [job["id"] for job in page["jobs"]] == ids[::-1][3:5]
    oldest = get_json(server, f"{API}?{finished}&limit=2&offset=1")
    assert [job["id"] for job in oldest["jobs"]] == ids[1:3]
    assert get_json(server, f"{API}?limit=0")["jobs"] == []
    # Past what SQLite counts, a limit is no limit and an offset skips everything.
    assert len(get_json(server, f"{API}?{finished}&limit={2**70}")["jobs"]) == len(ids)
    assert get_json(server, f"{API}?offset={2**70}")["jobs"] == []
    # Since, limit and order together: the newest changes first.
    since = get_json(server, f"{API}?since={everything['version'] - 2}&order=newest&limit=1")
    assert [job["id"] for job in since["jobs"]] == [made[-1]]


def test_bad_list_arguments_get_400_with_one_line(server: Server) -> None:
    too_long = "9" * 5000
    for query in (
        "since=abc",
        "since=-1",
        f"since={too_long}",
        "limit=-1",
        "limit=ten",
        "offset=1.5",
        "offset=-2",
        "order=sideways",
        "order=",
        "store=../../etc",
        f"store={'a' * 65}",
        "state=done",
    ):
        reply = request(server, "GET", f"{API}?{query}")
        assert reply.status == 400, (query[:60], reply.body[:200])
        message = reply.json()["message"]
        assert message
        assert "\n" not in message
        assert len(message) < 200, query[:60]


def test_wait_for_with_another_store_answers_at_once(server: Server) -> None:
    listing = get_json(server, API)
    started = time.monotonic()
    answer = get_json(server, f"{API}?wait_for={listing['version']}&store=other&timeout=20")
    assert time.monotonic() - started < 10
    assert answer["version"] == listing["version"]


# --------------------------------------------------------------------------- events


def test_a_job_change_is_pushed_as_one_event_with_its_job(
    server: Server, service: WorkerService, events: EventStream, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job = service.start(f"read line < {fifo}", name="pushed")
    started = events.until(lambda e: (j := job_of(e, job.id)) and j["state"] == "running")
    with fifo.open("w") as go:
        go.write("go\n")
    assert job.wait(30) == 0

    ended = events.until(lambda e: (j := job_of(e, job.id)) and j["state"] == "succeeded")

    chain = started + ended
    for earlier, later in itertools.pairwise(chain):
        assert later["previous"] == earlier["version"], "events form one chain of revisions"
    last = ended[-1]
    assert last["store"] == JobStore(server.home).generation
    assert last["reload"] is False
    assert job_of(last, job.id) == get_json(server, f"{API}/{job.id}")
    assert last["counts"] == get_json(server, API)["counts"]
    assert last["frame_bytes"] < 2048


def test_changes_are_coalesced_and_a_flood_asks_for_a_reload(
    server: Server, store: JobStore, events: EventStream
) -> None:
    made = insert_finished_jobs(store, 30, ended_before=time.time())  # one commit

    [batch] = events.until(lambda e: bool(e["jobs"]))
    assert [job["id"] for job in batch["jobs"]] == made, "one event per pass, not per job"
    assert batch["reload"] is False

    flood = insert_finished_jobs(store, MAX_EVENT_JOBS + 1, ended_before=time.time())
    [reload] = events.until(lambda e: e["version"] >= revisions.current(store))
    assert reload["reload"] is True
    assert (reload["jobs"], reload["removed"]) == ([], [])
    assert reload["counts"] == revisions.state_counts(store)
    changes = get_json(server, f"{API}?since={reload['previous']}")
    assert [job["id"] for job in changes["jobs"]] == flood

    with store.write() as db:
        db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in made])
    [removal] = events.until(lambda e: bool(e["removed"]))
    assert (removal["removed"], removal["jobs"]) == (made, [])


# A kernel that starts a detached job, then dies when the test says (it reads a FIFO).
_KERNEL_DYING_ON_CUE = textwrap.dedent(
    """
    import os, sys
    from jobmagic.engine.service import WorkerService
    job = WorkerService(home=sys.argv[1]).start(sys.argv[2], detach=True)
    print(job.id, job.pid, flush=True)
    with open(sys.argv[3]) as cue:
        cue.read()
    os._exit(0)
    """
)


@contextlib.contextmanager
def kernel_dying_on_cue(server: Server, command: str, cue: Path) -> Iterator[IO[str]]:
    """Run ``_KERNEL_DYING_ON_CUE`` under test_server_api's init (a subreaper that reaps
    the orphaned job's processes); yields init's output (the job's id, once the kernel
    has exited). Opening the FIFO ``cue`` for writing kills the kernel."""
    init = subprocess.Popen(
        [sys.executable, "-c", _INIT, _KERNEL_DYING_ON_CUE, str(server.home), command, str(cue)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert init.stdout is not None
    try:
        yield init.stdout
    finally:
        if init.poll() is None:  # the kernel may still wait for its cue
            with contextlib.suppress(OSError):
                os.close(os.open(cue, os.O_WRONLY | os.O_NONBLOCK))
        init.wait(30)
        init.stdout.close()


def test_a_kernels_death_is_pushed_and_has_a_revision(
    server: Server, events: EventStream, tmp_path: Path
) -> None:
    cue = tmp_path / "die"
    os.mkfifo(cue)
    command = f"sleep 300 # {tmp_path.name}"
    before = get_json(server, API)["version"]
    job_id = None
    with kernel_dying_on_cue(server, command, cue) as init:
        try:
            ours = lambda e: next((j for j in e["jobs"] if j["command"] == command), None)  # noqa: E731
            running = events.until(lambda e: (j := ours(e)) and j["state"] == "running")
            job_id = ours(running[-1])["id"]  # type: ignore[index]
            assert ours(running[-1])["orphaned"] is False  # type: ignore[index]
            with cue.open("w"):  # the kernel dies now (nothing writes the job's row)
                pass
            assert int(init.readline().split()[0]) == job_id  # once the kernel has exited

            orphaned = events.until(lambda e: (j := job_of(e, job_id)) and j["orphaned"] is True)

            assert job_of(orphaned[-1], job_id)["state"] == "running"  # type: ignore[index]
            changes = get_json(server, f"{API}?since={running[-1]['version']}")
            assert job_in(changes, job_id)["orphaned"] is True
            assert changes["version"] > before
            assert request(server, "POST", f"{API}/{job_id}/stop").status == 202
            stopped = events.until(lambda e: (j := job_of(e, job_id)) and j["state"] == "stopped")
            assert stopped[-1]["version"] > orphaned[-1]["version"]
        finally:
            if job_id is not None and job_in(get_json(server, API), job_id)["state"] == "running":
                request(server, "POST", f"{API}/{job_id}/stop")


def test_a_job_that_ends_after_its_kernel_died_is_pushed_finished_unasked(
    server: Server, events: EventStream, tmp_path: Path
) -> None:
    cue, go = tmp_path / "die", tmp_path / "go"
    os.mkfifo(cue)
    os.mkfifo(go)
    command = f"read line < {go}; exit 3 # {tmp_path.name}"
    with kernel_dying_on_cue(server, command, cue) as init:
        try:
            ours = lambda e: next((j for j in e["jobs"] if j["command"] == command), None)  # noqa: E731
            running = events.until(lambda e: (j := ours(e)) and j["state"] == "running")
            job_id = ours(running[-1])["id"]  # type: ignore[index]
            with cue.open("w"):  # the kernel dies now; its job runs on
                pass
            assert int(init.readline().split()[0]) == job_id
            events.until(lambda e: (j := job_of(e, job_id)) and j["orphaned"] is True)

            # The job ends by itself, and nobody asks the server anything: its watch of
            # the orphan (made once the kernel died) sees the end; the reconcile records it.
            go.write_text("go\n")
            ended = events.until(lambda e: (j := job_of(e, job_id)) and j["state"] != "running")

            assert job_of(ended[-1], job_id)["state"] == "failed"  # type: ignore[index]
            assert job_of(ended[-1], job_id)["exit_code"] == 3  # type: ignore[index]
        finally:
            with contextlib.suppress(OSError):  # the job may still wait for its line
                os.close(os.open(go, os.O_WRONLY | os.O_NONBLOCK))


def test_a_queued_jobs_new_place_has_a_revision(
    server: Server, service: WorkerService, tmp_path: Path
) -> None:
    fifos = [tmp_path / f"go{n}" for n in range(3)]
    for fifo in fifos:
        os.mkfifo(fifo)
    service.set_group("one-at-a-time", 1)
    jobs = [service.start(f"read x < {fifo}", group="one-at-a-time") for fifo in fifos]
    third = jobs[2].id or 0
    try:
        assert jobs[0].state is JobState.RUNNING
        listing = get_json(server, API)
        assert job_in(listing, third)["queue_reason"] == "2nd in group one-at-a-time (1/1 running)"

        with fifos[0].open("w") as go:  # the first ends; the second starts
            go.write("go\n")
        assert jobs[0].wait(30) == 0

        # The third job's row stays as it was; its place moved, and that has a revision.
        deadline = time.monotonic() + EVENT_WAIT
        while True:
            changes = get_json(server, f"{API}?since={listing['version']}")
            listed = [job for job in changes["jobs"] if job["id"] == third]
            if listed and listed[0]["queue_reason"] == "1st in group one-at-a-time (1/1 running)":
                break
            assert time.monotonic() < deadline, f"no new place for job {third}: {listed}"
            get_json(server, f"{API}?wait_for={changes['version']}&timeout=5")
    finally:
        for job in jobs:
            job.stop(timeout=5)


def test_nothing_is_emitted_while_nothing_changes(
    server: Server, service: WorkerService, events: EventStream
) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    read_until(job, b"ready")
    try:
        events.until(lambda e: (j := job_of(e, job.id)) and j["state"] == "running")
        while True:  # what the start brought, to the last event
            try:
                events.events.get(timeout=1.0)
            except queue.Empty:
                break
        cpu = test_server_api.cpu_seconds(server.process.pid)
        with pytest.raises(AssertionError, match="no job-change event"):
            events.next(timeout=3.0)
        assert test_server_api.cpu_seconds(server.process.pid) - cpu < 0.2
    finally:
        job.stop(timeout=5)


# --------------------------------------------------------------------------- derived fields


def test_derived_fields_touch_each_change_once(jobmagic_home: Path) -> None:
    from jobmagic.server.derived import DerivedFields
    from jobmagic.store.job_queue import JobQueue

    store = JobStore(jobmagic_home)
    try:
        JobQueue(store).set_group("one", 1)
        running = store.create(JobSpec("sleep 9", group="one")).id
        store.update(running, state=JobState.RUNNING)
        queued = [store.create(JobSpec("true", group="one")).id for _ in range(2)]
        orphan = store.create(JobSpec("sleep 9")).id
        store.update(orphan, state=JobState.RUNNING, owner_pid=os.getpid(), owner_start=1)
        derived = DerivedFields()

        # The first look: what the rows alone do not say (places, an orphan).
        assert derived.touch_changed(store) == [*queued, orphan]
        after = revisions.current(store)
        assert derived.touch_changed(store) == []
        assert derived.touch_changed(store) == []
        assert revisions.current(store) == after, "a look with no change writes nothing"

        store.finish(running, JobState.SUCCEEDED, 0, None)  # the places move up
        assert derived.touch_changed(store) == queued
        assert derived.touch_changed(store) == []
    finally:
        store.close()
