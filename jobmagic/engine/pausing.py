"""Pausing and resuming another process's running job (``WorkerService.pause``).

Whoever pauses signals the whole job (the local backend: SIGSTOP to its process group)
and writes PAUSED to the store (``store/pauses.py``); the job's own kernel hears of it
through the store's ``pause_epoch``. A kernel's own jobs pause through their lifecycle.
"""

from __future__ import annotations

from jobmagic.backends.registry import Executors
from jobmagic.errors import JobmagicError
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import check_pausable, pause_and_record
from jobmagic.store.records import JobRecord


def pause_record(store: JobStore, executors: Executors, record: JobRecord, paused: bool) -> bool:
    """Pause or resume the job of ``record``; False when it was in that state already.

    Raises
    ------
    JobmagicError
        When the job is queued or has ended, or its execution is gone.
    StoreError
        When the move cannot be recorded (the job is left as it was).
    """
    check_pausable(record)
    execution = executors.require(record.backend).attach(record.backend_ref)
    if execution is None:
        raise JobmagicError(f"job {record.id} is no longer running")
    try:
        return pause_and_record(store, record.id, execution, paused)
    finally:
        execution.close()
