"""Keeping the records true: finishing the jobs that ended while nobody watched them.

A kernel records the end of the jobs it owns. When it dies first, its running jobs go on,
and whoever looks next (another kernel, the Jupyter server, the command line) finishes
their records from what the job's backend can still tell about the execution.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Protocol

from jobmagic.core.outcome import Outcome
from jobmagic.core.state import JobState, final_state

from .job_store import JobStore
from .records import JobRecord

#: The error of a job whose backend no longer knows how it ended.
UNKNOWN_END = "ended while no kernel was watching it; its exit status is unknown"


class OutcomeProbe(Protocol):
    """What reconciling asks of a backend (every ``Executor`` is one)."""

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """How the execution ``ref`` ended, or None while it still runs."""
        ...


def reconcile(store: JobStore, backends: Mapping[str, OutcomeProbe]) -> builtins.list[int]:
    """Finish the records of jobs whose owner is gone and whose execution has ended.

    A RUNNING job gets the exit code its backend reports (STOPPED when someone had asked
    it to stop). A QUEUED job whose owner died stays queued, orphaned: nothing starts it
    by itself, and a kernel may adopt it. Jobs whose owner is alive are left to their
    owner, and jobs of a backend not in ``backends`` are left alone. Returns the ids
    changed.
    """
    changed: builtins.list[int] = []
    for record in store.list(states=(JobState.RUNNING, JobState.PAUSED)):
        if record.owner_alive:
            continue
        backend = backends.get(record.backend)
        if backend is None:
            continue
        outcome = backend.probe(record.backend_ref)
        if outcome is None:
            continue
        finish_from_outcome(store, record, outcome)
        changed.append(record.id)
    return changed


def finish_from_outcome(store: JobStore, record: JobRecord, outcome: Outcome) -> None:
    """Record the end of ``record``'s job as its backend reported it."""
    state, error = final_state(outcome.exit_code, record.stop_requested_by, record.timeout)
    if state is JobState.FAILED:
        if outcome.reason is not None:
            error = outcome.reason
        elif outcome.exit_code is None:
            error = UNKNOWN_END
    ended_at = outcome.ended_at
    if ended_at is not None and record.started_at is not None:
        # A file's mtime is a little coarser than time.time(): never before the start.
        ended_at = max(ended_at, record.started_at)
    store.finish(record.id, state, outcome.exit_code, error, ended_at=ended_at, usage=outcome.usage)
