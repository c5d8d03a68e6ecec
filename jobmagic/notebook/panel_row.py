"""One job's row in the ``JobPanel``: its summary line, Stop button and output toggle.

The widgets of a panel share their Layout and Style widgets (``SharedParts``), a row is
one box (no nested boxes) and its output widget is created when first shown: a new row
costs 4 ``comm_open`` messages, not 16.
"""

from __future__ import annotations

import html
import logging
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from jobmagic.core.state import JobState
from jobmagic.text.describe import STATE_COLORS, exit_text, format_runtime, shorten

from .output_widget import OutputWidgetHandler

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

__all__ = ["JobRow", "SharedParts", "badge"]

logger = logging.getLogger(__name__)

_NAME_CHARS = 40  # a longer name or command is shortened; the full text is the tooltip
_ERROR_CHARS = 60
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


def _render_summary(w: Worker) -> tuple[JobState, str]:
    """The job's state and the HTML of its summary line."""
    state = w.state
    label = w.name or w.command
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
    runtime = w.runtime if state is not JobState.QUEUED else None
    summary = (
        f'<div class="jobmagic-summary" data-state="{state.value}" style="display:flex;'
        "align-items:center;gap:0.6em;white-space:nowrap;font-size:12px;"
        'font-family:var(--jp-code-font-family,monospace)">'
        + _cell(f"#{w.id}", "3em")
        + _cell(html.escape(shorten(label, _NAME_CHARS)), "20em", w.command)
        + _cell(badge(state), "7em")
        + _cell(f"pid {w.pid}" if w.pid else "", "6.5em")
        + _cell(format_runtime(runtime) if runtime is not None else "", "6.5em")
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
            self.worker.add_handler(
                handler, backlog_bytes=_SEED_BYTES, tail_bytes=handler.tail_bytes
            )
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
