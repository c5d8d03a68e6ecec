"""Job changes pushed on jupyter_server's event bus, so that no page has to ask for them.

Each time the change feed's version moves (``changes.py``: inotify, pidfds), one pass
reads what changed since the last event, on the store thread, and emits one event of
schema ``wire.JOB_CHANGES_SCHEMA_ID`` (``events/job-changes.json``) on the server's
``EventLogger``: the jobs changed, the ids removed, the counts by state, and the
revisions before and after. A burst of changes during a pass is one more event, never
one per job; a pass with more than ``MAX_EVENT_JOBS`` changes sends ``reload`` instead
of the jobs, and clients ask ``GET jobs?since=``. Nothing runs while nothing changes.

JupyterLab's ``/api/events/subscribe`` websocket carries the events to every page.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from jobmagic.store import revisions
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.wire import JOB_CHANGES_SCHEMA_ID, job_json

from .changes import ChangeFeed
from .coalesced import CoalescedPass

if TYPE_CHECKING:
    from jupyter_events import EventLogger

#: The most jobs (changed or removed) one event carries; more make a ``reload`` event.
#: jupyter_events deep-copies and validates each event on the event loop, about 0.2 ms a
#: job here (40 ms for 200): past this, the clients' ``GET jobs?since=`` (made on the
#: store thread) costs the loop less.
MAX_EVENT_JOBS = 50


class JobEvents:
    """Emits an event for each pass over the store that finds changes.

    Parameters
    ----------
    feed : ChangeFeed
        The store's change feed; the events start at its first look, so make this
        before the feed starts.
    loop : asyncio.AbstractEventLoop
        The server's event loop (the feed's); call every method from its thread.
    event_logger : EventLogger
        jupyter_server's event bus (``serverapp.event_logger``), with the schema
        ``SCHEMA_PATH`` of ``event_schema.py`` registered.
    log : logging.Logger
        Where errors of a pass go.
    max_jobs : int
        See ``MAX_EVENT_JOBS``.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        loop: asyncio.AbstractEventLoop,
        event_logger: EventLogger,
        log: logging.Logger,
        max_jobs: int = MAX_EVENT_JOBS,
    ) -> None:
        self._feed = feed
        self._event_logger = event_logger
        self._log = log
        self._max_jobs = max_jobs
        # The revision the next event starts from; None until the feed's first look.
        self._emitted: int | None = None
        self._passes = CoalescedPass(loop, self._pass, log, "job events' pass")
        self._unsubscribe = feed.subscribe(self._on_change)

    def close(self) -> None:
        """Emit no more events; idempotent."""
        self._unsubscribe()
        self._passes.close()

    def _on_change(self) -> None:
        if self._emitted is None:
            # The feed's first look: what every later event counts from.
            self._emitted = self._feed.version
        elif self._feed.version != self._emitted:
            self._passes.soon()

    async def _pass(self) -> None:
        previous = self._emitted
        if previous is None:
            return
        if not listened_to(self._event_logger):
            # Nobody would hear it (no page is open): no pass over the store. A page that
            # subscribes later loads first, at a version the next event starts from.
            self._emitted = self._feed.version
            return
        store = self._feed.store
        event = await self._feed.store_thread.run(_changes_event, store, previous, self._max_jobs)
        if event is None:
            return
        # Moved before the emit: if it fails, clients see the next event's gap and ask.
        self._emitted = event["version"]
        self._event_logger.emit(schema_id=JOB_CHANGES_SCHEMA_ID, data=event)


def listened_to(event_logger: EventLogger) -> bool:
    """Whether an event of ours would reach anyone: a handler, or a listener of its schema.

    What ``EventLogger.emit`` looks at first (it drops an event nobody hears). It keeps
    that in attributes of its own; a logger without them counts as listened to.
    """
    if getattr(event_logger, "handlers", True):
        return True
    return any(
        getattr(event_logger, name, {None: True}).get(JOB_CHANGES_SCHEMA_ID)
        for name in ("_modified_listeners", "_unmodified_listeners")
    )


def _changes_event(store: JobStore, previous: int, max_jobs: int) -> dict[str, Any] | None:
    """The event of the changes after revision ``previous``; None when there are none.

    On the store thread.
    """
    changes = revisions.changes_since(store, previous)
    if changes.revision == previous:
        return None
    # (A revision older than the last event's is a store file put back from a copy:
    # what clients hold cannot be patched, they reload.)
    reload = changes.revision < previous or len(changes.rows) + len(changes.removed) > max_jobs
    jobs: list[dict[str, Any]] = []
    if not reload:
        records = changes.records
        reasons = JobQueue(store).reasons(records)
        jobs = [job_json(record, reasons.get(record.id)) for record in records]
    return {
        "version": changes.revision,
        "previous": previous,
        "store": store.generation,
        "reload": reload,
        "jobs": jobs,
        "removed": [] if reload else changes.removed,
        "counts": revisions.state_counts(store),
    }
