"""One job's row in the ``JobPanel``: its summary line, its buttons and output toggle.

The widgets of a panel share their Layout and Style widgets (``SharedParts``), a row is
one box (no nested boxes), its Pause button is created when its job first runs and its
output widget when first shown: a new row costs 4 ``comm_open`` messages, not 16 (one
more once its job runs).
"""

from __future__ import annotations

import html
import logging
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from jobmagic.core.spec import DEFAULT_GROUP
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import STATE_COLORS, exit_text, format_runtime, shorten

from .output_widget import OutputWidgetHandler

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

__all__ = ["JobRow", "SharedParts", "badge"]

logger = logging.getLogger(__name__)

_NAME_CHARS = 40  # a longer name or command is shortened; the full text is the tooltip
_ERROR_CHARS = 60
#: Seconds a job runs before its row offers Pause (the panel's first runtime tick renders it).
PAUSE_AFTER = 1.0
_SEED_BYTES = 65536  # how much of the log end seeds the output view when it is opened


def badge(state: JobState, text: str | None = None) -> str:
    """A state badge: white text on the state's colour (``text`` defaults to the state)."""
    color = STATE_COLORS[state]
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


class SharedParts:
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


def _group_tag(group: str) -> str:
    """The group a job runs in, as a small outlined tag before its name."""
    name = html.escape(group)
    return (
        f'<span class="jobmagic-group" title="group {name}" style="border:1px solid;'
        f'border-radius:3px;padding:0 0.3em;opacity:0.75">{name}</span> '
    )


def _render_summary(w: Worker, queue_reason: str | None = None) -> tuple[JobState, str]:
    """The job's state and the HTML of its summary line.

    A queued job's line reads its ``queue_reason`` (unless given), which may read the
    store: the panel renders queued rows on events only, never on its runtime tick.
    """
    state = w.state
    label = html.escape(shorten(w.name or w.command, _NAME_CHARS))
    if w.group != DEFAULT_GROUP:
        label = _group_tag(w.group) + label
    head = (
        f'<div class="jobmagic-summary" data-state="{state.value}" style="display:flex;'
        "align-items:center;gap:0.6em;white-space:nowrap;font-size:12px;"
        'font-family:var(--jp-code-font-family,monospace)">'
        + _cell(f"#{w.id}", "3em")
        + _cell(label, "20em", w.command)
        + _cell(badge(state), "7em")
    )
    if state is JobState.QUEUED:
        # No pid or runtime yet: why it waits takes their place and the rest of the line.
        reason = queue_reason or w.queue_reason
        return state, head + _cell(html.escape(reason or ""), None, reason) + "</div>"
    if w.error:
        ending = _cell(
            html.escape(shorten(w.error, _ERROR_CHARS)),
            None,
            w.error,
            f"color:{STATE_COLORS[JobState.FAILED]}",
        )
    elif w.exit_code is not None:
        ending = _cell(html.escape(exit_text(w.exit_code) or ""), None)
    else:
        ending = _cell("", None)
    runtime = w.runtime  # a paused job's does not grow
    summary = (
        head
        + _cell(f"pid {w.pid}" if w.pid else "", "6.5em")
        + _cell(format_runtime(runtime) if runtime is not None else "", "6.5em")
        + ending
        + "</div>"
    )
    return state, summary


class JobRow:
    """The widgets of one job in a ``JobPanel``: summary, Pause, Stop, output toggle.

    ``summary`` is one ``HTML`` (id, group and name or command, state badge, then pid,
    runtime and exit code or error; for a queued job, why it waits) so that a change
    costs one message. ``pause_button`` reads "Pause" while the job runs and "Resume"
    while it is paused; it is made when the job has run ``PAUSE_AFTER`` seconds (the
    panel's first runtime tick) or is paused, and is in the row only while the job runs
    or is paused: a job that ends within a second costs no message for it (a sweep of
    short jobs stays within the panel's message budget). ``output`` shows the job's
    output tail while ``output_toggle`` is on. ``widget`` is the row: one box that holds
    the summary and the buttons on one line and, while the toggle is on, the output below
    them.

    Its widgets carry CSS classes for styling and tests: ``jobmagic-row`` and
    ``jobmagic-job-<id>`` on the row, ``jobmagic-summary`` (with ``data-state``),
    ``jobmagic-badge``, ``jobmagic-group``, ``jobmagic-pause``, ``jobmagic-stop``,
    ``jobmagic-output-toggle``, ``jobmagic-output``.

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
    """

    def __init__(
        self, worker: Worker, tail_lines: int, shared: SharedParts, show_output: bool = False
    ) -> None:
        self.worker = worker
        self.tail_lines = tail_lines
        self._shared = shared
        # Guards state, _pause_button, _handler, _output, _pause_requested,
        # _stop_requested, _closed and what the widgets show: the buttons' callbacks
        # (subshell or main thread), the panel thread and close() may act on this row at
        # once. A render holds it from reading the job to setting the widgets, so the
        # last render shows the newest state; re-entrant because setting a widget runs its
        # observers on the spot, and they may read the row.
        self._lock = threading.RLock()
        self._pause_button: Any = None  # made when the job is first running or paused
        self._handler: OutputWidgetHandler | None = None
        self._output: Any = None  # made when the output is first shown
        self._pause_requested = False
        self._stop_requested = False
        self._closed = False
        # Built with their first values: each later change is one message.
        self.state: JobState  # the state last rendered
        self.state, summary = _render_summary(worker)
        self.summary: Any = ipywidgets.HTML(
            value=summary, tooltip=worker.command, layout=shared.grow, style=shared.html_style
        )
        if self._offers_pause(self.state):
            self._pause_button = self._make_pause_button()
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
            state, summary = _render_summary(self.worker, queue_reason)
            self.state = state
            if self._pause_button is None and self._offers_pause(state):
                self._pause_button = self._make_pause_button()
            self._render_pause_button()
            self.stop_button.disabled = state.is_finished or self._stop_requested
            self.widget.children = self._children()  # no message when they are the same
            # The summary last: who waits for the state it shows finds the buttons set.
            self.summary.value = summary

    def show_output(self, show: bool = True) -> None:
        """Show or hide the job's output (same as clicking the toggle)."""
        self.output_toggle.value = show

    def close(self) -> None:
        """Detach the output handler and close the row's widgets (not the shared parts)."""
        with self._lock:
            self._closed = True
        self._close_output()
        with self._lock:
            widgets = (self.summary, self._pause_button, self.stop_button, self.output_toggle)
            output = self._output
        for widget in (*widgets, output, self.widget):
            if widget is not None:
                widget.close()

    def _make_pause_button(self) -> Any:
        """The Pause / Resume button, showing ``state`` (lock held, or in __init__)."""
        button = ipywidgets.Button(
            layout=self._shared.button,
            style=self._shared.button_style,
            _dom_classes=("jobmagic-pause",),
            **self._pause_look(),
        )
        button.on_click(self._on_pause)
        return button

    def _pause_look(self) -> dict[str, Any]:
        """What the Pause / Resume button shows for ``state`` (lock held, or in __init__)."""
        paused = self.state is JobState.PAUSED
        job = self.worker.id
        return {
            "description": "Resume" if paused else "Pause",
            "icon": "play" if paused else "pause",
            "tooltip": (
                f"Let job {job} go on (SIGCONT to the whole job)"
                if paused
                else f"Hold job {job} still (SIGSTOP to the whole job); its runtime stops"
            ),
            "disabled": self._pause_requested or self._stop_requested,
        }

    def _render_pause_button(self) -> None:
        """Show ``state`` on the Pause / Resume button, in one message (lock held).

        Not once the job has ended: the button is out of the row then, unseen.
        """
        button = self._pause_button
        if button is None or not self.state.is_active:
            return
        with button.hold_sync():  # one message for all that changed, none if nothing did
            for name, value in self._pause_look().items():
                setattr(button, name, value)

    def _on_stop(self, _button: Any) -> None:
        with self._lock:
            self._stop_requested = True
            self._render_pause_button()  # a job being stopped is not paused or resumed
        self.stop_button.disabled = True
        try:
            # wait=False: the callback returns at once; the "state" event updates the row.
            self.worker.stop(wait=False, by="ui")
        except Exception:
            logger.exception("stopping job %s failed", self.worker.id)
            with self._lock:
                self._stop_requested = False
            self.refresh()

    def _on_pause(self, _button: Any) -> None:
        with self._lock:
            # click() calls back even on a disabled button: one request at a time.
            if self._closed or self._pause_requested or not self.state.is_active:
                return
            self._pause_requested = True
            resume = self.state is JobState.PAUSED  # what the button offered
            self._render_pause_button()
        verb = "resuming" if resume else "pausing"
        try:
            # Quick (a signal and a store write), so done here; the "state" event that
            # it sends updates the rows of every panel.
            if resume:
                self.worker.resume()
            else:
                self.worker.pause()
        except JobmagicError as exc:
            # It ended meanwhile, or the move could not be recorded: the refresh below
            # shows how the job stands.
            logger.warning("%s job %s failed: %s", verb, self.worker.id, exc)
        except Exception:
            logger.exception("%s job %s failed", verb, self.worker.id)
        finally:
            with self._lock:
                self._pause_requested = False
        # Also when the event's render came first: it showed the button still disabled.
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
            self.worker.add_handler(
                handler, backlog_bytes=_SEED_BYTES, tail_bytes=handler.tail_bytes
            )
            self._handler = handler
        handler.flush()  # the seed is in the widget before the widget is in the row

    def _children(self) -> tuple[Any, ...]:
        """The row's widgets (lock held): Pause while the job is active, output while fed."""
        line: tuple[Any, ...] = (self.summary,)
        if self._pause_button is not None and self.state.is_active:
            line += (self._pause_button,)
        line += (self.stop_button, self.output_toggle)
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
