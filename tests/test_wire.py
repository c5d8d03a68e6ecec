"""The REST API's wire schema: explicit fields, and TypeScript types generated from them."""

from __future__ import annotations

import json
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
        private = {"owner_pid", "owner_start", "backend_ref", "log_path", "env_keys", "shell"}
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
    assert [f.name for f in wire.FIELDS][-3:] == ["address", "where", "detail"]
    assert wire.SCHEMA_VERSION == 1  # fields were added, none renamed: same version
