"""``%job start`` and ``%%job``: from a magic's line (and cell) to a started job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from IPython.core.error import UsageError

from jobmagic.core.limits import Limits
from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import limit_notes

from . import hints
from .arguments import _help, _parser, split_start_line
from .backend_options import DefaultBackend, chosen_backend
from .limit_options import chosen_limits


def start_line(
    service: Callable[[], WorkerService],
    rest: str,
    shell: str,
    hinted: set[str],
    *,
    limits: Limits | None = None,
    backend: DefaultBackend | None = None,
) -> Worker | None:
    """``%job start [OPTIONS] COMMAND``; None when it printed the help.

    ``hinted``: the hints already said in this kernel (each is said once). ``limits``:
    the defaults of the options that set limits (None: no limit). ``backend``: what
    runs it without ``--on`` (None: a local process).
    """
    words, command = split_start_line(rest, _parser("start"))
    args = _parser("start").parse_args(words)
    if args.help:
        _say(_help("start"))
        return None
    if not command:
        raise UsageError("empty command; write it after the options: %job start sleep 10")
    env = dict(args.env or [])
    hint = hints.interpreter_hint(command, env.get("PATH"))
    if hint is not None and hint not in hinted:
        hinted.add(hint)  # once per kernel: a sweep of 20 says it once
        _say(hint)
    return launch(service(), command, args, shell=shell, limits=limits, backend=backend)


def start_cell(
    service: Callable[[], WorkerService],
    line: str,
    cell: str,
    *,
    limits: Limits | None = None,
    backend: DefaultBackend | None = None,
) -> Worker | None:
    """``%%job [OPTIONS]`` with the cell body as a bash script; None after the help.

    ``limits``: the defaults of the options that set limits (None: no limit).
    ``backend``: what runs it without ``--on`` (None: a local process).
    """
    words, command = split_start_line(line, _parser("start"))
    if command.startswith("start ") or command == "start":
        # `%%job start --name x` reads naturally; allow it.
        words2, command = split_start_line(command[len("start") :], _parser("start"))
        words += words2
    args = _parser("start").parse_args(words)
    if args.help:
        _say(_help("start"))
        return None
    if command:
        raise UsageError(
            f"only options go on the %%job line, found {command!r}; the cell body is the script"
        )
    if not cell.strip():
        raise UsageError("empty cell; write the bash script in the cell body")
    return launch(service(), cell, args, shell="/bin/bash", limits=limits, backend=backend)


def launch(
    service: WorkerService,
    command: str,
    args: argparse.Namespace,
    shell: str,
    *,
    limits: Limits | None = None,
    backend: DefaultBackend | None = None,
) -> Worker:
    """Start ``command`` with the parsed start options; a mistake is a ``UsageError``.

    ``limits``: the defaults of ``--memory``, ``--cpus`` and ``--pids``; ``backend``:
    those of ``--on`` and ``--address`` (None: a local process). What the job should
    know of its limits (``describe.limit_notes``) is printed.
    """
    cwd = None
    if args.cwd is not None:
        directory = Path(args.cwd).expanduser().absolute()
        if not directory.is_dir():
            raise UsageError(f"--cwd: no such directory: {args.cwd}")
        cwd = str(directory)
    try:
        worker = service.start(
            command,
            name=args.name,
            cwd=cwd,
            env=dict(args.env),
            timeout=args.timeout,
            pty=args.pty,
            detach=args.detach,
            shell=shell,
            group=args.group,
            priority=args.priority,
            after=args.after,
            gpus=args.gpus,
            resources=dict(args.resource),
            **chosen_limits(args, limits or Limits()),
            **chosen_backend(args, backend or DefaultBackend()),
        )
    except (JobmagicError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    for note in limit_notes(worker, worker.limits, worker.containment):
        _say(note)
    return worker


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
