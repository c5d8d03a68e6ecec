"""The REST API's JSON: the wire schema, explicit and versioned, not the store's record.

``job_json(record)`` is how a job goes to the browser (and to scripts); nothing of the
store's private bookkeeping (owner pids, backend references, status files) leaves this
way. (The log's path does: users copy it to open the log with their own tools.)
``usage_json`` is the answer of ``GET jobs/{id}/usage``. The TypeScript types in
``labextension/src/wire.ts`` are generated from ``FIELDS``, ``LIMIT_FIELDS`` and
``USAGE_FIELDS``: ``python -m jobmagic.store.wire > labextension/src/wire.ts``; a test
checks they agree.
Add a field by appending it here (clients ignore fields they do not know); renaming or
removing one is a new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from typing import Any

from jobmagic.core.limits import Usage
from jobmagic.core.state import JobState
from jobmagic.store.records import JobRecord
from jobmagic.text.describe import exit_text, where_text

#: The version of the schema below; clients see it as ``schema_version`` in every list.
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a job: its name, its TypeScript type and what it means."""

    name: str
    typescript: str
    doc: str


FIELDS = (
    Field("id", "number", "The job's number, unique in its store."),
    Field(
        "name", "string | null", "Its alias (unique among queued and running jobs), if it has one."
    ),
    Field("command", "string", "The shell command line it runs."),
    Field("cwd", "string | null", "Its working directory; null means its kernel's."),
    Field("state", "JobState", "Where it is in its life."),
    Field(
        "exit_code",
        "number | null",
        "Popen-style: negative N means killed by signal N; null while it runs or when unknown.",
    ),
    Field(
        "exit_text",
        "string | null",
        'The exit code for people: "exit code 3", "killed by SIGKILL"; null when there is none.',
    ),
    Field(
        "error",
        "string | null",
        "One line a person can act on when it failed or was stopped, else null.",
    ),
    Field(
        "pid",
        "number | null",
        "The process id of its process group leader, where its backend has one.",
    ),
    Field(
        "backend",
        "string",
        'What runs it: "local" (a process on this machine) or "ray" (a job on a Ray cluster).',
    ),
    Field("created_at", "number", "When it was submitted."),
    Field("started_at", "number | null", "When its process started; null while queued."),
    Field("ended_at", "number | null", "When it ended; null while queued or running."),
    Field(
        "runtime",
        "number | null",
        "Seconds it has run (paused time left out) when the answer was made; null before it"
        " started.",
    ),
    Field(
        "paused_at",
        "number | null",
        "When the pause under way began; null unless it is paused.",
    ),
    Field(
        "orphaned",
        "boolean",
        "Queued or running, but the kernel that started it is gone and nobody adopted it.",
    ),
    Field("owner", "string | null", 'The kernel that owns it, as "host:pid".'),
    Field("detached", "boolean", "It keeps running when its kernel shuts down or restarts."),
    Field(
        "stop_requested_by",
        "string | null",
        'Who asked it to stop ("kernel", "ui", "timeout", "cli"), if anyone did.',
    ),
    Field("group", "string", 'The queue group it waits and runs in ("default" unless named).'),
    Field("priority", "number", "Its priority in its group: higher starts first."),
    Field("after", "number[]", "Ids of the jobs that must succeed before it starts."),
    Field(
        "queue_reason",
        "string | null",
        'Why it has not started yet ("waiting for job 7", "2nd in group gpu (2/2 running)").',
    ),
    Field("restarted_from", "number | null", "The job this one is a restart of, if any."),
    Field("gpus", "number", "How many devices it takes from the GPU pool while it runs."),
    Field(
        "resources",
        "Record<string, number>",
        'Units it takes from named pools while it runs ({"license": 1}).',
    ),
    Field("devices", "string[]", "The GPU devices it holds (CUDA_VISIBLE_DEVICES)."),
    Field("limits", "ILimits", "The resource limits it was started with."),
    Field(
        "containment",
        "string | null",
        'What holds it to its limits: "cgroup v1", "cgroup v2" or "none", then any'
        ' "; best effort: ..." notes; null before it started or when its backend says nothing.',
    ),
    Field(
        "peak_memory",
        "number | null",
        "The most bytes of memory it used at once, once it has ended; null before, or when"
        " unknown.",
    ),
    Field(
        "cpu_seconds",
        "number | null",
        "CPU seconds it used in all (user plus system), once it has ended; null before, or"
        " when unknown.",
    ),
    Field(
        "address",
        "string | null",
        'The cluster it was submitted to (Ray: "http://HOST:8265"); null for a local job.',
    ),
    Field(
        "where",
        "string",
        'Where it runs, as people read it: "local", "ray http://HOST:8265", with the node'
        ' once known: "ray http://HOST:8265 (node 10.0.0.7)".',
    ),
    Field(
        "detail",
        "string | null",
        'What its backend says of it while it runs: "waiting for the Ray cluster", "lost'
        ' contact with the Ray cluster at ..."; null: nothing.',
    ),
    Field(
        "notebook",
        "string | null",
        "The notebook whose kernel started it (its path, as Jupyter names the kernel's"
        " session); null when not started from a notebook, or not known.",
    ),
    Field(
        "log_path",
        "string | null",
        "The file its output goes to, on the server's machine; null before it has one.",
    ),
    Field(
        "stop_grace_left",
        "number | null",
        "While a stop is under way: seconds, when the answer was made, until what is left"
        " of it is killed (0 once that time has passed); null when no stop is under way or"
        " the stopper did not say.",
    ),
)

#: A job's ``limits``: the TypeScript ``ILimits``.
LIMIT_FIELDS = (
    Field("memory", "number | null", "Bytes of memory its processes may use together."),
    Field("cpus", "number | null", "How many CPUs' worth of time its processes may use together."),
    Field("pids", "number | null", "How many processes (and threads) it may have at once."),
)

#: What ``GET jobs/{id}/usage`` answers: a job's usage, live while it runs.
USAGE_FIELDS = (
    Field(
        "memory",
        "number | null",
        "Bytes of memory it uses now; null once it has ended, or when unknown.",
    ),
    Field(
        "peak_memory",
        "number | null",
        "The most bytes it has used at once; null when its backend cannot tell.",
    ),
    Field("cpu_seconds", "number | null", "CPU seconds it has used so far; null when unknown."),
    Field(
        "cpu_percent",
        "number | null",
        "Its CPU use since the previous reading (or its start), 100 per busy core; null once"
        " it has ended, or when unknown.",
    ),
    Field(
        "running",
        "boolean",
        "Whether the figures are live (it is running or paused), not what it used in all.",
    ),
)


def node_of(record: JobRecord) -> str | None:
    """The node that runs a job on a cluster, once its backend has said (else None)."""
    node = (record.backend_ref or {}).get("node")
    return node if isinstance(node, str) else None


def stop_grace_left(record: JobRecord, now: float | None = None) -> float | None:
    """Seconds until a stop under way kills what is left of the job (see ``FIELDS``)."""
    if record.stop_deadline is None or record.state.is_finished:
        return None
    left = record.stop_deadline - (time.time() if now is None else now)
    return round(max(0.0, left), 1)


def job_json(record: JobRecord, queue_reason: str | None = None) -> dict[str, Any]:
    """A job as the API sends it: exactly the fields of ``FIELDS``, in that order.

    ``queue_reason``: why a queued job waits, as ``JobQueue.reasons`` works it out (the
    record stores only the reasons that are not a place in a group).
    """
    # Every other field is the record's attribute of that name.
    derived: dict[str, Any] = {
        "queue_reason": queue_reason or record.queue_reason,
        "state": record.state.value,
        "exit_text": exit_text(record.exit_code),
        "group": record.group_name,
        "after": record.after_ids,
        "devices": record.gpus_held,
        "where": where_text(record.backend, record.address, node_of(record)),
        "notebook": record.session,
        "log_path": record.log_path or None,
        "stop_grace_left": stop_grace_left(record),
        # From the columns, not ``record.limits``: a listing never fails on one odd record.
        "limits": {
            "memory": record.memory_limit,
            "cpus": record.cpu_limit,
            "pids": record.pids_limit,
        },
    }
    return {
        field.name: derived[field.name] if field.name in derived else getattr(record, field.name)
        for field in FIELDS
    }


def usage_json(usage: Usage | None, *, running: bool) -> dict[str, Any]:
    """The answer of ``GET jobs/{id}/usage``: exactly the fields of ``USAGE_FIELDS``.

    ``usage``: a live reading (``running``), or what an ended job used in all; None when
    nothing is known (every figure is then null).
    """
    usage = usage or Usage()
    figures = dataclasses.asdict(usage)
    return {
        field.name: running if field.name == "running" else figures[field.name]
        for field in USAGE_FIELDS
    }


def job_list_json(
    records: list[JobRecord],
    version: int,
    reasons: Mapping[int, str] | None = None,
    *,
    store: str | None = None,
    since: int | None = None,
    full: bool = False,
    total: int | None = None,
    counts: Mapping[str, int] | None = None,
    removed: list[int] | None = None,
) -> dict[str, Any]:
    """The answer of ``GET jobs``: the schema version, the change version, the jobs.

    The server's answer names the ``store`` (its generation), the ``total`` of jobs the
    filters match and the ``counts`` by state; an answer to ``?since=`` has ``since`` and
    ``removed`` (or ``full``, when it had to be the whole list). The keys left as None
    (or ``full`` False) are left out, as in the command line's ``list --json``.
    """
    reasons = reasons or {}
    envelope: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "version": version}
    optional = {"store": store, "since": since, "full": full or None, "total": total}
    envelope.update({key: value for key, value in optional.items() if value is not None})
    if counts is not None:
        envelope["counts"] = dict(counts)
    if removed is not None:
        envelope["removed"] = removed
    envelope["jobs"] = [job_json(record, reasons.get(record.id)) for record in records]
    return envelope


#: The ``$id`` of the jupyter_events schema of job changes (``jobmagic/server/events/``).
JOB_CHANGES_SCHEMA_ID = "https://events.jobmagic.dev/job-changes"
#: Its version (``IJobChanges`` in wire.ts); a new one for any change a listener could notice.
JOB_CHANGES_VERSION = 1


def typescript() -> str:
    """``labextension/src/wire.ts``: the TypeScript types of this schema."""
    states = " | ".join(f"'{state.value}'" for state in JobState)
    fields = _typescript_fields(FIELDS)
    limit_fields = _typescript_fields(LIMIT_FIELDS)
    usage_fields = _typescript_fields(USAGE_FIELDS)
    return f"""// The jobmagic REST API's JSON, as TypeScript types.
// Generated from jobmagic/store/wire.py by `python -m jobmagic.store.wire`;
// do not edit by hand (tests/test_wire.py checks that the two agree).

/** The version of the wire schema these types describe. */
export const WIRE_SCHEMA_VERSION = {SCHEMA_VERSION};

/** A job's lifecycle state. */
export type JobState =
  {states};

/** A job's resource limits; null means no limit of that kind. */
export interface ILimits {{
{limit_fields}
}}

/** One job as the API sends it. Times are epoch seconds. */
export interface IJob {{
{fields}
}}

/** The answer of `GET jobs/{{id}}/usage`: live while it runs, else what it used in all. */
export interface IJobUsage {{
{usage_fields}
}}

/** The answer of `GET jobs`: the jobs asked for, and the store's change version. */
export interface IJobList {{
  /** The wire schema version of this answer. */
  schema_version: number;
  /** The store's revision when read: every change up to it is in this answer. */
  version: number;
  /** The store's generation: a revision means something only with the same store. */
  store: string;
  /** With `?since=`: the revision the changes are counted from. */
  since?: number;
  /** With `?since=` that could not be answered with changes: `jobs` is the whole list. */
  full?: boolean;
  /** How many jobs match the `state` filter (before `limit` and `offset`). */
  total: number;
  /** How many jobs the store has in each state. */
  counts: Record<JobState, number>;
  /** With `?since=`: the ids of the jobs removed since, ascending. */
  removed?: number[];
  /** The jobs, oldest first (newest first with `?order=newest`). */
  jobs: IJob[];
}}

/** The `$id` of the jupyter_events schema of job-change events. */
export const JOB_CHANGES_SCHEMA_ID = '{JOB_CHANGES_SCHEMA_ID}';

/** A job-change event (schema `JOB_CHANGES_SCHEMA_ID`), coalesced per server pass. */
export interface IJobChanges {{
  /** The store's revision after these changes. */
  version: number;
  /** The revision of the server's previous event: a client at another has missed some. */
  previous: number;
  /** The store's generation. */
  store: string;
  /** Too many changes to send: `jobs` is empty, ask `GET jobs?since=`. */
  reload: boolean;
  /** The jobs changed or created since `previous`. */
  jobs: IJob[];
  /** The ids of the jobs removed since `previous`. */
  removed: number[];
  /** How many jobs the store has in each state. */
  counts: Record<JobState, number>;
}}
"""


def _typescript_fields(fields: tuple[Field, ...]) -> str:
    return "\n".join(f"  /** {f.doc} */\n  {f.name}: {f.typescript};" for f in fields)


if __name__ == "__main__":
    sys.stdout.write(typescript())
