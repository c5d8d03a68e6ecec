"""``%job group``, ``queue``, ``restart``, ``pause``, ``resume``, ``rm --finished``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from IPython.core.error import UsageError

from jobmagic.core.state import JobState
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import group_table, job_label, short_command


def group(service: WorkerService, name: str | None, parallel: int | None) -> str:
    """Set a group's limit (with ``parallel``) and show the groups."""
    if parallel is not None:
        if name is None:
            raise UsageError("which group? %job group gpu --parallel 2")
        try:
            service.set_group(name, parallel)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    groups = service.groups()
    if name is not None:
        groups = [g for g in groups if g.name == name]
        if not groups:
            return f"No group {name!r} yet: set its limit with %job group {name} --parallel N"
    return group_table(groups)


def pause(service: WorkerService, jobs: list[str], group: str | None, *, paused: bool) -> str:
    """``%job pause`` / ``%job resume``: what was paused (resumed), in one line per job."""
    verb = "pause" if paused else "resume"
    if bool(jobs) == (group is not None):
        raise UsageError(f"give job ids or --group: %job {verb} 7, %job {verb} --group sweep")
    done = "Paused" if paused else "Resumed"
    try:
        if group is not None:
            moved = (service.pause if paused else service.resume)(group=group)
            which = ", ".join(str(w.id) for w in moved) or "none"
            return f"{done} group {group} (jobs {verb}d: {which})."
        lines = []
        for job in jobs:
            (service.pause if paused else service.resume)(job)
            lines.append(f"{done} {job_label(service.get(job))}.")
    except (JobmagicError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return "\n".join(lines)


def restart(
    service: WorkerService, jobs: list[str], failed: bool, group: str | None
) -> list[Worker] | Worker | None:
    """``%job restart``: the new Worker (one job), the new Workers (several), or None."""
    if failed == bool(jobs):
        raise UsageError("give ended job ids or --failed: %job restart 7, %job restart --failed")
    if group is not None and not failed:
        raise UsageError("--group goes with --failed: %job restart --failed --group sweep")
    try:
        if failed:
            started = service.restart_failed(group)
            if not started:
                sys.stdout.write("No failed jobs to restart.\n")
                return None
        else:
            started = [service.restart(job) for job in jobs]
    except (JobmagicError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return started[0] if len(started) == 1 and not failed else started


def remove_finished(service: WorkerService, *, everyone: bool) -> str:
    """``%job rm --finished [--all-kernels]``: delete finished jobs; say how many of whose."""
    mine = service.remove_finished(own=True)
    said = f"Removed {_jobs(mine)} of this kernel"
    if everyone:
        return f"{said} and {_jobs(service.remove_finished())} of other kernels."
    kept = len(service.store.list(states=[s for s in JobState if s.is_finished]))
    if kept:
        return f"{said}; kept {_jobs(kept)} of other kernels (--all-kernels removes them too)."
    return f"{said}."


def _jobs(count: int) -> str:
    return f"{count} finished job{'' if count == 1 else 's'}"


def queue(service: WorkerService) -> str:
    """Every kernel's queued jobs, in the order they will start, with why they wait."""
    records = service.store.list(states=[JobState.QUEUED])
    if not records:
        return "No queued jobs."
    records.sort(key=lambda r: (r.group_name, -r.priority, r.id))
    reasons = service.queue.reasons(records)
    rows = [("ID", "GROUP", "PRIORITY", "WAITING", "COMMAND")] + [
        (
            str(r.id),
            r.group_name,
            str(r.priority),
            "its kernel is gone" if not r.owner_alive else reasons.get(r.id, "starting"),
            short_command(r.command),
        )
        for r in records
    ]
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
