"""``DELETE jobmagic/api/jobs/{id}``: removing a finished job over REST, against a real server.

The server and the jobs' "kernel" are ``tests/test_server_api.py``'s fixtures: one
``jupyter server`` for this module, jobs started by a ``WorkerService`` in this process.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import test_server_api
from helpers import python_cmd
from test_server_api import (
    API,
    Server,
    finish_pending,
    get_json,
    read_until,
    request,
    start_pending,
)

from jobmagic.core.state import JobState
from jobmagic.engine.service import WorkerService

pytestmark = pytest.mark.timeout(60)

# pytest finds fixtures by name in the test's module: these are that module's own.
server = test_server_api.server
service = test_server_api.service

#: A job that says it is ready, then waits to be stopped.
SLEEPER = python_cmd("import signal; print('ready', flush=True); signal.pause()")


def job_files(service: WorkerService, job_id: int) -> list[Path]:
    """The files the store and the local backend keep for a job: its log and status file."""
    record = service.store.get(job_id)
    assert record is not None
    assert record.log_path is not None
    status = record.backend_ref.get("status")
    assert isinstance(status, str)
    return [Path(record.log_path), Path(status)]


def test_remove_without_credentials_gets_403_and_keeps_the_job(
    server: Server, service: WorkerService
) -> None:
    job = service.start("exit 3")
    assert job.wait(30) == 3
    assert job.id is not None
    files = job_files(service, job.id)

    assert request(server, "DELETE", f"{API}/{job.id}", auth=False).status == 403
    # Logged in by cookie, as a browser is, a DELETE without the XSRF token is refused too.
    login = request(server, "GET", f"{API}?token={server.token}", auth=False)
    cookies = SimpleCookie()
    for header in login.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    forged = request(server, "DELETE", f"{API}/{job.id}", auth=False, headers={"Cookie": cookie})
    assert forged.status == 403, forged.body
    assert "xsrf" in forged.json()["message"].lower()

    assert service.store.get(job.id) is not None
    assert all(path.exists() for path in files)


def test_remove_of_a_finished_job_deletes_its_record_and_files(
    server: Server, service: WorkerService
) -> None:
    job = service.start("echo output; exit 3", name="failing")
    assert job.wait(30) == 3
    assert job.id is not None
    files = job_files(service, job.id)
    assert files[0].read_bytes() == b"output\n"
    assert files[1].exists()
    listing = get_json(server, API)
    # A page following the change feed hears of the removal at once.
    pending = start_pending(server, f"{API}?wait_for={listing['version']}")

    reply = request(server, "DELETE", f"{API}/{job.id}")

    assert reply.status == 204, reply.body
    assert reply.body == b""
    assert service.store.get(job.id) is None
    assert [path for path in files if path.exists()] == []
    assert request(server, "GET", f"{API}/{job.id}").status == 404
    changed = finish_pending(pending)
    assert changed.status == 200
    assert changed.json()["version"] != listing["version"]
    assert job.id not in [j["id"] for j in changed.json()["jobs"]]
    # It is gone: a second removal finds no job.
    again = request(server, "DELETE", f"{API}/{job.id}")
    assert again.status == 404
    assert again.json()["message"] == f"no job {job.id}"


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING, JobState.PAUSED])
def test_remove_of_a_job_that_has_not_ended_is_409_and_keeps_it(
    server: Server, service: WorkerService, state: JobState
) -> None:
    service.set_group("single", 1)
    first = service.start(SLEEPER, group="single")
    read_until(first, b"ready")
    second = service.start(SLEEPER, group="single")
    if state is JobState.PAUSED:
        service.pause(first.id)
    job = second if state is JobState.QUEUED else first
    assert job.state is state
    assert job.id is not None

    reply = request(server, "DELETE", f"{API}/{job.id}")

    assert reply.status == 409, reply.body
    assert reply.json()["message"] == (f"job {job.id} is {state.value}; stop it before removing it")
    record = service.store.get(job.id)
    assert record is not None
    assert record.state is state
    if state is not JobState.QUEUED:
        assert all(path.exists() for path in job_files(service, job.id))
    service.stop_all()


def test_remove_of_no_job_is_404_and_a_bad_id_is_400(server: Server) -> None:
    missing = request(server, "DELETE", f"{API}/999999")
    assert missing.status == 404
    assert missing.json()["message"] == "no job 999999"
    assert request(server, "DELETE", f"{API}/0").status == 404
    assert request(server, "DELETE", f"{API}/abc").status == 400
