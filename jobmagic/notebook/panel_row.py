"""One job's row in the ``JobPanel``: its summary line, its buttons and output toggle.

The widgets of a panel share their Layout and Style widgets (``SharedParts``), a row is
one box (no nested boxes), its Pause button is created when its job first runs, its
Re-run and Remove buttons when it has ended, and its output widget when first shown: a
new row costs 4 ``comm_open`` messages, not 16 (one more once its job runs, two more
once it has ended).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets

from jobmagic.core.state import JobState
from jobmagic.text.describe import usage_text

from .output_widget import OutputWidgetHandler
from .row_buttons import RowButtons
from .row_summary import (
    PAUSE_AFTER,
    latest_percent,
    read_log_end,
    render_summary,
    row_tooltip,
    started_ago,
)
from .shared_parts import SharedParts

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

__all__ = ["JobRow", "SharedParts"]

_SEED_BYTES = 65536  # how much of the log end seeds the output view when it is opened


class JobRow(RowButtons):
    """The widgets of one job in a ``JobPanel``: summary, buttons, output toggle.

    ``summary`` is one ``HTML`` (id, group and name with the shortened command, or the
    command alone; state badge; when it started, "3 min ago"; runtime; while the job is
    active, a progress bar when its latest output line shows a percentage, what it uses
    while it runs ("CPU 85% · 1.2 GiB"), where it runs if not here ("ray HOST:PORT")
    and its pid; once it has ended, its exit or error; for a queued job, why it waits)
    so that a change costs one message. Its tooltip is the command, the job's limits
    where it has any and where it runs if not here.

    The buttons fit the state. While the job is queued, running or paused: Stop, and
    ``pause_button``, which reads "Pause" while it runs and "Resume" while it is paused;
    it is made when the job has run ``PAUSE_AFTER`` seconds (the panel's first runtime
    tick) or is paused: a job that ends within a second costs no message for it (a
    sweep of short jobs stays within the panel's message budget). Once it has ended:
    ``rerun_button`` (starts its command again as a new job) and ``remove_button``
    (deletes its record and log), made then. ``output`` shows the job's output tail
    while ``output_toggle`` is on. ``widget`` is the row: one box that holds the summary
    and the buttons on one line and, while the toggle is on, the output below them.

    Its widgets carry CSS classes for styling and tests: ``jobmagic-row`` and
    ``jobmagic-job-<id>`` on the row, ``jobmagic-summary`` (with ``data-state``),
    ``jobmagic-badge``, ``jobmagic-group``, ``jobmagic-command``, ``jobmagic-progress``
    (with ``data-percent``), ``jobmagic-progress-bar``, ``jobmagic-usage``, ``jobmagic-where``,
    ``jobmagic-started``, ``jobmagic-runtime``, ``jobmagic-pause``, ``jobmagic-stop``,
    ``jobmagic-rerun``, ``jobmagic-remove``, ``jobmagic-output-toggle``, ``jobmagic-output``.

    Parameters
    ----------
    worker : Worker
        The job shown.
    tail_lines : int
        Lines of output shown when the toggle is on.
    shared : SharedParts
        The panel's Layout and Style widgets; the row uses them and never closes them.
    show_output : bool
        Whether the output is shown from the start (the toggle on); default False.
    remove : callable, optional
        Deletes a finished job by id (``WorkerService.remove``); None: no Remove button.
    """

    def __init__(
        self,
        worker: Worker,
        tail_lines: int,
        shared: SharedParts,
        show_output: bool = False,
        remove: Callable[[int], None] | None = None,
    ) -> None:
        self.worker = worker
        self.tail_lines = tail_lines
        self._shared = shared
        self._remove = remove
        # Guards state, _progress, _usage, started, the buttons made later, _handler, _output,
        # the *_requested flags, _closed and what the widgets show: the buttons'
        # callbacks (subshell or main thread), the panel thread and close() may act on
        # this row at once. A render holds it from reading the job to setting the
        # widgets, so the last render shows the newest state; re-entrant because setting
        # a widget runs its observers on the spot, and they may read the row.
        self._lock = threading.RLock()
        self._pause_button: Any = None  # made when the job is first running or paused
        self._rerun_button: Any = None  # these two when it has ended
        self._remove_button: Any = None
        self._handler: OutputWidgetHandler | None = None
        self._output: Any = None  # made when the output is first shown
        self._progress: float | None = None  # the percentage shown, read on the tick
        self._usage = ""  # what it uses ("CPU 85% · 1.2 GiB"), read on the tick
        self._pause_requested = False
        self._stop_requested = False
        self._acting: set[str] = set()  # the Re-run / Remove actions under way
        self._closed = False
        # Built with their first values: each later change is one message.
        self.state: JobState  # the state last rendered
        self.started: str  # when the job started, as last rendered ("3 min ago")
        self.state, summary, self.started = render_summary(worker)
        self.summary: Any = ipywidgets.HTML(
            value=summary, tooltip=row_tooltip(worker), layout=shared.grow, style=shared.html_style
        )
        if self._offers_pause(self.state):
            self._pause_button = self._make_pause_button()
        if self.state.is_finished:
            self._make_finished_buttons()
        self.stop_button: Any = shared.make_button(
            "Stop",
            "stop",
            f"Stop job {worker.id} (SIGTERM to the whole job, then SIGKILL)",
            "jobmagic-stop",
            button_style="danger",
            disabled=self.state.is_finished,
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
    def pause_button(self) -> Any:
        """The Pause / Resume ``ipywidgets.Button``; None until the job first runs.

        Once the job has ended it stays as it was, out of the row, and a click on it does
        nothing.
        """
        with self._lock:
            return self._pause_button

    @property
    def rerun_button(self) -> Any:
        """The Re-run ``ipywidgets.Button``; None until the job has ended."""
        with self._lock:
            return self._rerun_button

    @property
    def remove_button(self) -> Any:
        """The Remove ``ipywidgets.Button``; None until the job has ended, or without ``remove``."""
        with self._lock:
            return self._remove_button

    @property
    def progress(self) -> float | None:
        """The percentage the row shows as a bar (0 to 100), or None while it shows none."""
        with self._lock:
            return self._progress if self.state.is_active else None

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

    def _offers_pause(self, state: JobState) -> bool:
        """Whether the row should have its Pause button by now (see the class docstring)."""
        if state is JobState.PAUSED:
            return True
        runtime = self.worker.runtime
        return state is JobState.RUNNING and runtime is not None and runtime >= PAUSE_AFTER

    def refresh(self, queue_reason: str | None = None) -> None:
        """Render the job's current state into the summary and the buttons.

        ``queue_reason``: why the queued job waits, when the caller has worked it out
        (for many rows at once); None asks the job.
        """
        with self._lock:
            if self._closed:
                return
            state, summary, self.started = render_summary(
                self.worker, queue_reason, self._progress, self._usage
            )
            self.state = state
            if state is not JobState.RUNNING:
                self._usage = ""  # shown while it runs: a paused job's reading is stale
            if self._pause_button is None and self._offers_pause(state):
                self._pause_button = self._make_pause_button()
            if state.is_finished:
                self._progress = None
                if self._rerun_button is None:
                    self._make_finished_buttons()
            self._render_pause_button()
            if not state.is_finished:
                # Once it has ended, Stop is out of the row: a change would be a message
                # for nothing.
                self.stop_button.disabled = self._stop_requested
            self.widget.children = self._children()  # no message when they are the same
            # The summary last: who waits for the state it shows finds the buttons set.
            self.summary.value = summary

    def tick(self) -> None:
        """Re-read the progress and the usage of the job, then render (1 Hz at most).

        For the panel's runtime tick, on running rows only: one read of a few KB of the
        log, whether or not the output is shown, and one usage reading (a few cgroup
        files, at most one a second whoever asks).
        """
        percent = latest_percent(read_log_end(self.worker.log_path))
        usage = usage_text(self.worker.usage())
        with self._lock:
            if self.state is JobState.RUNNING:
                self._progress = percent
                self._usage = usage
        self.refresh()

    def clock_moved(self, now: float) -> bool:
        """Whether when the job started now reads otherwise than the row shows."""
        with self._lock:
            return started_ago(self.worker.started_at, now) != self.started

    def show_output(self, show: bool = True) -> None:
        """Show or hide the job's output (same as clicking the toggle)."""
        self.output_toggle.value = show

    def close(self) -> None:
        """Detach the output handler and close the row's widgets (not the shared parts)."""
        with self._lock:
            self._closed = True
        self._close_output()
        with self._lock:
            widgets = (
                self.summary,
                self._pause_button,
                self.stop_button,
                self._rerun_button,
                self._remove_button,
                self.output_toggle,
                self._output,
            )
        for widget in (*widgets, self.widget):
            if widget is not None:
                widget.close()

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
            handler = OutputWidgetHandler(
                widget=self._output, tail_lines=self.tail_lines, scroll_box=False
            )
            # The engine hands the handler the end of the log, then live output, with
            # nothing lost or shown twice in between. Under the row's lock so that close()
            # cannot run between attach and record: add_handler never calls into this row.
            self.worker.add_handler(
                handler,
                backlog_bytes=_SEED_BYTES,
                tail_bytes=handler.tail_bytes,
                interval=handler.min_interval,  # it updates the widget no more often
            )
            self._handler = handler
        handler.flush()  # the seed is in the widget before the widget is in the row

    def _children(self) -> tuple[Any, ...]:
        """The row's widgets (lock held): the buttons for its state, output while fed.

        Pause and Stop while the job has not ended (Pause once it has run), Re-run and
        Remove once it has.
        """
        line: tuple[Any, ...] = (self.summary,)
        if self.state.is_finished:
            line += tuple(b for b in (self._rerun_button, self._remove_button) if b is not None)
        else:
            if self._pause_button is not None and self.state.is_active:
                line += (self._pause_button,)
            line += (self.stop_button,)
        line += (self.output_toggle,)
        return line if self._handler is None else (*line, self._output)

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
