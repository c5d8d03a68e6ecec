"""The jupyter_events schema of job-change events, made from the wire schema's fields.

The server registers ``events/job-changes.json`` with jupyter_server's event bus, which
checks every event against it before any listener gets it. Its job objects are the
fields of ``jobmagic.store.wire.FIELDS``; regenerate the file after a change there with
``python -m jobmagic.server.event_schema > jobmagic/server/events/job-changes.json`` (a
test checks that the two agree, as for ``labextension/src/wire.ts``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobmagic.core.state import JobState
from jobmagic.store.wire import (
    FIELDS,
    JOB_CHANGES_SCHEMA_ID,
    JOB_CHANGES_VERSION,
    LIMIT_FIELDS,
    Field,
)

#: The schema file the server registers (shipped in the package).
SCHEMA_PATH = Path(__file__).with_name("events") / "job-changes.json"

_STATES = [state.value for state in JobState]
#: The JSON schema of each TypeScript type the wire's fields use.
_SIMPLE = {"number": "number", "string": "string", "boolean": "boolean"}


def _of_type(typescript: str) -> dict[str, Any]:
    """The JSON schema of one wire field's TypeScript type.

    Raises
    ------
    ValueError
        For a type this mapping does not know yet (add it here).
    """
    nullable = typescript.endswith(" | null")
    base = typescript.removesuffix(" | null")
    schema: dict[str, Any]
    if base in _SIMPLE:
        schema = {"type": _SIMPLE[base]}
    elif base.endswith("[]") and base[:-2] in _SIMPLE:
        schema = {"type": "array", "items": {"type": _SIMPLE[base[:-2]]}}
    elif base == "Record<string, number>":
        schema = {"type": "object", "additionalProperties": {"type": "number"}}
    elif base == "JobState":
        schema = {"enum": _STATES}
    elif base == "ILimits":
        schema = _object(LIMIT_FIELDS)
    else:
        raise ValueError(f"no JSON schema for the wire type {typescript!r}")
    if nullable:
        if "enum" in schema:
            return {"enum": [*schema["enum"], None]}
        return {**schema, "type": [schema["type"], "null"]}
    return schema


def _object(fields: tuple[Field, ...]) -> dict[str, Any]:
    """An object with exactly these fields, each described by its doc."""
    return {
        "type": "object",
        "required": [field.name for field in fields],
        "properties": {
            field.name: {"description": field.doc, **_of_type(field.typescript)} for field in fields
        },
    }


def schema() -> dict[str, Any]:
    """The schema of a job-changes event (what ``SCHEMA_PATH`` holds)."""
    job = {"description": "A job as GET jobs sends it (wire.job_json).", **_object(FIELDS)}
    counts = {
        "description": "How many jobs the store has in each state.",
        "type": "object",
        "required": _STATES,
        "properties": {state: {"type": "integer"} for state in _STATES},
    }
    return {
        "$id": JOB_CHANGES_SCHEMA_ID,
        "version": str(JOB_CHANGES_VERSION),
        "title": "jobmagic job changes",
        "personal-data": True,
        "description": (
            "The jobs of a jobmagic store that changed between two revisions, one event"
            " per pass of the server over the store (never one per job). A client that"
            " holds revision `previous` of store `store` applies `jobs` and `removed` and"
            " then holds `version`; a client at another revision, or an event with"
            " `reload`, asks GET jobmagic/api/jobs?since=REVISION&store=STORE instead."
            " Jobs carry their commands and paths: personal data."
        ),
        "type": "object",
        "required": ["version", "previous", "store", "reload", "jobs", "removed", "counts"],
        "properties": {
            "version": {
                "description": "The store's revision after these changes.",
                "type": "integer",
            },
            "previous": {
                "description": "The revision of the server's previous event.",
                "type": "integer",
            },
            "store": {"description": "The store's generation.", "type": "string"},
            "reload": {
                "description": "Too many changes for one event: `jobs` and `removed` are empty.",
                "type": "boolean",
            },
            "jobs": {"description": "The jobs changed or created.", "type": "array", "items": job},
            "removed": {
                "description": "The ids of the jobs removed.",
                "type": "array",
                "items": {"type": "integer"},
            },
            "counts": counts,
        },
    }


def schema_text() -> str:
    """``SCHEMA_PATH``'s text: the schema as indented JSON."""
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
