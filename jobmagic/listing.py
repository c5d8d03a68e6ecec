"""How jobs look in a notebook and in terminal IPython.

Every view here has a text form (``__repr__``, ``_repr_pretty_``) for terminal IPython and
an HTML form (``_repr_html_``) for notebooks. The text forms keep nondeterministic values
(ids, pids, durations, paths) in fixed places so the example notebooks can mask them with
nbval's sanitize patterns (``notebooks/sanitize.cfg``).
"""

from __future__ import annotations

import html
import signal
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from jobmagic.state import describe_exit

if TYPE_CHECKING:
    from jobmagic.worker import Worker

# Text-table cells longer than this are cut with an ellipsis; the HTML table wraps instead.
COMMAND_WIDTH = 60
# The runtime column is at least this wide so that masking durations in the example
# notebooks never changes the layout of the other columns.
RUNTIME_WIDTH = 7
_MINUTE = 60
_HOUR = 3600

_STATE_COLORS = {
    "queued": "#6a737d",
    "running": "#0969da",
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "stopped": "#9a6700",
}


def format_runtime(seconds: float | None) -> str:
    """Format a duration for people: ``0.4s``, ``59.9s``, ``3m04s``, ``2h05m``.

    Parameters
    ----------
    seconds : float or None
        The duration in seconds; None (the job has not started) gives ``"-"``.
    """
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < _MINUTE:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < _HOUR:
        return f"{whole // _MINUTE}m{whole % _MINUTE:02d}s"
    return f"{whole // _HOUR}h{whole % _HOUR // _MINUTE:02d}m"


def format_exit(code: int | None) -> str:
    """Format the exit column: the code, the signal name for a kill, ``-`` while running."""
    if code is None:
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return str(code)
    return str(code)


def state_text(worker: Worker) -> str:
    """Name the job's state, with ``(orphaned)`` when its kernel is gone."""
    text: str = worker.state.value
    if worker.orphaned:
        text += " (orphaned)"
    return text


def short_command(command: str, width: int = COMMAND_WIDTH) -> str:
    """Shorten ``command`` to its first line and ``width`` characters (``…`` marks a cut)."""
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    if len(lines) > 1:
        first += " …"
    if len(first) > width:
        first = first[: width - 1] + "…"
    return first


def _label(worker: Worker) -> str:
    if worker.name:
        return f'job {worker.id} "{worker.name}"'
    return f"job {worker.id}"


def error_text(worker: Worker) -> str | None:
    """Return the job's error unless it only repeats the exit code ("exit code 1")."""
    if worker.error is None:
        return None
    if worker.exit_code is not None and worker.error == describe_exit(worker.exit_code):
        return None
    return str(worker.error)


def outcome_text(worker: Worker) -> str:
    """Say how a job stands in one phrase: ``running``, ``failed (exit code 127): <error>``."""
    text = state_text(worker)
    if worker.exit_code is not None:
        text += f" ({describe_exit(worker.exit_code)})"
    error = error_text(worker)
    if error:
        text += f": {error}"
    return text


def worker_summary(worker: Worker) -> str:
    """Describe a job in one line: id, name, state and command.

    ``job 3 "train" running - python train.py``
    """
    return f"{_label(worker)} {outcome_text(worker)} - {short_command(worker.command)}"


def _state_html(worker: Worker) -> str:
    color = _STATE_COLORS.get(worker.state.value, "inherit")
    return f'<span style="color:{color};font-weight:bold">{html.escape(state_text(worker))}</span>'


def worker_summary_html(worker: Worker) -> str:
    """Describe a job in one line of HTML (see `worker_summary`)."""
    name = f' "{html.escape(worker.name)}"' if worker.name else ""
    details = ""
    if worker.exit_code is not None:
        details += f" ({html.escape(describe_exit(worker.exit_code))})"
    error = error_text(worker)
    if error:
        details += f": {html.escape(error)}"
    return (
        f'<span class="jobmagic-summary">job <span class="jobmagic-id">{worker.id}</span>'
        f"{name} {_state_html(worker)}{details} - "
        f"<code>{html.escape(short_command(worker.command))}</code></span>"
    )


def pretty_worker(worker: Worker, printer: Any, cycle: bool) -> None:  # noqa: ARG001 - IPython's printer signature
    """IPython's ``text/plain`` printer for `Worker` (registered by the extension)."""
    printer.text(worker_summary(worker))


class JobTable:
    """A table of jobs: the value of ``%job list``.

    Parameters
    ----------
    workers : iterable of Worker
        The jobs, shown in id order.
    everything : bool
        Whether the table lists the whole store (``%job list --all``); only changes the
        message shown when there are no jobs.
    """

    columns = ("ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND")

    def __init__(self, workers: Iterable[Worker], everything: bool = False) -> None:
        self.workers: list[Worker] = sorted(workers, key=lambda w: w.id or 0)
        self.everything = everything

    def __len__(self) -> int:
        return len(self.workers)

    def _empty_message(self) -> str:
        if self.everything:
            return "No jobs in the store."
        return "No jobs in this kernel. Start one with %job start COMMAND."

    def rows(self) -> list[tuple[str, ...]]:
        """Return the table's cells as text, one tuple per job (commands not cut)."""
        return [
            (
                str(w.id),
                w.name or "-",
                state_text(w),
                format_exit(w.exit_code),
                format_runtime(w.runtime),
                w.command,
            )
            for w in self.workers
        ]

    def __repr__(self) -> str:
        if not self.workers:
            return self._empty_message()
        rows = [(*row[:-1], short_command(row[-1])) for row in self.rows()]
        widths = [
            max(len(cell) for cell in column) for column in zip(self.columns, *rows, strict=True)
        ]
        widths[4] = max(widths[4], RUNTIME_WIDTH)
        lines = []
        for row in (self.columns, *rows):
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's printer protocol
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        if not self.workers:
            return f"<p>{html.escape(self._empty_message())}</p>"
        head = "".join(f"<th style='text-align:left'>{c.lower()}</th>" for c in self.columns)
        body = []
        for worker, row in zip(self.workers, self.rows(), strict=True):
            ident, name, _state, exit_text, runtime, command = (html.escape(c) for c in row)
            body.append(
                f'<tr><td class="jobmagic-id">{ident}</td><td>{name}</td>'
                f"<td>{_state_html(worker)}</td><td>{exit_text}</td><td>{runtime}</td>"
                f"<td style='text-align:left'><code>{command}</code></td></tr>"
            )
        return (
            f'<table class="jobmagic-jobs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
        )


class JobStatus:
    """The details of one job: the value of ``%job status ID``."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def fields(self) -> Sequence[tuple[str, str]]:
        """Return the (label, value) pairs shown, in order."""
        w = self.worker
        return (
            ("command", w.command.strip()),
            ("state", state_text(w)),
            ("exit", describe_exit(w.exit_code) if w.exit_code is not None else "-"),
            ("error", error_text(w) or "-"),
            ("runtime", format_runtime(w.runtime)),
            ("pid", str(w.pid) if w.pid is not None else "-"),
            ("log", str(w.log_path)),
        )

    def __repr__(self) -> str:
        width = max(len(label) for label, _ in self.fields()) + 2
        lines = [_label(self.worker)]
        for label, value in self.fields():
            indented = value.replace("\n", "\n" + " " * (width + 2))
            lines.append(f"  {(label + ':').ljust(width)}{indented}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's printer protocol
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        rows = []
        for label, value in self.fields():
            cell = html.escape(value)
            if label == "state":
                cell = _state_html(self.worker)
            elif label in ("command", "log"):
                cell = f"<code style='white-space:pre-wrap'>{cell}</code>"
            rows.append(f"<tr><th style='text-align:left'>{label}</th><td>{cell}</td></tr>")
        title = html.escape(_label(self.worker))
        return (
            f'<table class="jobmagic-status"><caption style="text-align:left">{title}</caption>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
