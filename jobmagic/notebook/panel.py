"""``JobPanel``: an ipywidgets control panel for the jobs of a ``WorkerService``.

The panel follows the service's events (``svc.subscribe``) instead of polling: the event
callback only queues the job and wakes the panel's one thread, which updates the widgets.
That thread also ticks the runtimes once a second, and only while some job runs (not a
paused one: its clock stands still). A job's output is shown by an ``OutputWidgetHandler``
attached to the job's logger only while its output toggle is on, so the engine reads no
log that nobody watches.

Standard widgets only (VBox, HBox, HTML, Button, ToggleButton): it works in JupyterLab,
Notebook 7 and VS Code. Every widget costs the kernel a ``comm_open`` message, and
ipywidgets 8 gives each one its own Layout and Style widget (two more) unless it is given
one. So the widgets of a panel share their Layout and Style widgets (``SharedParts``), a
row is one box (no nested boxes), its Pause button is created when its job first runs and
its output widget when first shown: a new row costs 4 ``comm_open`` messages, not 16 (one
more once its job runs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets

from jobmagic.core.state import JobState
from jobmagic.errors import StoreError

from .panel_row import JobRow, SharedParts, badge

if TYPE_CHECKING:
    from jobmagic.core.events import JobEvent
    from jobmagic.engine.service import WorkerService
    from jobmagic.engine.worker import Worker

__all__ = ["JobPanel", "JobRow"]

logger = logging.getLogger(__name__)

_TICK_SECONDS = 1.0  # the runtime clock's period while some job runs
_TICKS_PER_SECOND = 10  # at most this many rows' runtimes are re-sent per second


class JobPanel:
    """A live control panel for the jobs of a ``WorkerService``.

    A header with the number of jobs per state and a "Stop all" button, then one row per
    job (id, group unless "default", name or command, state, then pid, runtime, exit code
    or error, or for a queued job why it waits; Pause or Resume while it runs, Stop,
    Output). New jobs appear and finished ones update by themselves, from the service's
    events.

    Display it as the last expression of a cell or with ``display(panel)``; several panels
    may be open at once. ``close()`` detaches everything it attached.

    Parameters
    ----------
    service : WorkerService, optional
        The service to show; None means the kernel's (``get_service()``).
    tail_lines : int
        Lines of a job's output shown when its output is open; default 200.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The panel's root widget (what is displayed).
    counts : ipywidgets.HTML
        The header's count of jobs per state.
    stop_all_button : ipywidgets.Button
        Stops every job of the service that has not ended.
    rows_box : ipywidgets.VBox
        Holds one ``JobRow.widget`` per job, in id order.

    Examples
    --------
    >>> panel = JobPanel()  # doctest: +SKIP
    >>> panel  # doctest: +SKIP
    >>> panel.close()  # doctest: +SKIP
    """

    def __init__(self, service: WorkerService | None = None, tail_lines: int = 200) -> None:
        if tail_lines < 1:
            raise ValueError(f"tail_lines must be at least 1, not {tail_lines}")
        if service is None:
            from jobmagic.engine.default import get_service

            service = get_service()
        self.service = service
        self.tail_lines = tail_lines
        shared = self._shared = SharedParts()
        self.counts: Any = ipywidgets.HTML(layout=shared.grow, style=shared.html_style)
        self.stop_all_button: Any = ipywidgets.Button(
            description="Stop all",
            icon="stop",
            button_style="danger",
            tooltip="Stop every running job of this kernel",
            layout=shared.button,
            style=shared.button_style,
            _dom_classes=("jobmagic-stop-all",),
        )
        self.stop_all_button.on_click(self._on_stop_all)
        self._header: Any = ipywidgets.HBox(
            [self.counts, self.stop_all_button], layout=shared.header
        )
        self.rows_box: Any = ipywidgets.VBox(layout=shared.column)
        self.widget: Any = ipywidgets.VBox(
            [self._header, self.rows_box], layout=shared.column, _dom_classes=("jobmagic-panel",)
        )
        # Guards _rows, _pending, _expand and _closed: the event callback (any engine
        # thread), the panel thread, widget callbacks and close() all use them.
        self._lock = threading.Lock()
        self._rows: dict[int, JobRow] = {}
        self._pending: dict[int, tuple[str, Worker]] = {}  # job id -> latest event
        self._expand: set[int] = set()  # ids whose output opens when their row appears
        self._closed = False
        self._wake = threading.Event()
        self._running = False  # some row is RUNNING: its clock runs (panel thread only)
        self._next_tick = 0.0  # time.monotonic() of the next runtime tick (panel thread only)
        # Subscribe before listing so no job falls between the two; a job in both is
        # refreshed twice, which is harmless.
        self._unsubscribe = service.subscribe(self._on_event)
        for worker in service.list():
            if worker.id is not None:
                self._rows[worker.id] = JobRow(worker, tail_lines, shared)
        self._layout_rows()
        self._render_header()
        self._thread = threading.Thread(target=self._run, name="jobmagic-panel", daemon=True)
        self._thread.start()

    @property
    def rows(self) -> dict[int, JobRow]:
        """The rows shown, by job id (a copy)."""
        with self._lock:
            return dict(self._rows)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        with self._lock:
            return self._closed

    def show_output(self, job_id: int, show: bool = True) -> None:
        """Show (or hide) the output of job ``job_id``, now or as soon as its row appears."""
        with self._lock:
            row = self._rows.get(job_id)
            if row is None:
                if show:
                    self._expand.add(job_id)
                else:
                    self._expand.discard(job_id)
                return
        row.show_output(show)

    def close(self) -> None:
        """Unsubscribe, detach every output handler, end the panel's thread, close widgets.

        Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            rows = list(self._rows.values())
            self._rows.clear()
            self._pending.clear()
        self._unsubscribe()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        for row in rows:
            row.close()
        for widget in (self.counts, self.stop_all_button, self._header, self.rows_box, self.widget):
            widget.close()
        self._shared.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _on_event(self, event: JobEvent[Worker]) -> None:
        # Called from whichever thread changed the job: queue it and wake, nothing more
        # (no widget traffic and no service call on the engine's thread).
        worker = event.worker
        if worker.id is None:
            return
        with self._lock:
            if self._closed:
                return
            self._pending[worker.id] = (event.kind, worker)
        self._wake.set()

    def _on_stop_all(self, _button: Any) -> None:
        self.stop_all_button.disabled = True
        for worker in self.service.list():
            if not worker.state.is_finished:
                try:
                    worker.stop(wait=False, by="ui")
                except Exception:
                    logger.exception("stopping job %s failed", worker.id)
        self._wake.set()

    def _run(self) -> None:
        # The panel's one thread: applies queued events, and ticks the runtimes while some
        # job runs (the only timed wait; with nothing running it waits untimed).
        self._apply({})
        while True:
            timeout = None
            if self._running:
                timeout = max(0.0, self._next_tick - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                pending, self._pending = self._pending, {}
            try:
                self._apply(pending)
            except Exception:
                logger.exception("updating the job panel failed")

    def _apply(self, pending: dict[int, tuple[str, Worker]]) -> None:
        refreshed: set[int] = set()
        layout_changed = False
        for job_id, (kind, worker) in sorted(pending.items()):
            if kind == "removed":
                layout_changed |= self._remove_row(job_id)
            elif self._add_or_refresh_row(job_id, worker):
                layout_changed = True
            refreshed.add(job_id)
        if layout_changed:
            self._layout_rows()
        rows = self.rows
        # A queued job's place in its group ("2nd in group gpu (2/2 running)") moves when
        # another job of the group starts, pauses, ends or goes, with no event of its own:
        # it is rendered again with theirs (never on the tick, as it reads the store).
        groups = {worker.group for _kind, worker in pending.values()}
        waiting = {
            job_id: row
            for job_id, row in rows.items()
            if row.state is JobState.QUEUED
            and job_id not in refreshed
            and row.worker.group in groups
        }
        if waiting:
            reasons = self._queue_reasons(waiting)
            for job_id, row in waiting.items():
                row.refresh(reasons.get(job_id))
        # RUNNING only: a PAUSED job is active, but its runtime does not grow.
        running = [i for i, row in rows.items() if row.state is JobState.RUNNING]
        now = time.monotonic()
        if running and now >= self._next_tick:
            # The runtime clock. With many running jobs it slows down so that the ticks
            # cost at most _TICKS_PER_SECOND messages a second.
            for job_id in running:
                if job_id not in refreshed:
                    rows[job_id].refresh()
            periods = -(-len(running) // _TICKS_PER_SECOND)
            self._next_tick = now + _TICK_SECONDS * periods
        self._running = bool(running)
        if pending:
            self._render_header()

    def _remove_row(self, job_id: int) -> bool:
        with self._lock:
            row = self._rows.pop(job_id, None)
            self._expand.discard(job_id)
        if row is None:
            return False
        row.close()
        return True

    def _add_or_refresh_row(self, job_id: int, worker: Worker) -> bool:
        """Refresh the job's row, creating it if needed; True when it was created."""
        with self._lock:
            if self._closed:
                return False
            row = self._rows.get(job_id)
            expand = job_id in self._expand
        if row is not None:
            row.refresh()
            return False
        # Made without the lock (showing the output attaches a handler to the job), and
        # only by this thread, so no other row for job_id can appear meanwhile. A row
        # whose output is wanted is made with it shown: no later toggle and row updates.
        row = JobRow(worker, self.tail_lines, self._shared, show_output=expand)
        added = wanted = False
        with self._lock:
            if not self._closed:  # close() may have run meanwhile
                self._rows[job_id] = row
                wanted = job_id in self._expand  # and show_output() too
                self._expand.discard(job_id)
                added = True
        if not added:
            row.close()
            return False
        if wanted != expand:
            row.show_output(wanted)
        return True

    def _queue_reasons(self, rows: Mapping[int, JobRow]) -> dict[int, str]:
        """Why each of these queued rows' jobs waits, from one read of the queue."""
        try:
            records = [r for r in self.service.store.list(states=[JobState.QUEUED]) if r.id in rows]
            return self.service.queue.reasons(records)
        except StoreError:
            return {}  # each row asks its job instead

    def _layout_rows(self) -> None:
        rows = self.rows
        self.rows_box.children = tuple(rows[i].widget for i in sorted(rows))

    def _render_header(self) -> None:
        rows = self.rows.values()
        counts = dict.fromkeys(JobState, 0)
        for row in rows:
            counts[row.state] += 1
        parts = [
            badge(state, f"{state.value} {counts[state]}")
            for state in JobState
            if counts[state] or state is JobState.RUNNING
        ]
        self.counts.value = (
            '<div class="jobmagic-counts" style="display:flex;gap:0.4em;align-items:center">'
            f"<b>Jobs</b> {' '.join(parts)}</div>"
        )
        active = counts[JobState.RUNNING] + counts[JobState.PAUSED] + counts[JobState.QUEUED]
        self.stop_all_button.disabled = active == 0
