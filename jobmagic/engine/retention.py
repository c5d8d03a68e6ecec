"""Forgetting finished jobs: deleting them on request, and pruning the oldest by the limits.

A job's record and log go from the store; whatever its backend kept for it (the local
backend's status file) goes with them.
"""

from __future__ import annotations

import contextlib
import logging

from jobmagic.backends.registry import Executors
from jobmagic.errors import StoreError, UnknownBackend
from jobmagic.store.job_store import JobStore
from jobmagic.store.records import JobRecord

_log = logging.getLogger("jobmagic")


def delete_job(store: JobStore, executors: Executors, job_id: int) -> None:
    """Delete a finished job's record, log and backend files."""
    _discard_backend_files(executors, job_id, store.delete(job_id))


def prune(
    store: JobStore, executors: Executors, keep_finished: int, max_log_bytes: int
) -> list[int]:
    """Delete the oldest finished jobs beyond the retention limits; return their ids.

    A store that cannot be written is logged, not raised: pruning runs after a job ended,
    on the watcher thread, and must not stop it.
    """
    try:
        removed = store.prune(keep_finished, max_log_bytes)
    except StoreError:
        _log.exception("jobmagic could not prune old jobs")
        return []
    for record in removed:
        _discard_backend_files(executors, record.id, record)
    return [record.id for record in removed]


def _discard_backend_files(executors: Executors, job_id: int, record: JobRecord | None) -> None:
    backend = record.backend if record is not None else "local"
    with contextlib.suppress(UnknownBackend):
        executors.require(backend).discard(job_id, record.backend_ref if record else None)
