"""The Jupyter server and Ray jobs: it stops a dead kernel's Ray job through Ray's REST API.

The server runs no Ray of its own: it talks to the cluster's Jobs API over HTTP (the
Ray backend never imports Ray for that), attaches to the job, and records its end.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from test_ray import TERM_HANDLER
from test_server_api import API, Server, get_json, job_in, request, server  # noqa: F401 - fixture

from jobmagic.backends.ray.rest import JobsApi
from jobmagic.store.job_store import JobStore

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

# A kernel that starts a Ray job, waits until the job is under way, and dies at once.
_DYING_KERNEL = textwrap.dedent(
    """
    import os, sys
    from jobmagic.engine.service import WorkerService
    job = WorkerService(home=sys.argv[1]).start(sys.argv[3], backend="ray", address=sys.argv[2])
    for chunk in job.stream():
        if b"ready" in chunk:
            break
    print(job.id, flush=True)
    os._exit(0)
    """
)


def test_the_server_stops_a_dead_kernels_ray_job(server: Server, ray_address: str) -> None:  # noqa: F811 - the fixture
    command = TERM_HANDLER
    kernel = subprocess.run(
        [sys.executable, "-c", _DYING_KERNEL, str(server.home), ray_address, command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    job_id = int(kernel.stdout)
    before = get_json(server, API)
    job = job_in(before, job_id)
    assert (job["state"], job["orphaned"]) == ("running", True)

    reply = request(server, "POST", f"{API}/{job_id}/stop")
    assert reply.status == 202, reply.body

    version = before["version"]
    while job["state"] == "running":
        listing = get_json(server, f"{API}?wait_for={version}")
        version, job = listing["version"], job_in(listing, job_id)
    assert (job["state"], job["stop_requested_by"]) == ("stopped", "ui")

    record = JobStore(server.home).get(job_id)
    assert record is not None
    assert record.backend_ref is not None
    info = JobsApi(ray_address).info(record.backend_ref["submission_id"])
    assert info["status"] == "STOPPED"
    log = request(server, "GET", f"{API}/{job_id}/log")
    assert log.body == b"ready\ngot TERM\n"
