"""How a job reads to a person: the one place that words states, exits, runtimes, usage.

(And where a job runs: ``where_text``.)

Every view uses these: the ``%job`` tables, the panel, the server's JSON (``exit_text``),
the command line. They take anything with a job's attributes (a ``Worker``, a
``JobRecord``); the limits and usage ones take ``core.limits``' values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from jobmagic.core.limits import Limits, Usage, format_size
from jobmagic.core.state import JobState, describe_exit, signal_name

#: One colour per state, readable as text on light and dark backgrounds and as a badge
#: behind white text.
STATE_COLORS = {
    JobState.QUEUED: "#6a737d",
    JobState.RUNNING: "#0969da",
    JobState.PAUSED: "#8250df",
    JobState.SUCCEEDED: "#1a7f37",
    JobState.FAILED: "#cf222e",
    JobState.STOPPED: "#9a6700",
}

#: The backend that runs jobs on this machine: the views name where a job runs only when
#: it is not this one (existing all-local tables and details stay as they were).
LOCAL_BACKEND = "local"

#: Text cells longer than this are cut with an ellipsis.
COMMAND_WIDTH = 60
_MINUTE = 60
_HOUR = 3600
# How a job's containment (``Worker.containment``) says what best effort gave up.
_BEST_EFFORT = "; best effort: "


class DescribedJob(Protocol):
    """What describing a job reads of it."""

    @property
    def id(self) -> int | None:
        """The job's id (None before it has one)."""
        ...

    @property
    def name(self) -> str | None:
        """Its alias, or None."""
        ...

    @property
    def command(self) -> str:
        """The shell command line."""
        ...

    @property
    def state(self) -> JobState:
        """Where it is in its life."""
        ...

    @property
    def exit_code(self) -> int | None:
        """Its exit code, or None."""
        ...

    @property
    def error(self) -> str | None:
        """What went wrong, in one line, or None."""
        ...

    @property
    def orphaned(self) -> bool:
        """True while it runs with its kernel gone."""
        ...

    @property
    def detail(self) -> str | None:
        """What its backend says of it while it runs, or None."""
        ...


def format_runtime(seconds: float | None) -> str:
    """A duration for people: ``0.4s``, ``59.9s``, ``3m04s``, ``2h05m``; ``-`` for None.

    Parameters
    ----------
    seconds:
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


def exit_text(exit_code: int | None) -> str | None:
    """``"exit code 3"``, ``"killed by SIGKILL"``; None when there is no exit code."""
    return describe_exit(exit_code) if exit_code is not None else None


def exit_column(exit_code: int | None) -> str:
    """The exit column of a table: the code, the signal name of a kill, ``-`` while running."""
    if exit_code is None:
        return "-"
    if exit_code < 0:
        name = signal_name(-exit_code)
        return name if name.startswith("SIG") else str(exit_code)
    return str(exit_code)


def state_text(job: DescribedJob) -> str:
    """The job's state, with ``(orphaned)`` when its kernel is gone.

    A running job whose backend has something to say adds it: ``running (waiting for the
    Ray cluster)``.
    """
    text = job.state.value
    detail = job.detail if job.state.is_active else None
    if detail:
        text += f" ({detail})"
    if job.orphaned:
        text += " (orphaned)"
    return text


def job_label(job: DescribedJob) -> str:
    """``job 3`` or ``job 3 "train"``."""
    if job.name:
        return f'job {job.id} "{job.name}"'
    return f"job {job.id}"


def where_text(backend: str, address: str | None, node: str | None = None) -> str:
    """Where a job runs, in a few words: ``local``, ``ray http://10.0.0.5:8265 (node 10.0.0.7)``.

    Parameters
    ----------
    backend:
        The job's backend (``JobSpec.backend``, ``JobRecord.backend``).
    address:
        The cluster it was submitted to (``JobSpec.address``); None: none, as for a
        local job (the Ray backend makes a Ray job's explicit when it is recorded).
    node:
        The host that runs it, once its backend knows; None: not known (or local).
    """
    where = backend if address is None else f"{backend} {address}"
    return f"{where} (node {node})" if node else where


def runs_elsewhere(backend: str) -> bool:
    """True for a job that another backend than this machine's runs (a Ray job)."""
    return backend != LOCAL_BACKEND


def short_command(command: str, width: int = COMMAND_WIDTH) -> str:
    """Shorten ``command`` to its first line and ``width`` characters (``…`` marks a cut)."""
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    if len(lines) > 1:
        first += " …"
    if len(first) > width:
        first = first[: width - 1] + "…"
    return first


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(job: DescribedJob) -> str | None:
    """The job's error, unless it only repeats the exit code ("exit code 1")."""
    if job.error is None:
        return None
    if job.exit_code is not None and job.error == describe_exit(job.exit_code):
        return None
    return job.error


def outcome_details(job: DescribedJob) -> str:
    """What follows the state in ``outcome_text``: `` (exit code 127): <error>`` or ""."""
    text = ""
    ending = exit_text(job.exit_code)
    if ending is not None:
        text += f" ({ending})"
    error = error_text(job)
    if error:
        text += f": {error}"
    return text


def outcome_text(job: DescribedJob) -> str:
    """How a job stands in one phrase: ``running``, ``failed (exit code 127): <error>``."""
    return state_text(job) + outcome_details(job)


def group_table(groups: Iterable[tuple[str, int, int, int, bool]]) -> str:
    """Queue groups (name, parallel, running, queued, paused) as aligned text columns."""
    rows = [("GROUP", "PARALLEL", "RUNNING", "QUEUED", "PAUSED")] + [
        (
            name,
            str(parallel) if parallel else "any",
            str(running),
            str(queued),
            "yes" if paused else "no",
        )
        for name, parallel, running, queued, paused in groups
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def exit_field(exit_code: int | None) -> str:
    """The exit field of a job's details: ``127``, ``killed by SIGKILL``, ``-`` while running.

    (Under the label "exit", so not "exit code 127".)
    """
    if exit_code is None:
        return "-"
    return describe_exit(exit_code) if exit_code < 0 else str(exit_code)


def usage_text(usage: Usage | None) -> str:
    """A running job's use now, compact: ``CPU 85% · 1.2 GiB``; ``""`` when nothing is known.

    Parameters
    ----------
    usage:
        A reading of ``Worker.usage()``: the CPU part is its ``cpu_percent`` (100 per busy
        core), the size its ``memory`` (bytes in use now); a part that is None is left
        out. None gives ``""``.
    """
    if usage is None:
        return ""
    parts = []
    if usage.cpu_percent is not None:
        parts.append(f"CPU {usage.cpu_percent:.0f}%")
    if usage.memory is not None:
        parts.append(format_size(usage.memory))
    return " · ".join(parts)


def usage_details(usage: Usage | None) -> str:
    """All that is known of a job's use, in one line; ``-`` when nothing is.

    ``CPU 85% · 1.2 GiB (peak 1.5 GiB, CPU time 12.3s)`` while it runs (see
    `usage_text`), ``peak 1.5 GiB, CPU time 12.3s`` once it has ended (an ended job's
    usage has no figures of now).
    """
    if usage is None:
        return "-"
    totals = []
    if usage.peak_memory is not None:
        totals.append(f"peak {format_size(usage.peak_memory)}")
    if usage.cpu_seconds is not None:
        totals.append(f"CPU time {format_runtime(usage.cpu_seconds)}")
    now, total = usage_text(usage), ", ".join(totals)
    if now and total:
        return f"{now} ({total})"
    return now or total or "-"


def cpu_limit_warning(limits: Limits) -> str | None:
    """Why a CPU limit above this machine's CPU count is allowed but idle; None otherwise."""
    if not limits.more_cpus_than_machine():
        return None
    return (
        f"warning: a limit of {limits.cpus:g} cpus is more than the {os.cpu_count()} this "
        "machine has; the job runs, but the limit never holds it back"
    )


def best_effort_text(containment: str | None) -> str | None:
    """What best effort gave up of a job's limits; None when it gave up nothing.

    ``containment`` is ``Worker.containment``: from ``"none; best effort: cpus dropped
    (needs the cpu controller)"`` comes ``"best effort, no cgroup: cpus dropped (needs the
    cpu controller)"``. None (the job has not run yet) gives None.
    """
    if containment is None or _BEST_EFFORT not in containment:
        return None
    held, _, notes = containment.partition(_BEST_EFFORT)
    where = "no cgroup" if held == "none" else held
    return f"best effort, {where}: {notes}"


def limit_notes(job: DescribedJob, limits: Limits, containment: str | None) -> list[str]:
    """The lines a start says of a new job's limits; none for most jobs.

    A CPU limit above this machine's CPU count (`cpu_limit_warning`), and, once the job
    runs (``containment`` is known), the limits best effort dropped or replaced
    (``job 3 runs with best effort, no cgroup: ...``).
    """
    warning = cpu_limit_warning(limits)
    notes = [warning] if warning is not None else []
    gave_up = best_effort_text(containment)
    if gave_up is not None:
        notes.append(f"{job_label(job)} runs with {gave_up}")
    return notes


def limit_fields(
    limits: Limits, containment: str | None, usage: Usage | None, finished: bool
) -> list[tuple[str, str]]:
    """A job's limits and usage as (label, value) pairs, as ``%job status`` shows them.

    With limits: ``limits`` (``memory 100 MiB, cpus 0.5``) and ``held by`` (its
    containment, ``cgroup v1``) once it has run. Every job: ``usage`` (`usage_details`)
    while it runs, ``used`` once it has ended (``finished``), when its backend could tell.
    """
    fields = []
    if limits:
        fields.append(("limits", limits.describe()))
        if containment is not None:
            fields.append(("held by", containment))
    if usage is not None:
        fields.append(("used" if finished else "usage", usage_details(usage)))
    return fields
