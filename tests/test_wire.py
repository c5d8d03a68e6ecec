"""The REST API's wire schema: explicit fields, and TypeScript types generated from them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jobmagic import WorkerService
from jobmagic.store import wire

pytestmark = pytest.mark.timeout(30)

WIRE_TS = Path(__file__).parent.parent / "labextension" / "src" / "wire.ts"


def test_the_typescript_types_are_generated_from_the_schema() -> None:
    assert WIRE_TS.read_text() == wire.typescript(), (
        "labextension/src/wire.ts is stale: python -m jobmagic.store.wire > "
        "labextension/src/wire.ts"
    )
    for field in wire.FIELDS:
        assert f"  {field.name}: {field.typescript};\n" in WIRE_TS.read_text()


def test_a_job_goes_out_as_the_schema_says_and_nothing_more(jobmagic_home: Path) -> None:
    service = WorkerService(home=jobmagic_home)
    try:
        job = service.start("exit 3", name="three")
        assert job.wait(10) == 3
        record = service.store.get(job.id or 0)
        assert record is not None
        data = wire.job_json(record)
        assert list(data) == [f.name for f in wire.FIELDS]
        assert json.loads(json.dumps(data)) == data
        assert data["exit_text"] == "exit code 3"
        assert (data["state"], data["name"], data["backend"]) == ("failed", "three", "local")
        private = {"owner_pid", "owner_start", "backend_ref", "env_keys", "shell", "rev"}
        assert not private & set(data)
        listing = wire.job_list_json([record], version=7)
        assert listing == {"schema_version": wire.SCHEMA_VERSION, "version": 7, "jobs": [data]}
    finally:
        service.shutdown()


def test_each_job_says_where_it_runs(jobmagic_home: Path) -> None:
    service = WorkerService(home=jobmagic_home)
    try:
        local = service.start("true")
        assert local.wait(10) == 0
        # Nothing listens there: the Ray job fails at once, recorded with its address.
        remote = service.start("true", backend="ray", address="http://127.0.0.1:1")
        records = [service.store.get(w.id or 0) for w in (local, remote)]
    finally:
        service.shutdown()
    shown = [wire.job_json(r) for r in records if r is not None]
    assert [(d["backend"], d["address"], d["where"], d["detail"]) for d in shown] == [
        ("local", None, "local", None),
        ("ray", "http://127.0.0.1:1", "ray http://127.0.0.1:1", None),
    ]
    assert [f.name for f in wire.FIELDS][-6:-3] == ["address", "where", "detail"]
    assert wire.SCHEMA_VERSION == 1  # fields were added, none renamed: same version


def test_a_job_names_its_notebook_its_log_and_the_grace_left_of_its_stop(
    jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/u/work/train.ipynb")
    service = WorkerService(home=jobmagic_home, stop_timeout=30)
    try:
        # A job that ignores SIGTERM: its stop waits out the grace period.
        job = service.start("trap '' TERM; echo ready; while :; do sleep 1; done", name="stubborn")
        for chunk in job.stream():  # follows the log while the job runs
            if b"ready" in chunk:
                break
        running = service.store.get(job.id or 0)
        assert running is not None
        data = wire.job_json(running)
        assert data["notebook"] == "/home/u/work/train.ipynb"
        assert data["log_path"] == str(job.log_path)
        assert data["stop_grace_left"] is None  # no stop asked for
        asked = time.time()
        job.stop(wait=False)
        stopping = service.store.get(job.id or 0)
        assert stopping is not None
        assert stopping.stop_deadline is not None
        assert asked + 30 <= stopping.stop_deadline <= time.time() + 30
        left = wire.job_json(stopping)["stop_grace_left"]
        assert 0 < left <= 30
        assert wire.stop_grace_left(stopping, now=stopping.stop_deadline + 5) == 0
        job.stop(timeout=0)  # kill it now
        ended = service.store.get(job.id or 0)
        assert ended is not None
        assert (ended.state.value, wire.job_json(ended)["stop_grace_left"]) == ("stopped", None)
    finally:
        service.shutdown()
