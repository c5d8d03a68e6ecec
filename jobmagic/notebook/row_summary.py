"""How a job's row in the panel reads: its summary line, in one HTML value.

Id, group, name and command, state badge, start ("3 min ago"), runtime, then why a
queued job waits, a running job's progress (the latest output line's percentage), usage
("CPU 85% · 1.2 GiB") and pid (or, for a job that does not run here, where it runs:
``ray http://HOST:8265``), or an ended job's exit. One HTML value, so that a change
costs one message.
"""

from __future__ import annotations

import html
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from jobmagic.core.spec import DEFAULT_GROUP
from jobmagic.core.state import JobState
from jobmagic.text.describe import (
    STATE_COLORS,
    exit_text,
    format_runtime,
    runs_elsewhere,
    shorten,
    where_text,
)

if TYPE_CHECKING:
    from jobmagic.engine.worker import Worker

_NAME_CHARS = 40  # a longer name or command is shortened; the full text is the tooltip
_ERROR_CHARS = 60
#: Seconds a job runs before its row offers Pause (the panel's first runtime tick renders it).
PAUSE_AFTER = 1.0
# How much of the log's end the runtime tick reads for the latest line's percentage: a
# progress line is short, and a longer one keeps its end (where the numbers are).
_PROGRESS_BYTES = 4096
_MINUTE, _HOUR, _DAY = 60, 3600, 86400
# A percentage in a progress line ("45%|####", " 45% [===>", "progress 45.5 %"); not
# part of a longer number.
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?) ?%")
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?)")
_PROGRESS_COLOR = "#208ffb"


def badge(state: JobState, text: str | None = None) -> str:
    """A state badge: white text on the state's colour (``text`` defaults to the state)."""
    color = STATE_COLORS[state]
    label = html.escape(text if text is not None else state.value.upper())
    return (
        f'<span class="jobmagic-badge jobmagic-state-{state.value}" style="background:'
        f"{color};color:#fff;border-radius:3px;padding:0 0.5em;font-size:11px;"
        f'font-weight:bold;white-space:nowrap">{label}</span>'
    )


def started_ago(started_at: float | None, now: float) -> str:
    """When a job started, as a person says it: ``"just now"``, ``"3 min ago"``, ``"2 h ago"``.

    ``started_at`` and ``now`` are epoch seconds; None (not started) gives ``""``. The
    wording changes at most once a minute, so a row re-sent for it costs little.
    """
    if started_at is None:
        return ""
    seconds = max(0.0, now - started_at)
    if seconds < _MINUTE:
        return "just now"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE:.0f} min ago"
    if seconds < _DAY:
        return f"{seconds // _HOUR:.0f} h ago"
    return f"{seconds // _DAY:.0f} d ago"


def latest_percent(text: str) -> float | None:
    r"""The percentage the last line of terminal ``text`` shows, or None if it shows none.

    The last line is what a terminal would show last: the text after the last ``\n`` or
    ``\r`` (a trailing one ignored, so ``"45%\r"`` reads 45). Its first number followed
    by ``%`` between 0 and 100 counts: tqdm (``" 45%|####"``), wget (``" 45%[==>"``),
    ``curl -#`` (``"### 45.3%"``), or any ``"progress 45%"``.
    """
    line = re.split(r"[\r\n]", _ANSI_ESCAPE.sub("", text).rstrip("\r\n"))[-1]
    for match in _PERCENT.finditer(line):
        value = float(match.group(1))
        if value <= 100:  # noqa: PLR2004 - a percentage
            return value
    return None


def read_log_end(path: Path, size: int = _PROGRESS_BYTES) -> str:
    """The last ``size`` bytes of the log at ``path``, decoded; ``""`` if it cannot be read."""
    try:
        with path.open("rb") as log:
            end = log.seek(0, os.SEEK_END)
            log.seek(max(0, end - size))
            return log.read(size).decode(errors="replace")
    except OSError:
        return ""


def _cell(
    text: str, width: str | None, title: str | None = None, css: str = "", name: str = ""
) -> str:
    """One column of a summary line; ``width`` None takes the rest of the line.

    ``name``: the column's CSS class (``jobmagic-<name>``), for styling and tests.
    """
    title_attr = f' title="{html.escape(title)}"' if title else ""
    class_attr = f' class="jobmagic-{name}"' if name else ""
    size = f"flex:none;width:{width}" if width else "flex:1 1 0;min-width:0"
    return (
        f'<span{class_attr} style="{size};overflow:hidden;text-overflow:ellipsis;{css}"'
        f"{title_attr}>{text}</span>"
    )


def _progress_bar(percent: float) -> str:
    """A small bar filled to ``percent`` (0 to 100), then the percentage."""
    shown = round(percent)
    return (
        f'<span class="jobmagic-progress" data-percent="{shown}" title="{shown}% (from the '
        'latest output line)" style="display:inline-block;vertical-align:middle;'
        f"width:4em;height:0.7em;border:1px solid {_PROGRESS_COLOR};border-radius:3px;"
        'overflow:hidden;box-sizing:border-box">'
        f'<span class="jobmagic-progress-bar" style="display:block;height:100%;'
        f'width:{shown}%;background:{_PROGRESS_COLOR}"></span></span> {shown}% '
    )


def _usage_span(usage: str, limits: str | None) -> str:
    """A running job's usage (``CPU 85% · 1.2 GiB``), its limits on hover; "" for none."""
    if not usage:
        return ""
    title = f' title="limits: {html.escape(limits)}"' if limits else ""
    return f'<span class="jobmagic-usage"{title}>{html.escape(usage)}</span> '


def row_tooltip(w: Worker) -> str:
    """The summary's tooltip: the job's command, its limits and where it runs, if not here."""
    limits = w.limits
    tooltip = w.command + (f"\nlimits: {limits.describe()}" if limits else "")
    if runs_elsewhere(w.spec.backend):
        tooltip += f"\nruns on: {where_text(w.spec.backend, w.spec.address)}"
    return tooltip


def _where_span(w: Worker) -> str:
    """Where an active job runs when not on this machine, else "".

    ``ray http://HOST:8265``, with what its backend says of it: ``(waiting for the Ray
    cluster)``.
    """
    if not runs_elsewhere(w.spec.backend):
        return ""
    where = where_text(w.spec.backend, w.spec.address)
    if w.detail:
        where += f" ({w.detail})"
    return f'<span class="jobmagic-where">{html.escape(where)}</span> '


def _group_tag(group: str) -> str:
    """The group a job runs in, as a small outlined tag before its name."""
    name = html.escape(group)
    return (
        f'<span class="jobmagic-group" title="group {name}" style="border:1px solid;'
        f'border-radius:3px;padding:0 0.3em;opacity:0.75">{name}</span> '
    )


def _label_cells(w: Worker) -> str:
    """Name and shortened command (full on hover), or the command alone, in one width."""
    tag = _group_tag(w.group) if w.group != DEFAULT_GROUP else ""
    command = html.escape(shorten(w.command, _NAME_CHARS))
    if not w.name:
        return _cell(tag + command, "15em", w.command)
    name = html.escape(shorten(w.name, _NAME_CHARS))
    # As wide as the command alone (with the gap): the columns after it line up.
    return _cell(tag + name, "6em", w.name) + _cell(
        command, "8.4em", w.command, "opacity:0.7", "command"
    )


def render_summary(
    w: Worker, queue_reason: str | None = None, progress: float | None = None, usage: str = ""
) -> tuple[JobState, str, str]:
    """The job's state, the HTML of its summary line, and when it started as shown.

    A queued job's line reads its ``queue_reason`` (unless given), which may read the
    store: the panel renders queued rows on events only, never on its runtime tick.
    ``progress``: the percentage shown as a bar while the job is active, or None.
    ``usage``: what it uses now (``describe.usage_text``), shown while it runs.
    """
    state = w.state
    head = (
        f'<div class="jobmagic-summary" data-state="{state.value}" style="display:flex;'
        "align-items:center;gap:0.6em;white-space:nowrap;font-size:12px;"
        'font-family:var(--jp-code-font-family,monospace)">'
        + _cell(f"#{w.id}", "2.5em")
        + _label_cells(w)
        + _cell(badge(state), "6.5em")
    )
    if state is JobState.QUEUED:
        # Not started: why it waits takes the place of the rest of the line.
        reason = queue_reason or w.queue_reason
        return state, head + _cell(html.escape(reason or ""), None, reason) + "</div>", ""
    if state.is_active:
        # The pid of a job that has ended would be stale (and may be reused): its exit
        # takes the place.
        bar = _progress_bar(progress) if progress is not None else ""
        limits = w.limits.describe() if w.limits else None
        use = _usage_span(usage, limits) if state is JobState.RUNNING else ""
        ending = _cell(bar + use + _where_span(w) + (f"pid {w.pid}" if w.pid else ""), None)
    elif w.error:
        ending = _cell(
            html.escape(shorten(w.error, _ERROR_CHARS)),
            None,
            w.error,
            f"color:{STATE_COLORS[JobState.FAILED]}",
        )
    else:
        ending = _cell(html.escape(exit_text(w.exit_code) or ""), None)
    started_at = w.started_at
    started = started_ago(started_at, time.time())
    when = (
        time.strftime("started %Y-%m-%d %H:%M:%S", time.localtime(started_at))
        if started_at is not None
        else None
    )
    runtime = w.runtime  # a paused job's does not grow
    summary = (
        head
        + _cell(html.escape(started), "5.5em", when, name="started")
        + _cell(format_runtime(runtime) if runtime is not None else "", "5em", name="runtime")
        + ending
        + "</div>"
    )
    return state, summary, started
