"""How jobs look in a notebook and in terminal IPython.

Every view here has a text form (``__repr__``, ``_repr_pretty_``) for terminal IPython and
an HTML form (``_repr_html_``) for notebooks. The text forms keep nondeterministic values
(ids, pids, durations, paths) in fixed places so the example notebooks can mask them with
nbval's sanitize patterns (``notebooks/sanitize.cfg``).
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jobmagic.core.spec import DEFAULT_GROUP
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import (
    STATE_COLORS,
    error_text,
    exit_column,
    exit_field,
    format_runtime,
    job_label,
    limit_fields,
    outcome_details,
    outcome_text,
    runs_elsewhere,
    short_command,
    state_text,
    where_text,
)

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

# The runtime column is at least this wide so that masking durations in the example
# notebooks never changes the layout of the other columns.
RUNTIME_WIDTH = 7


#: A job displayed this soon after it started gets this long (seconds) to fail at once,
#: so that the Out[] of ``%job start pyhton x.py`` says "failed", not "running" for ever.
#: (A typo in the command ends within milliseconds.) Only a displayed job waits: a
#: sweep of ``j = %job start ...`` shows nothing and so costs nothing.
FIRST_MOMENT = 0.25


def _settled(worker: Worker) -> Worker:
    """``worker``, once a job that has just started had its first moment to fail."""
    runtime = worker.runtime
    fresh = runtime is not None and runtime < FIRST_MOMENT
    if fresh and worker.owned and worker.state is JobState.RUNNING:
        with contextlib.suppress(JobmagicError):  # not from the watcher thread
            worker.wait(FIRST_MOMENT - (runtime or 0.0))
    return worker


def worker_summary(worker: Worker) -> str:
    """Describe a job in one line: id, name, state and command.

    ``job 3 "train" running - python train.py``
    """
    worker = _settled(worker)
    return f"{job_label(worker)} {outcome_text(worker)} - {short_command(worker.command)}"


def _state_html(worker: Worker) -> str:
    color = STATE_COLORS[worker.state]
    return f'<span style="color:{color};font-weight:bold">{html.escape(state_text(worker))}</span>'


def worker_summary_html(worker: Worker) -> str:
    """Describe a job in one line of HTML (see `worker_summary`)."""
    worker = _settled(worker)
    name = f' "{html.escape(worker.name)}"' if worker.name else ""
    details = html.escape(outcome_details(worker))
    return (
        f'<span class="jobmagic-summary">job <span class="jobmagic-id">{worker.id}</span>'
        f"{name} {_state_html(worker)}{details} - "
        f"<code>{html.escape(short_command(worker.command))}</code></span>"
    )


def worker_where(worker: Worker) -> str:
    """Where the job runs: ``local``, ``ray http://10.0.0.5:8265`` (`describe.where_text`)."""
    return where_text(worker.spec.backend, worker.spec.address)


def pretty_worker(worker: Worker, printer: Any, cycle: bool) -> None:  # noqa: ARG001 - IPython's printer signature
    """IPython's ``text/plain`` printer for `Worker` (registered by the extension)."""
    printer.text(worker_summary(worker))


def pretty_state(state: JobState, printer: Any, cycle: bool) -> None:  # noqa: ARG001 - IPython's printer signature
    """IPython's ``text/plain`` printer for `JobState`: ``running``, not ``<JobState...>``."""
    printer.text(state.value)


class JobTable:
    """A table of jobs: the value of ``%job list``.

    Parameters
    ----------
    workers : iterable of Worker
        The jobs, shown in id order.
    everything : bool
        Whether the table lists the whole store (``%job list --all``); only changes the
        message shown when there are no jobs.
    orphans : int
        How many queued or running jobs of kernels that are gone the table does not list.
    reasons : mapping of job id to str, optional
        Why each queued job waits, worked out for all of them at once
        (``JobQueue.reasons``); None asks each job (one read of the queue per job).

    A GROUP column appears when a job is in a queue group other than ``default``, a
    WAITING column (why each queued job has not started) when a job is queued, and a
    WHERE column (``local``, ``ray http://HOST:8265``) when a job does not run here.
    """

    def __init__(
        self,
        workers: Iterable[Worker],
        everything: bool = False,
        orphans: int = 0,
        reasons: Mapping[int, str] | None = None,
    ) -> None:
        self.workers: list[Worker] = sorted(workers, key=lambda w: w.id or 0)
        self.everything = everything
        self.orphans = orphans
        # Worked out once: the text and the HTML of the table both show them.
        self._reasons = {
            w.id: (reasons.get(w.id or 0) if reasons is not None else w.queue_reason) or "-"
            for w in self.workers
            if w.state is JobState.QUEUED
        }
        self._grouped = any(w.group != DEFAULT_GROUP for w in self.workers)
        self._queued = any(w.state is JobState.QUEUED for w in self.workers)
        self._elsewhere = any(runs_elsewhere(w.spec.backend) for w in self.workers)
        self.columns: tuple[str, ...] = (
            "ID",
            "NAME",
            *(("GROUP",) if self._grouped else ()),
            "STATE",
            "EXIT",
            "RUNTIME",
            *(("WAITING",) if self._queued else ()),
            *(("WHERE",) if self._elsewhere else ()),
            "COMMAND",
        )

    def __len__(self) -> int:
        return len(self.workers)

    def _empty_message(self) -> str:
        if self.everything:
            return "No jobs in the store."
        return "No jobs in this kernel. Start one with %job start COMMAND."

    def _orphans_note(self) -> str:
        """A line about the jobs of dead kernels this table leaves out ('' when none)."""
        if not self.orphans:
            return ""
        jobs = "1 job" if self.orphans == 1 else f"{self.orphans} jobs"
        verb = "is" if self.orphans == 1 else "are"
        return (
            f"{jobs} of kernels that are gone {verb} still queued or running: "
            "%job list --all shows them, %job adopt ID takes one over."
        )

    def rows(self) -> list[tuple[str, ...]]:
        """Return the table's cells as text, one tuple per job (commands not cut)."""
        return [
            (
                str(w.id),
                w.name or "-",
                *((w.group,) if self._grouped else ()),
                state_text(w),
                exit_column(w.exit_code),
                format_runtime(w.runtime),
                *((self._reasons.get(w.id, ""),) if self._queued else ()),
                *((worker_where(w),) if self._elsewhere else ()),
                w.command,
            )
            for w in self.workers
        ]

    def __repr__(self) -> str:
        note = self._orphans_note()
        return self._text_table() + (f"\n{note}" if note else "")

    def _text_table(self) -> str:
        if not self.workers:
            return self._empty_message()
        rows = [(*row[:-1], short_command(row[-1])) for row in self.rows()]
        widths = [
            max(len(cell) for cell in column) for column in zip(self.columns, *rows, strict=True)
        ]
        runtime = self.columns.index("RUNTIME")
        widths[runtime] = max(widths[runtime], RUNTIME_WIDTH)
        lines = []
        for row in (self.columns, *rows):
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - IPython's printer protocol
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        note = self._orphans_note()
        return self._html_table() + (f"<p>{html.escape(note)}</p>" if note else "")

    def _html_table(self) -> str:
        if not self.workers:
            return f"<p>{html.escape(self._empty_message())}</p>"
        head = "".join(f"<th style='text-align:left'>{c.lower()}</th>" for c in self.columns)
        body = []
        for worker, row in zip(self.workers, self.rows(), strict=True):
            cells = dict(zip(self.columns, (html.escape(c) for c in row), strict=True))
            # JupyterLab right-aligns table cells; these hold text, under left-aligned heads.
            shown = [f'<td class="jobmagic-id" style="text-align:left">{cells["ID"]}</td>']
            for column in self.columns[1:-1]:
                text = _state_html(worker) if column == "STATE" else cells[column]
                shown.append(f"<td style='text-align:left'>{text}</td>")
            # A %%job cell's whole script would fill the row: its first line, all on hover.
            command = html.escape(short_command(worker.command))
            shown.append(
                f"<td style='text-align:left' title='{cells['COMMAND']}'>"
                f"<code>{command}</code></td>"
            )
            body.append(f"<tr>{''.join(shown)}</tr>")
        return (
            f'<table class="jobmagic-jobs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
        )


class JobStatus:
    """The details of one job: the value of ``%job status ID``.

    Every job shows what it uses (``usage``, while it runs) or used (``used``: peak
    memory and CPU time) where its backend can tell; a job with limits also shows them
    and what holds it (``held by: cgroup v1``). A job that does not run on this machine
    says where it runs (``runs on: ray http://HOST:8265``).
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def fields(self) -> Sequence[tuple[str, str]]:
        """Return the (label, value) pairs shown, in order."""
        w = self.worker
        limits = w.limits
        return (
            ("command", w.command.strip()),
            ("state", state_text(w)),
            *((("runs on", worker_where(w)),) if runs_elsewhere(w.spec.backend) else ()),
            ("exit", exit_field(w.exit_code)),
            ("error", error_text(w) or "-"),
            ("runtime", format_runtime(w.runtime)),
            *limit_fields(limits, w.containment, w.usage(), w.state.is_finished),
            ("pid", str(w.pid) if w.pid is not None else "-"),
            ("log", str(w.log_path)),
        )

    def __repr__(self) -> str:
        fields = self.fields()  # once: a running job's usage is read for them
        width = max(len(label) for label, _ in fields) + 2
        lines = [job_label(self.worker)]
        for label, value in fields:
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
            rows.append(
                f"<tr><th style='text-align:left'>{label}</th>"
                f"<td style='text-align:left'>{cell}</td></tr>"
            )
        title = html.escape(job_label(self.worker))
        return (
            f'<table class="jobmagic-status"><caption style="text-align:left">{title}</caption>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
