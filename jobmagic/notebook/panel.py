"""``JobPanel``: an ipywidgets control panel for the jobs of a ``WorkerService``.

The panel is a ``VBox``: it displays by itself and goes into any box, tab or dashboard.
It follows the service's events (``svc.subscribe``) instead of polling: the event
callback only queues the job and wakes the panel's one thread, which updates the widgets.
That thread also ticks the running rows once a second (runtime, and the progress their
log's last line shows; not a paused one: its clock stands still), and the other rows'
"3 min ago" as it moves. A job's output is shown by an ``OutputWidgetHandler`` attached to
the job's logger only while its output toggle is on, so the engine reads no log that
nobody watches; the shown outputs of every panel are updated by one thread within one
budget (``OutputFlusher``), so eight of them cost about what one does.

Standard widgets only (VBox, HBox, HTML, Button, ToggleButton, ToggleButtons): it works
in JupyterLab, Notebook 7 and VS Code. Every widget costs the kernel a ``comm_open``
message, and ipywidgets 8 gives each one its own Layout and Style widget (two more)
unless it is given one. So the widgets of a panel share their Layout and Style widgets
(``SharedParts``), a row is one box (no nested boxes), and a row's widgets are made when
its job first needs them (see ``JobRow``).
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

from .panel_render import ALL, RUNNING, PanelRendering
from .panel_row import JobRow
from .shared_parts import SharedParts

if TYPE_CHECKING:
    from jobmagic.core.events import JobEvent
    from jobmagic.engine.service import WorkerService
    from jobmagic.engine.worker import Worker

__all__ = ["JobPanel", "JobRow"]

logger = logging.getLogger(__name__)


class JobPanel(PanelRendering, ipywidgets.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """A live control panel for the jobs of a ``WorkerService``, as an ``ipywidgets.VBox``.

    A header with the number of jobs per state (the states that have some), a filter
    (all jobs, or only those queued, running or paused), "Clear finished" (takes the
    ended jobs' rows out of this panel; their records stay) and "Stop all", then one row
    per job (see ``JobRow``: id, name and command, state, progress, start, runtime, exit;
    the buttons that fit its state). New jobs appear and finished ones update by
    themselves, from the service's events.

    Display it as the last expression of a cell or with ``display(panel)``, or put it in
    another box; several panels may be open at once. ``close()`` detaches everything it
    attached and closes every widget it made.

    Parameters
    ----------
    service : WorkerService, optional
        The service to show; None means the kernel's (``get_service()``).
    tail_lines : int
        Lines of a job's output shown when its output is open; default 200.

    Attributes
    ----------
    counts : ipywidgets.HTML
        The header's count of jobs per state.
    filter : ipywidgets.ToggleButtons
        ``"all"`` shows every row, ``"running"`` only those of jobs that have not ended.
    clear_button : ipywidgets.Button
        Takes the rows of the jobs that have ended out of this panel (not the jobs).
    stop_all_button : ipywidgets.Button
        Stops every job of the service that has not ended.
    rows_box : ipywidgets.VBox
        Holds the ``JobRow.widget`` of each row the filter shows, in id order.

    Examples
    --------
    >>> panel = JobPanel()  # doctest: +SKIP
    >>> panel  # doctest: +SKIP
    >>> ipywidgets.Tab([panel, other])  # doctest: +SKIP
    >>> panel.close()  # doctest: +SKIP
    """

    def __init__(self, service: WorkerService | None = None, tail_lines: int = 200) -> None:
        if tail_lines < 1:
            raise ValueError(f"tail_lines must be at least 1, not {tail_lines}")
        if service is None:
            from jobmagic.engine.default import get_service

            service = get_service()
        shared = SharedParts()
        counts = ipywidgets.HTML(layout=shared.grow, style=shared.html_style)
        row_filter = ipywidgets.ToggleButtons(
            options=[("All", ALL), ("Running", RUNNING)],
            value=ALL,
            tooltips=["Every job", "Only the jobs that are queued, running or paused"],
            layout=shared.button,
            style=shared.toggles_style,
            _dom_classes=("jobmagic-filter",),
        )
        clear_button = shared.make_button(
            "Clear finished",
            "eraser",
            "Take the jobs that have ended out of this panel (their records stay)",
            "jobmagic-clear-finished",
        )
        stop_all_button = shared.make_button(
            "Stop all",
            "stop",
            "Stop every running job of this kernel",
            "jobmagic-stop-all",
            button_style="danger",
        )
        header = ipywidgets.HBox(
            [counts, row_filter, clear_button, stop_all_button], layout=shared.header
        )
        rows_box = ipywidgets.VBox(layout=shared.column)
        super().__init__([header, rows_box], layout=shared.column, _dom_classes=("jobmagic-panel",))
        self.service = service
        self.tail_lines = tail_lines
        self._shared = shared
        self.counts: Any = counts
        self.filter: Any = row_filter
        self.clear_button: Any = clear_button
        self.stop_all_button: Any = stop_all_button
        self._header: Any = header
        self.rows_box: Any = rows_box
        # Guards _rows, _pending, _expand, _cleared, the *_wanted flags and _closed: the
        # event callback (any engine thread), the panel thread, widget callbacks and
        # close() all use them.
        self._lock = threading.Lock()
        self._rows: dict[int, JobRow] = {}
        self._pending: dict[int, tuple[str, Worker]] = {}  # job id -> latest event
        self._expand: set[int] = set()  # ids whose output opens when their row appears
        self._cleared: set[int] = set()  # ids of ended jobs taken out: they stay out
        self._clear_wanted = False  # "Clear finished" was clicked
        self._layout_wanted = False  # the filter changed
        self._closed = False
        self._wake = threading.Event()
        self._ticking = False  # some row's clock moves (panel thread only)
        self._next_tick = 0.0  # time.monotonic() of the next tick (panel thread only)
        # Subscribe before listing so no job falls between the two; a job in both is
        # refreshed twice, which is harmless.
        self._unsubscribe = service.subscribe(self._on_event)
        for worker in service.list():
            if worker.id is not None:
                self._rows[worker.id] = self._make_row(worker)
        self._layout_rows()
        self._render_header()
        self.stop_all_button.on_click(self._on_stop_all)
        self.clear_button.on_click(self._on_clear)
        self.filter.observe(self._on_filter, names="value")
        self._thread = threading.Thread(target=self._run, name="jobmagic-panel", daemon=True)
        self._thread.start()

    @property
    def widget(self) -> JobPanel:
        """The panel itself (it is the widget; kept for code written before it was)."""
        return self

    def __repr__(self) -> str:
        # The text/plain of the panel's output: what a frontend shows when it cannot draw
        # the widget (its kernel has restarted, or a static view of the notebook).
        return (
            "jobmagic panel: its kernel has restarted (or this view cannot show "
            "widgets): run %job panel"
        )

    @property
    def rows(self) -> dict[int, JobRow]:
        """The panel's rows, by job id (a copy); the filter may keep some out of view."""
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

        Every widget the panel made closes, the panel too; idempotent.
        """
        # ipywidgets' __del__ calls close(), also on a panel whose __init__ failed.
        lock = getattr(self, "_lock", None)
        if lock is None:
            super().close()
            return
        with lock:
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
        for widget in (
            self.counts,
            self.filter,
            self.clear_button,
            self.stop_all_button,
            self._header,
            self.rows_box,
        ):
            widget.close()
        super().close()
        self._shared.close()

    def _make_row(self, worker: Worker, show_output: bool = False) -> JobRow:
        return JobRow(
            worker, self.tail_lines, self._shared, show_output, remove=self.service.remove
        )

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

    def _on_clear(self, _button: Any) -> None:
        # The panel thread takes the rows out: it is the only one that lays them out.
        with self._lock:
            self._clear_wanted = True
        self._wake.set()

    def _on_filter(self, _change: Any) -> None:
        with self._lock:
            self._layout_wanted = True
        self._wake.set()

    def _run(self) -> None:
        # The panel's one thread: applies queued events, clears and filters, and ticks
        # the clocks while some move (the only timed wait; else it waits untimed).
        self._apply({})
        while True:
            timeout = None
            if self._ticking:
                timeout = max(0.0, self._next_tick - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                pending, self._pending = self._pending, {}
                clear, self._clear_wanted = self._clear_wanted, False
                relayout, self._layout_wanted = self._layout_wanted, False
            try:
                self._apply(pending, clear=clear, relayout=relayout)
            except Exception:
                logger.exception("updating the job panel failed")

    def _apply(
        self, pending: dict[int, tuple[str, Worker]], clear: bool = False, relayout: bool = False
    ) -> None:
        refreshed: set[int] = set()
        for job_id, (kind, worker) in sorted(pending.items()):
            if kind == "removed":
                self._remove_row(job_id)
            else:
                self._add_or_refresh_row(job_id, worker)
            refreshed.add(job_id)
        rows = self.rows
        if clear:
            for job_id, row in rows.items():
                if row.state.is_finished:
                    self._remove_row(job_id, cleared=True)
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
        if pending or clear or relayout:
            # Also when a row's state changed: the filter may show it no more. Setting
            # the children the box already has sends nothing.
            self._layout_rows()
        self._tick(rows, refreshed)
        if pending or clear:
            self._render_header()

    def _remove_row(self, job_id: int, cleared: bool = False) -> bool:
        with self._lock:
            row = self._rows.pop(job_id, None)
            self._expand.discard(job_id)
            if cleared:
                self._cleared.add(job_id)
        if row is None:
            return False
        row.close()
        return True

    def _add_or_refresh_row(self, job_id: int, worker: Worker) -> bool:
        """Refresh the job's row, creating it if needed; True when it was created."""
        with self._lock:
            if self._closed or job_id in self._cleared:
                return False
            row = self._rows.get(job_id)
            expand = job_id in self._expand
        if row is not None:
            row.refresh()
            return False
        # Made without the lock (showing the output attaches a handler to the job), and
        # only by this thread, so no other row for job_id can appear meanwhile. A row
        # whose output is wanted is made with it shown: no later toggle and row updates.
        row = self._make_row(worker, show_output=expand)
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
