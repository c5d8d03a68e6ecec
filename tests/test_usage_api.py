"""``GET jobs/{id}/usage`` and the limits in a job's JSON, against a real ``jupyter server``.

The server and the jobs' "kernel" (a ``WorkerService`` in this process, on the server's
job home) are those of ``test_server_api``.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import test_server_api
from helpers import python_cmd, wait_until
from test_server_api import API, Server, cpu_seconds, get_json, read_until, request

from jobmagic.engine.service import WorkerService
from jobmagic.store import wire

pytestmark = pytest.mark.timeout(60)

# The fixtures of the REST API's other tests: pytest finds them here by their names.
server = test_server_api.server
service = test_server_api.service

MiB = 1 << 20
#: The job prints its pid, then keeps one core busy.
BUSY = "import os\nprint('busy', os.getpid(), flush=True)\nwhile True: pass"


def usage_of(server: Server, job_id: int | None) -> dict[str, object]:
    answer = get_json(server, f"{API}/{job_id}/usage")
    assert list(answer) == [f.name for f in wire.USAGE_FIELDS], answer
    return dict(answer)


def test_a_busy_job_reads_live_with_its_cpu_rate(server: Server, service: WorkerService) -> None:
    job = service.start(python_cmd(BUSY))
    try:
        busy_pid = int(read_until(job, b"\n").split()[1])
        before_first = time.monotonic()
        first = usage_of(server, job.id)
        assert first["running"] is True
        assert isinstance(first["memory"], int)
        assert first["memory"] > 0
        assert isinstance(first["cpu_seconds"], float)
        assert isinstance(first["cpu_percent"], float), "the first rate is since its start"
        # The rate needs time to pass: wait until the job has burnt a second of CPU,
        # which also takes more than a second.
        burnt = cpu_seconds(busy_pid)
        wait_until(lambda: cpu_seconds(busy_pid) >= burnt + 1.0, 20, message="a CPU second")

        second = usage_of(server, job.id)
        between = time.monotonic() - before_first  # (the server's two readings: less)

        assert second["running"] is True
        assert isinstance(second["cpu_seconds"], float)
        # (/proc counts in clock ticks, the backend may count finer: allow a few.)
        assert second["cpu_seconds"] > first["cpu_seconds"] + 0.9
        assert isinstance(second["cpu_percent"], float)
        # The rate between the two readings: the CPU time used over at most `between`.
        # (Not "about 100": on a loaded machine one busy process gets less of a core.)
        used = second["cpu_seconds"] - first["cpu_seconds"]
        assert 0.9 * 100 * used / between <= second["cpu_percent"], (second, used, between)
        assert second["cpu_percent"] <= 100 * (os.cpu_count() or 1) + 10, second
        assert isinstance(second["memory"], int)
        assert second["memory"] > 0
        # Within a second of a reading, the server answers with that reading.
        assert usage_of(server, job.id) == second
    finally:
        job.stop(timeout=5)


def test_a_paused_job_reads_live(server: Server, service: WorkerService) -> None:
    job = service.start(python_cmd("import time; print('ready', flush=True); time.sleep(300)"))
    try:
        read_until(job, b"ready")
        job.pause()

        paused = usage_of(server, job.id)

        assert paused["running"] is True
        assert isinstance(paused["memory"], int)
        assert paused["memory"] > 0
    finally:
        job.stop(timeout=5)


def test_an_ended_job_answers_what_it_used_in_all(server: Server, service: WorkerService) -> None:
    # Writes 64 MiB, so that the pages count (a zeroed bytearray might not).
    job = service.start(python_cmd("data = b'x' * (64 << 20); print(len(data))"))
    assert job.wait(30) == 0
    record = service.store.get(job.id or 0)
    assert record is not None
    assert record.peak_memory is not None

    ended = usage_of(server, job.id)

    assert ended == {
        "memory": None,
        "peak_memory": record.peak_memory,
        "cpu_seconds": record.cpu_seconds,
        "cpu_percent": None,
        "running": False,
    }
    assert record.peak_memory >= 64 * MiB
    shown = get_json(server, f"{API}/{job.id}")
    assert (shown["peak_memory"], shown["cpu_seconds"]) == (
        record.peak_memory,
        record.cpu_seconds,
    )


def test_a_job_shows_its_limits_and_what_holds_it(server: Server, service: WorkerService) -> None:
    job = service.start("exit 0", memory="256M", cpus=0.5, best_effort=True)
    assert job.wait(30) == 0
    plain = service.start("exit 0")
    assert plain.wait(30) == 0

    shown = get_json(server, f"{API}/{job.id}")

    assert list(shown) == [f.name for f in wire.FIELDS]
    assert shown["limits"] == {"memory": 256 * MiB, "cpus": 0.5, "pids": None}
    assert list(shown["limits"]) == [f.name for f in wire.LIMIT_FIELDS]
    record = service.store.get(job.id or 0)
    assert record is not None
    assert record.containment
    assert shown["containment"] == record.containment
    listed = get_json(server, f"{API}?state=succeeded")["jobs"]
    [other] = [j for j in listed if j["id"] == plain.id]
    assert other["limits"] == {"memory": None, "cpus": None, "pids": None}


def test_unknown_jobs_are_404_and_bad_ids_400(server: Server) -> None:
    missing = request(server, "GET", f"{API}/987654/usage")
    assert missing.status == 404
    assert missing.json()["message"] == "no job 987654"
    assert request(server, "GET", f"{API}/0/usage").status == 404
    for bad in ("abc", "1.5"):
        reply = request(server, "GET", f"{API}/{bad}/usage")
        assert reply.status == 400, reply.body
        assert "integer" in reply.json()["message"]


def test_usage_without_credentials_gets_403(server: Server, service: WorkerService) -> None:
    job = service.start("true")
    assert job.wait(30) == 0
    reply = request(server, "GET", f"{API}/{job.id}/usage", auth=False)
    assert reply.status == 403, reply.body
    assert "peak_memory" not in json.loads(reply.body or b"{}")
