"""The command line's subcommands: each takes the parsed arguments, returns an exit status.

Exit statuses: 0 done (for ``wait`` and ``logs --follow``: the jobs succeeded); the job's
own status for ``logs --follow`` and ``wait`` (128+N for a job killed by signal N, 1 when
it is unknown); 124 when ``wait`` timed out (as ``timeout(1)``); 2 for a usage error or an
id or name that names no job (``errors.UsageError``); 1 when the store cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from jobmagic.core.state import JobState
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker
from jobmagic.errors import JobNotFound
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import job_json, job_list_json, usage_json
from jobmagic.text.describe import group_table, job_label, limit_notes, outcome_text

from .output import job_details, job_table, say, use_colour
from .watch import follow_log, wait_for_jobs

#: ``wait`` timed out (as ``timeout(1)`` does).
TIMED_OUT = 124
#: A shell's status for a process killed by signal N is this plus N.
_SIGNAL_BASE = 128
#: Finished jobs ``list`` shows without ``--all``.
RECENT_FINISHED = 20
#: Who the store says asked for a stop made here.
BY = "cli"


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


Command = Callable[[WorkerService, argparse.Namespace], int]


def shell_status(record: JobRecord | None) -> int:
    """A job's end as a process exit status: its exit code, 128+N for signal N, else 1."""
    if record is None:
        return 1
    if record.state is JobState.SUCCEEDED:
        return 0
    code = record.exit_code
    if code is None:
        return 1
    if code < 0:
        return _SIGNAL_BASE - code
    return code if 0 < code < 256 else 1  # noqa: PLR2004 - the range of an exit status


def find(service: WorkerService, id_or_name: str) -> JobRecord:
    """The record an id or name names, as the magics find it."""
    try:
        job_id = service.get(id_or_name).id
    except JobNotFound as exc:
        raise UsageError(str(exc)) from None
    record = service.store.get(job_id or 0)
    if record is None:
        raise UsageError(f"no job {id_or_name!r}")
    return record


def _targets(service: WorkerService, args: argparse.Namespace, what: str) -> list[JobRecord]:
    group = getattr(args, "group", None)
    if sum(map(bool, (args.all, args.jobs, group))) > 1:
        raise UsageError(
            f"give job ids, --group or --all, not more than one: jobmagic {what} --all"
        )
    if args.all or group:
        return [
            r
            for r in service.store.list()
            if not r.state.is_finished and (group is None or r.group_name == group)
        ]
    if not args.jobs:
        raise UsageError(f"which jobs? give their ids or names: jobmagic {what} 7 8, or --all")
    return [find(service, job) for job in args.jobs]


def _json_out(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- looking -------------------------------------------------------------------------------
def list_jobs(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic list``: the running and queued jobs and the latest finished ones."""
    service.reconcile()
    states = [JobState(s) for s in args.state] if args.state else None
    records = service.store.list(states=states)
    if args.group is not None:
        records = [r for r in records if r.group_name == args.group]
    if not args.all and states is None:
        finished = [r for r in records if r.state.is_finished]
        hidden = {r.id for r in finished[:-RECENT_FINISHED]} if finished else set()
        records = [r for r in records if r.id not in hidden]
    if args.json:
        reasons = service.queue.reasons(records)
        _json_out(job_list_json(records, service.store.data_version(), reasons))
    elif records:
        reasons = service.queue.reasons(records)
        say(job_table(records, use_colour(sys.stdout), reasons=reasons))
    else:
        say("No jobs." if states is None else "No jobs in that state.")
    return 0


def status(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic status ID``: everything about one job, what it uses included.

    ``--json``: the REST API's JSON of the job, and its ``usage`` as ``GET
    jobs/{id}/usage`` answers it.
    """
    service.reconcile()
    record = find(service, args.job)
    usage = service.get(record.id).usage()  # live while it runs, else what it used
    if args.json:
        data = job_json(record, service.queue.reasons([record]).get(record.id))
        _json_out({**data, "usage": usage_json(usage, running=record.state.is_active)})
    else:
        say(job_details(record, use_colour(sys.stdout), usage=usage))
    return 0


def logs(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic logs ID``: the job's output, byte for byte; ``--follow`` until it ends."""
    record = find(service, args.job)
    out = sys.stdout.buffer
    offset = 0
    try:
        with open(record.log_path, "rb") as log:
            size = log.seek(0, 2)
            offset = _tail_offset(log, size, args.tail) if args.tail is not None else 0
            if not args.follow:
                log.seek(offset)
                while chunk := log.read(1 << 16):
                    out.write(chunk)
                out.flush()
                return 0
    except FileNotFoundError:
        if not args.follow:
            return 0
    final = follow_log(service, record, out, offset)
    return shell_status(final)


def _tail_offset(log: BinaryIO, size: int, lines: int) -> int:
    r"""Where the last ``lines`` lines of the log start (a last line without ``\\n`` counts)."""
    if lines <= 0:
        return size
    position, seen = size, 0
    log.seek(max(0, size - 1))
    ends_with_newline = size > 0 and log.read(1) == b"\n"
    wanted = lines + (1 if ends_with_newline else 0)
    while position > 0:
        start = max(0, position - (1 << 16))
        log.seek(start)
        block = log.read(position - start)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            seen += 1
            if seen == wanted:
                return start + index + 1
        position = start
    return 0


# -- acting --------------------------------------------------------------------------------
def start(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic start -- CMD``: a job no kernel owns, which outlives this command."""
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not words:
        raise UsageError("empty command; write it after --: jobmagic start -- sleep 10")
    env: dict[str, str] = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--env takes KEY=VALUE, not {item!r}")
        env[key] = value
    try:
        after = [int(i) for i in args.after.split(",") if i.strip()] if args.after else []
    except ValueError:
        raise UsageError(f"--after takes job ids such as 3 or 3,4, not {args.after!r}") from None
    resources: dict[str, int] = {}
    for item in args.resource or []:
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise UsageError(f"--resource takes NAME=N, not {item!r}")
        resources[name] = int(count)
    try:
        worker = service.start(
            " ".join(words),
            group=args.group,
            priority=args.priority,
            after=after,
            gpus=args.gpus,
            resources=resources,
            name=args.name,
            cwd=args.cwd,
            env=env,
            timeout=args.timeout,
            pty=args.pty,
            detach=True,  # nobody is left to stop it when this command exits
            memory=args.memory,
            cpus=args.cpus,
            pids=args.pids,
            best_effort=args.best_effort,
            backend=args.on,
            address=args.address,
            ship_cwd=args.ship_cwd,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return _started(service, worker, args.json, "start")


def _started(service: WorkerService, worker: Worker, as_json: bool, verb: str) -> int:
    """Print the new job (its id, or its JSON), then stay while it waits in the queue.

    This command waits in the queue for the job's turn, launches it and leaves it running.
    (If the command dies first, a live kernel's queue pass may take the job, when it needs
    no --env values: see engine/scheduler.py.) 1 when the job could not start.
    """
    if as_json:
        record = find(service, str(worker.id))
        _json_out(job_json(record, service.queue.reasons([record]).get(record.id)))
    else:
        say(str(worker.id))
    if worker.state is JobState.QUEUED:
        _answer_given()
        _wait_until_started(service, worker)
    if worker.state is JobState.FAILED:
        print(f"jobmagic {verb}: {job_label(worker)} {outcome_text(worker)}", file=sys.stderr)
        return 1
    for note in limit_notes(worker, worker.limits, worker.containment):
        print(f"jobmagic {verb}: {note}", file=sys.stderr)  # stdout is the answer
    return 0


def _answer_given() -> None:
    """The answer is out: end stdout for a reader that waits for its end (not a terminal).

    ``jobmagic start`` and ``restart`` stay while their job waits in the queue; what
    reads their answer through a pipe (the server's restart) has it whole at once.
    """
    sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        if not sys.stdout.isatty():
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _wait_until_started(service: WorkerService, worker: Worker) -> None:
    left_queue = threading.Event()
    unsubscribe = service.subscribe(lambda _event: left_queue.set())
    try:
        while worker.state is JobState.QUEUED:
            left_queue.wait()
            left_queue.clear()
    finally:
        unsubscribe()


def stop(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic stop ID...|--all``: SIGTERM, SIGKILL after the timeout; waits for the end."""
    records = _targets(service, args, "stop")
    if not records:
        say("No running jobs to stop.")
        return 0
    workers = [service.get(r.id) for r in records]
    for worker in workers:
        worker.stop(args.timeout, wait=False, by=BY)
    for worker in workers:
        worker.stop(args.timeout, by=BY)  # joins the stop above, waits for the end
        say(f"{job_label(worker)} {outcome_text(worker)}")
    return 0


def wait(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic wait ID...|--all``: 0 when all succeeded, else the first failure's status."""
    records = _targets(service, args, "wait")
    ids = [r.id for r in records]
    final = wait_for_jobs(service, ids, args.timeout)
    if final is None:
        print(f"jobmagic wait: timed out after {args.timeout:g} s", file=sys.stderr)
        return TIMED_OUT
    for job_id in ids:
        code = shell_status(final[job_id])
        if code:
            return code
    return 0


def pause(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic pause ID...|--group G``: SIGSTOP; a paused group starts nothing."""
    return _pause_or_resume(service, args, paused=True)


def resume(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic resume ID...|--group G``: SIGCONT; the group starts jobs again."""
    return _pause_or_resume(service, args, paused=False)


def _pause_or_resume(service: WorkerService, args: argparse.Namespace, *, paused: bool) -> int:
    verb = "pause" if paused else "resume"
    if bool(args.jobs) == (args.group is not None):
        raise UsageError(f"give job ids or --group: jobmagic {verb} 7, jobmagic {verb} --group g")
    act = service.pause if paused else service.resume
    done = "paused" if paused else "resumed"
    if args.group is not None:
        try:
            moved = act(group=args.group)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        which = ", ".join(str(w.id) for w in moved) or "none"
        say(f"group {args.group} {done} (jobs {done}: {which})")
        return 0
    for record in [find(service, job) for job in args.jobs]:
        act(record.id)
        say(f"{job_label(service.get(record.id))} {done}")
    return 0


def restart(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic restart ID``: the ended job again, as a new job no kernel owns."""
    record = find(service, args.job)
    worker = service.restart(record.id, detach=True)  # it outlives this command
    return _started(service, worker, args.json, "restart")


def groups(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic group [NAME] [--parallel N]``: the queue's groups; set one's limit."""
    if args.parallel is not None:
        if args.name is None:
            raise UsageError("which group? jobmagic group gpu --parallel 2")
        try:
            service.set_group(args.name, args.parallel)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    found = [g for g in service.groups() if args.name is None or g.name == args.name]
    if args.json:
        _json_out({"groups": [g._asdict() for g in found]})
        return 0
    say(group_table(found))
    return 0


def remove(service: WorkerService, args: argparse.Namespace) -> int:
    """``jobmagic rm ID...|--finished``: delete finished jobs' records and logs."""
    if args.finished and args.jobs:
        raise UsageError("give job ids or --finished, not both")
    if args.finished:
        count = service.remove_finished()
        say(f"Removed {count} finished job{'s' if count != 1 else ''}.")
        return 0
    if not args.jobs:
        raise UsageError("which jobs? give their ids or names: jobmagic rm 7 8, or --finished")
    records = [find(service, job) for job in args.jobs]
    running = [r for r in records if not r.state.is_finished]
    if running:
        raise UsageError(
            f"{job_label(running[0])} is {running[0].state.value}; stop it first: "
            f"jobmagic stop {running[0].id}"
        )
    for record in records:
        service.remove(record.id)
    return 0


COMMANDS: dict[str, Command] = {
    "list": list_jobs,
    "status": status,
    "logs": logs,
    "start": start,
    "stop": stop,
    "wait": wait,
    "group": groups,
    "pause": pause,
    "resume": resume,
    "restart": restart,
    "rm": remove,
}
