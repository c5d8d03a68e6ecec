"""Jobs this kernel does not own: another kernel's, an orphan's, or finished history.

A ``ForeignJob`` is read from the store, freshly on each look: nothing here watches it.
It can be stopped (with the same ``StopPolicy`` as everywhere) but not waited for or
followed until it is adopted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobmagic.store.records import JobRecord


class ForeignJob:
    """The store's view of a job owned by another process.

    Parameters
    ----------
    record:
        The job's record as last read.
    reread:
        Returns the job's current record (after reconciling), None once it is deleted.
    stop:
        ``stop(record, by, timeout, wait)``: stops the job for this kernel (with ``wait``:
        returns once the job has ended and its end is recorded).
    """

    def __init__(
        self,
        record: JobRecord,
        reread: Callable[[int], JobRecord | None],
        stop: Callable[[JobRecord, str, float | None, bool], None],
    ) -> None:
        self._reread = reread
        self._stop = stop
        # Guards _record: a view may be refreshed from several threads.
        self._lock = threading.Lock()
        self._record = record

    @property
    def record(self) -> JobRecord:
        """The record as last read."""
        with self._lock:
            return self._record

    def refresh(self) -> JobRecord:
        """Read the record again (an orphan that ended reads as ended) and return it."""
        record = self._reread(self.record.id)
        with self._lock:
            if record is not None:
                self._record = record
            return self._record

    def stop(self, by: str, timeout: float | None, wait: bool) -> None:
        """Stop the job on behalf of this kernel unless it has ended.

        The same policy as for an own job: SIGTERM, SIGKILL after ``timeout``. With
        ``wait``, returns once the job has ended and its end is recorded.
        """
        record = self.refresh()
        if not record.state.is_finished:
            self._stop(record, by, timeout, wait)
            if wait:
                self.refresh()

    def not_owned_message(self) -> str:
        """Why this kernel cannot wait for or follow the job, and what to do about it."""
        record = self.record
        if record.orphaned:
            return (
                f"job {record.id} was started by a kernel that is gone; adopt it first "
                f"(svc.adopt({record.id}) or %job adopt {record.id})"
            )
        return f"job {record.id} belongs to another kernel ({record.owner}); follow it there"
