"""``JobPanel``: an ipywidgets control panel for the jobs of a ``WorkerService``.

The panel follows the service's events (``svc.subscribe``) instead of polling: the event
callback only queues the job and wakes the panel's one thread, which updates the widgets.
That thread also ticks the runtimes once a second, and only while some job runs. A job's
output is shown by an ``OutputWidgetHandler`` attached to the job's logger only while
its output toggle is on, so the engine reads no log that nobody watches.

Standard widgets only (VBox, HBox, HTML, Button, ToggleButton): it works in JupyterLab,
Notebook 7 and VS Code. Every widget costs the kernel a ``comm_open`` message, and
ipywidgets 8 gives each one its own Layout and Style widget (two more) unless it is given
one. So the widgets of a panel share their Layout and Style widgets (``_SharedParts``), a
row is one box (no nested boxes) and its output widget is created when first shown: a new
row costs 4 ``comm_open`` messages, not 16.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from jobmagic.output_handler import OutputWidgetHandler
from jobmagic.state import JobState, describe_exit

if TYPE_CHECKING:
    from jobmagic.service import JobEvent, WorkerService
    from jobmagic.worker import Worker

__all__ = ["JobPanel", "JobRow"]

logger = logging.getLogger(__name__)

# Badge colours, one per state (white text on these).
_STATE_COLORS = {
    JobState.QUEUED: "#757575",
    JobState.RUNNING: "#1565c0",
    JobState.SUCCEEDED: "#2e7d32",
    JobState.FAILED: "#c62828",
    JobState.STOPPED: "#e65100",
}
_NAME_CHARS = 40  # a longer name or command is shortened; the full text is the tooltip
_ERROR_CHARS = 60
_SEED_BYTES = 65536  # how much of the log end seeds the output view when it is opened
_TICK_SECONDS = 1.0  # the runtime clock's period while some job runs
_TICKS_PER_SECOND = 10  # at most this many rows' runtimes are re-sent per second


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _format_runtime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(max(seconds, 0.0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _badge(state: JobState, text: str | None = None) -> str:
    color = _STATE_COLORS[state]
    label = html.escape(text if text is not None else state.value.upper())
    return (
        f'<span class="jobmagic-badge jobmagic-state-{state.value}" style="background:'
        f"{color};color:#fff;border-radius:3px;padding:0 0.5em;font-size:11px;"
        f'font-weight:bold;white-space:nowrap">{label}</span>'
    )


def _cell(text: str, width: str | None, title: str | None = None, css: str = "") -> str:
    """One column of a summary line; ``width`` None takes the rest of the line."""
    title_attr = f' title="{html.escape(title)}"' if title else ""
    size = f"flex:none;width:{width}" if width else "flex:1 1 0;min-width:0"
    return (
        f'<span style="{size};overflow:hidden;text-overflow:ellipsis;{css}"'
        f"{title_attr}>{text}</span>"
    )


class _SharedParts:
    """The Layout and Style widgets of one panel, each shared by all widgets of one kind.

    A Layout or Style widget may be referenced by any number of widgets, and the panel
    never changes one after it is made, so one of each is enough whatever the number of
    rows. Whoever makes the parts closes them, after the widgets that use them.
    """

    def __init__(self) -> None:
        # Takes the free width of its line and clips what does not fit. Basis 0, not
        # auto: in a row that wraps, a long summary must shrink, not push the buttons
        # onto a line of their own.
        self.grow = ipywidgets.Layout(flex="1 1 0%", width="auto", min_width="0", overflow="hidden")
        self.button = ipywidgets.Layout(flex="0 0 auto", width="auto")  # as wide as its label
        # A job's row: summary and buttons on one line; the output, a full-width item,
        # wraps onto the next one.
        self.row = ipywidgets.Layout(flex_flow="row wrap", align_items="center")
        # A full line (without margin, which would not fit beside 100% and make the row
        # scroll sideways; the padding keeps the row's 2 px inset).
        self.output = ipywidgets.Layout(flex="0 0 100%", margin="0", padding="0 2px")
        self.header = ipywidgets.Layout(align_items="center", justify_content="space-between")
        self.column = ipywidgets.Layout()  # the VBoxes' (default) layout
        self.html_style = HTMLStyle()
        self.button_style = ipywidgets.ButtonStyle()
        self.toggle_style = ToggleButtonStyle()

    def close(self) -> None:
        """Close every part (once no open widget uses them)."""
        for part in vars(self).values():
            part.close()


def _render_summary(w: Worker) -> tuple[JobState, str]:
    """The job's state and the HTML of its summary line."""
    state = w.state
    label = w.name or w.command
    if w.error:
        ending = _cell(html.escape(_shorten(w.error, _ERROR_CHARS)), None, w.error, "color:#c62828")
    elif w.exit_code is not None:
        ending = _cell(html.escape(describe_exit(w.exit_code)), None)
    else:
        ending = _cell("", None)
    runtime = w.runtime if state is not JobState.QUEUED else None
    summary = (
        f'<div class="jobmagic-summary" data-state="{state.value}" style="display:flex;'
        "align-items:center;gap:0.6em;white-space:nowrap;font-size:12px;"
        'font-family:var(--jp-code-font-family,monospace)">'
        + _cell(f"#{w.id}", "3em")
        + _cell(html.escape(_shorten(label, _NAME_CHARS)), "20em", w.command)
        + _cell(_badge(state), "7em")
        + _cell(f"pid {w.pid}" if w.pid else "", "6.5em")
        + _cell(_format_runtime(runtime), "6.5em")
        + ending
        + "</div>"
    )
    return state, summary


class JobRow:
    """The widgets of one job in a ``JobPanel``: summary, Stop button, output toggle.

    ``summary`` is one ``HTML`` (id, name or command, state badge, pid, runtime, exit code
    or error) so that a change costs one message; ``output`` shows the job's output tail
    while ``output_toggle`` is on. ``widget`` is the row: one box that holds the summary
    and the buttons on one line and, while the toggle is on, the output below them.

    Its widgets carry CSS classes for styling and tests: ``jobmagic-row`` and
    ``jobmagic-job-<id>`` on the row, ``jobmagic-summary`` (with ``data-state``),
    ``jobmagic-badge``, ``jobmagic-stop``, ``jobmagic-output-toggle``, ``jobmagic-output``.

    Parameters
    ----------
    worker : Worker
        The job shown.
    tail_lines : int
        Lines of output shown when the toggle is on.
    shared : _SharedParts
        The panel's Layout and Style widgets; the row uses them and never closes them.
    show_output : bool
        Whether the output is shown from the start (the toggle on); default False.
    """

    def __init__(
        self, worker: Worker, tail_lines: int, shared: _SharedParts, show_output: bool = False
    ) -> None:
        self.worker = worker
        self.tail_lines = tail_lines
        self._shared = shared
        # Built with their first values: each later change is one message.
        self.state: JobState  # the state last rendered
        self.state, summary = _render_summary(worker)
        self.summary: Any = ipywidgets.HTML(
            value=summary, tooltip=worker.command, layout=shared.grow, style=shared.html_style
        )
        self.stop_button: Any = ipywidgets.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            disabled=self.state.is_finished,
            tooltip=f"Stop job {worker.id} (SIGTERM to the whole job, then SIGKILL)",
            layout=shared.button,
            style=shared.button_style,
            _dom_classes=("jobmagic-stop",),
        )
        self.output_toggle: Any = ipywidgets.ToggleButton(
            value=show_output,
            description="Output",
            icon="terminal",
            tooltip=f"Show the last {tail_lines} lines of job {worker.id}'s output",
            layout=shared.button,
            style=shared.toggle_style,
            _dom_classes=("jobmagic-output-toggle",),
        )
        self._line = (self.summary, self.stop_button, self.output_toggle)
        # Guards _handler, _output, _stop_requested, _closed and which children the row
        # shows: the toggle and Stop callbacks (subshell or main thread), the panel
        # thread and close() may act on this row at once.
        self._lock = threading.Lock()
        self._handler: OutputWidgetHandler | None = None
        self._output: Any = None  # made when the output is first shown
        self._stop_requested = False
        self._closed = False
        if show_output:
            self._open_output()  # before the row's box: it opens with the output in it
        with self._lock:
            children = self._children()
        self.widget: Any = ipywidgets.HBox(
            children,
            layout=shared.row,
            _dom_classes=("jobmagic-row", f"jobmagic-job-{worker.id}"),
        )
        self.stop_button.on_click(self._on_stop)
        self.output_toggle.observe(self._on_toggle, names="value")

    @property
    def handler(self) -> OutputWidgetHandler | None:
        """The output handler attached to the job while the output is shown, else None."""
        with self._lock:
            return self._handler

    @property
    def output(self) -> Any:
        """The ``ipywidgets.HTML`` that shows the output; None until it is first shown.

        It stays (with the last tail shown) while the toggle is off, out of the row.
        """
        with self._lock:
            return self._output

    def refresh(self) -> None:
        """Render the job's current state into the summary and the Stop button."""
        state, summary = _render_summary(self.worker)
        self.summary.value = summary
        self.state = state
        with self._lock:
            disabled = state.is_finished or self._stop_requested
        self.stop_button.disabled = disabled

    def show_output(self, show: bool = True) -> None:
        """Show or hide the job's output (same as clicking the toggle)."""
        self.output_toggle.value = show

    def close(self) -> None:
        """Detach the output handler and close the row's widgets (not the shared parts)."""
        with self._lock:
            self._closed = True
        self._close_output()
        with self._lock:
            output = self._output
        for widget in (*self._line, output, self.widget):
            if widget is not None:
                widget.close()

    def _on_stop(self, _button: Any) -> None:
        with self._lock:
            self._stop_requested = True
        self.stop_button.disabled = True
        try:
            # wait=False: the callback returns at once; the "state" event updates the row.
            self.worker.stop(wait=False, by="ui")
        except Exception:
            logger.exception("stopping job %s failed", self.worker.id)
            with self._lock:
                self._stop_requested = False
            self.refresh()

    def _on_toggle(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._open_output()
        else:
            self._close_output()
        self._place_output()

    def _open_output(self) -> None:
        with self._lock:
            if self._closed or self._handler is not None:
                return
            if self._output is None:
                self._output = ipywidgets.HTML(
                    layout=self._shared.output,
                    style=self._shared.html_style,
                    _dom_classes=("jobmagic-output",),
                )
            handler = OutputWidgetHandler(widget=self._output, tail_lines=self.tail_lines)
            # The engine hands the handler the end of the log, then live output, with
            # nothing lost or shown twice in between. Under the row's lock so that close()
            # cannot run between attach and record: add_handler never calls into this row.
            self.worker.add_handler(handler, backlog_bytes=_SEED_BYTES)
            self._handler = handler
        handler.flush()  # the seed is in the widget before the widget is in the row

    def _children(self) -> tuple[Any, ...]:
        """The row's widgets: the output too while a handler feeds it (lock held)."""
        return self._line if self._handler is None else (*self._line, self._output)

    def _place_output(self) -> None:
        """Show the output in the row while a handler feeds it, else leave it out."""
        with self._lock:
            if not self._closed:
                # One message, and none when the row already shows what it should.
                self.widget.children = self._children()

    def _close_output(self) -> None:
        with self._lock:
            handler, self._handler = self._handler, None
            if handler is not None:
                try:
                    self.worker.remove_handler(handler)
                finally:
                    handler.close()


class JobPanel:
    """A live control panel for the jobs of a ``WorkerService``.

    A header with the number of jobs per state and a "Stop all" button, then one row per
    job (id, name or command, state, pid, runtime, exit code or error, Stop, Output). New
    jobs appear and finished ones update by themselves, from the service's events.

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
            from jobmagic.service import get_service

            service = get_service()
        self.service = service
        self.tail_lines = tail_lines
        shared = self._shared = _SharedParts()
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
        self._running = False  # some row is RUNNING (panel thread only)
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

    def _on_event(self, event: JobEvent) -> None:
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

    def _layout_rows(self) -> None:
        rows = self.rows
        self.rows_box.children = tuple(rows[i].widget for i in sorted(rows))

    def _render_header(self) -> None:
        rows = self.rows.values()
        counts = dict.fromkeys(JobState, 0)
        for row in rows:
            counts[row.state] += 1
        parts = [
            _badge(state, f"{state.value} {counts[state]}")
            for state in JobState
            if counts[state] or state is JobState.RUNNING
        ]
        self.counts.value = (
            '<div class="jobmagic-counts" style="display:flex;gap:0.4em;align-items:center">'
            f"<b>Jobs</b> {' '.join(parts)}</div>"
        )
        active = counts[JobState.RUNNING] + counts[JobState.QUEUED]
        self.stop_all_button.disabled = active == 0
