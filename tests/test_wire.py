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
