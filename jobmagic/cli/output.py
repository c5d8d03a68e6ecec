"""What the command line prints: aligned tables, colours on a terminal, relative times."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO

from jobmagic.core.limits import Usage
from jobmagic.core.spec import DEFAULT_GROUP
from jobmagic.core.state import JobState
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import node_of
from jobmagic.text.describe import (
    error_text,
    exit_column,
    exit_field,
    format_runtime,
    limit_fields,
    runs_elsewhere,
    short_command,
    state_text,
    where_text,
)

# Basic ANSI colours (every terminal has them) for the states of ``STATE_COLORS``.
_ANSI = {
    JobState.QUEUED: "90",  # grey
    JobState.RUNNING: "34",  # blue
    JobState.PAUSED: "35",  # magenta
    JobState.SUCCEEDED: "32",  # green
    JobState.FAILED: "31",  # red
    JobState.STOPPED: "33",  # yellow
}
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
COLUMNS = ("ID", "NAME", "STATE", "EXIT", "RUNTIME", "STARTED", "COMMAND")


def use_colour(stream: IO[str]) -> bool:
    """Colours only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def coloured(text: str, state: JobState, colour: bool) -> str:
    """``text`` in the colour of ``state`` when ``colour``."""
    return f"\x1b[{_ANSI[state]}m{text}\x1b[0m" if colour else text


def ago(when: float | None, now: float | None = None) -> str:
    """``"12s ago"``, ``"3m ago"``, ``"2h ago"``, ``"5d ago"``; ``-`` for never."""
    if when is None:
        return "-"
    seconds = max(0.0, (now if now is not None else time.time()) - when)
    if seconds < _MINUTE:
        return f"{seconds:.0f}s ago"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE:.0f}m ago"
    if seconds < _DAY:
        return f"{seconds // _HOUR:.0f}h ago"
    return f"{seconds // _DAY:.0f}d ago"


def job_table(
    records: Sequence[JobRecord],
    colour: bool,
    now: float | None = None,
    reasons: Mapping[int, str] | None = None,
) -> str:
    """The jobs as aligned columns under a header line (no trailing spaces).

    A GROUP column appears when a job is in a group other than ``default``, a WAITING
    column (``reasons``: why each queued job waits) when a job is queued, a WHERE column
    (``local``, ``ray http://HOST:8265``) when a job does not run on this machine.
    """
    grouped = any(r.group_name != DEFAULT_GROUP for r in records)
    queued = any(r.state is JobState.QUEUED for r in records)
    elsewhere = any(runs_elsewhere(r.backend) for r in records)
    reasons = reasons or {}
    columns = (
        *COLUMNS[:2],
        *(("GROUP",) if grouped else ()),
        *COLUMNS[2:6],
        *(("WAITING",) if queued else ()),
        *(("WHERE",) if elsewhere else ()),
        COLUMNS[6],
    )
    rows = [
        (
            str(r.id),
            r.name or "-",
            *((r.group_name,) if grouped else ()),
            state_text(r),
            exit_column(r.exit_code),
            format_runtime(r.runtime) if r.runtime is not None else "-",
            ago(r.started_at, now),
            *((reasons.get(r.id, "-") if r.state is JobState.QUEUED else "",) if queued else ()),
            *((where_text(r.backend, r.address),) if elsewhere else ()),
            short_command(r.command),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    lines = [_line(columns, widths)]
    state_at = columns.index("STATE")
    for record, row in zip(records, rows, strict=True):
        line = _line(row, widths)
        if colour:
            # Colour the state cell only; padding stays outside the escape codes.
            start = sum(w + 2 for w in widths[:state_at])
            cell = row[state_at]
            line = line[:start] + coloured(cell, record.state, colour) + line[start + len(cell) :]
        lines.append(line)
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def job_details(
    record: JobRecord, colour: bool, now: float | None = None, usage: Usage | None = None
) -> str:
    """``jobmagic status``: one ``key: value`` line per fact about the job.

    ``usage``: what it uses now (``Worker.usage()``) while it runs; None: the record's
    (what it used, once it has ended).
    """
    facts = [
        ("job", str(record.id)),
        ("name", record.name or "-"),
        ("state", coloured(state_text(record), record.state, colour)),
        ("runs on", where_text(record.backend, record.address, node_of(record))),
        ("exit", exit_field(record.exit_code)),
        ("error", error_text(record) or "-"),
        ("command", record.command),
        ("cwd", record.cwd or "-"),
        ("pid", str(record.pid) if record.pid is not None else "-"),
        ("owner", record.owner or "-"),
        ("started", ago(record.started_at, now)),
        ("runtime", format_runtime(record.runtime) if record.runtime is not None else "-"),
        *limit_fields(
            record.limits, record.containment, usage or record.usage, record.state.is_finished
        ),
        ("log", record.log_path),
    ]
    if record.stop_requested_by:
        facts.append(("stopped by", record.stop_requested_by))
    width = max(len(key) for key, _ in facts)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in facts)


def say(text: str, stream: IO[str] | None = None) -> None:
    """Print one message line (to stdout unless told)."""
    print(text, file=stream or sys.stdout, flush=True)
