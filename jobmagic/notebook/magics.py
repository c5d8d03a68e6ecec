"""The ``%job`` line magic and the ``%%job`` cell magic.

``%load_ext jobmagic`` registers `JobMagics`; ``%unload_ext jobmagic`` stops the jobs the
kernel started (detached ones keep running) and removes the magics again. Every user
mistake becomes a one-line ``UsageError``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from jobmagic.core.state import JobState
from jobmagic.engine.worker import Worker
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import job_label, outcome_text

from . import queue_commands, start_commands
from .arguments import SUBCOMMANDS, _help, _parser, plain_text
from .backend_options import BackendDefaults
from .follow import follow, log_snapshot
from .kernel_settings import KernelSettings
from .limit_options import LimitDefaults
from .reprs import JobStatus, JobTable

# -- the magics ------------------------------------------------------------------------------


@magics_class
class JobMagics(Magics, KernelSettings, LimitDefaults, BackendDefaults):
    """The ``%job`` and ``%%job`` magics, configurable as ``c.JobMagics.<trait>``.

    The traits are its bases': the service's settings and the panel's are
    `KernelSettings`' (``stop_timeout``, ...), the default limits of a start
    `LimitDefaults`' (``memory_limit``, ...), its default backend `BackendDefaults'`
    (``backend``, ``ray_address``).
    """

    #: The hints already given in this kernel (each is said once).
    _hinted: set[str]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hinted = set()

    # -- finding jobs ----------------------------------------------------------------
    def _find(self, id_or_name: str) -> Worker:
        try:
            return self.service().get(id_or_name)
        except JobmagicError as exc:
            raise UsageError(str(exc)) from None

    def _find_all(self, ids: list[str], everything: bool, verb: str) -> list[Worker]:
        """Resolve ids or names, or with ``everything`` take all of this kernel's jobs."""
        if everything and ids:
            raise UsageError("give job ids or --all, not both")
        if everything:
            return self.service().list()
        if not ids:
            raise UsageError(f"which jobs? give job ids or names, or --all to {verb} all")
        return [self._find(i) for i in ids]

    # -- the magic itself ---------------------------------------------------------------
    @line_cell_magic
    def job(self, line: str, cell: str | None = None) -> Any:
        """Run shell commands as background jobs, and watch and control them.

        ::

          %job start [--name N] [--cwd DIR] [--env K=V ...] [--timeout S] [--pty] [--detach]
                     [--memory SIZE] [--cpus N] [--pids N] [--best-effort]
                     [--on BACKEND] [--address URL] [--ship-cwd] COMMAND
          %job list [--all]
          %job status ID
          %job logs ID [--tail N] [--follow]
          %job stop ID... | --all [--timeout S]
          %job wait ID... | --all [--timeout S]
          %job panel
          %job rm ID... | --finished [--all-kernels]
          %job adopt ID
          %job group [NAME --parallel N]
          %job queue
          %job restart ID... | --failed [--group G]
          %job pause ID... | --group G
          %job resume ID... | --group G

          %%job [--name N] [--cwd DIR] [--env K=V ...] [--timeout S] [--pty] [--detach]
                [--memory SIZE] [--cpus N] [--pids N] [--best-effort]
                [--on BACKEND] [--address URL] [--ship-cwd]
          <bash script>

        ``%job start`` runs COMMAND through /bin/sh -c, like ``!cmd``, after IPython
        expands ``{expr}`` and ``$name``; options end at the first word that is not an
        option (``--`` is only needed when the command starts with a dash). It returns the
        job's Worker: ``j = %job start ...``, then ``j.wait()``, ``j.tail()``, ``await j``.
        ``%%job`` runs the cell body as a bash script (no {} or $ expansion in the body).
        ``--memory``, ``--cpus`` and ``--pids`` limit the whole job (defaults:
        ``c.JobMagics.memory_limit``, ``cpu_limit``, ``pids_limit``); ``%job status``
        shows them and what the job uses. ``--on ray`` runs it on a Ray cluster (default:
        ``c.JobMagics.backend``). An ID is a job's number or its ``--name``.
        ``%job SUBCOMMAND --help`` shows the options of one subcommand.

        Examples
        --------
        ::

          %load_ext jobmagic
          j = %job start --name train python train.py --lr {lr}
          %job list
          %job logs train --tail 20
          %job logs train --follow
          %job start --memory 4G --cpus 2 python eval.py
          %job start --on ray --gpus 1 python train.py
          %job status train
          %job wait train
          %job stop --all

          %%job --name prep --cwd data
          for f in *.csv; do gzip -k "$f"; done
        """
        if cell is not None:
            return self._start_cell(line, cell)
        subcommand, _, rest = line.strip().partition(" ")
        if not subcommand:
            raise UsageError(f"%job needs a subcommand: {', '.join(SUBCOMMANDS)} (see %job?)")
        if subcommand not in SUBCOMMANDS:
            close = difflib.get_close_matches(subcommand, SUBCOMMANDS, n=2)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UsageError(
                f"unknown subcommand {subcommand!r}; {hint}use one of: {', '.join(SUBCOMMANDS)}"
            )
        handler: Callable[[str], Any] = getattr(self, f"_{subcommand}")
        try:
            return handler(rest)
        except UsageError as exc:
            raise UsageError(f"%job {subcommand}: {exc}") from None

    def _parse(self, subcommand: str, rest: str) -> argparse.Namespace | None:
        """Parse a subcommand's arguments; None when it printed the help instead."""
        try:
            args = _parser(subcommand).parse_args(shlex.split(rest))
        except ValueError as exc:  # unbalanced quotes
            raise UsageError(str(exc)) from None
        if args.help:
            _say(_help(subcommand))
            return None
        return args

    # -- start ------------------------------------------------------------------------
    def _start(self, rest: str) -> Worker | None:
        return start_commands.start_line(
            self.service,
            rest,
            self.command_shell,
            self._hinted,
            limits=self.limit_defaults(),
            backend=self.backend_defaults(),
        )

    def _start_cell(self, line: str, cell: str) -> Worker | None:
        try:
            return start_commands.start_cell(
                self.service,
                line,
                cell,
                limits=self.limit_defaults(),
                backend=self.backend_defaults(),
            )
        except UsageError as exc:
            raise UsageError(f"%%job: {exc}") from None

    # -- looking at jobs --------------------------------------------------------------
    def _list(self, rest: str) -> JobTable | None:
        args = self._parse("list", rest)
        if args is None:
            return None
        service = self.service()
        orphans, reasons = 0, None
        with contextlib.suppress(JobmagicError):
            active = service.store.list(states=[JobState.QUEUED, JobState.RUNNING, JobState.PAUSED])
            if not args.all:
                orphans = sum(1 for r in active if r.orphaned)
            reasons = service.queue.reasons(active)  # one read of the queue for every row
        workers = service.list(all=args.all)
        return JobTable(workers, everything=args.all, orphans=orphans, reasons=reasons)

    def _required_job(self, args: argparse.Namespace, subcommand: str) -> Worker:
        if not args.job:
            raise UsageError(f"which job? give its id or name: %job {subcommand} 3")
        return self._find(args.job)

    def _status(self, rest: str) -> JobStatus | None:
        args = self._parse("status", rest)
        if args is None:
            return None
        return JobStatus(self._required_job(args, "status"))

    def _logs(self, rest: str) -> None:
        args = self._parse("logs", rest)
        if args is None:
            return
        worker = self._required_job(args, "logs")
        if not args.follow:
            sys.stdout.write(log_snapshot(worker, args.tail)[0])
            sys.stdout.flush()
            return
        try:
            follow(worker, args.tail, sys.stdout)
        except JobmagicError as exc:
            raise UsageError(str(exc)) from None

    # -- controlling jobs ---------------------------------------------------------------
    def _stop(self, rest: str) -> None:
        args = self._parse("stop", rest)
        if args is None:
            return
        workers = self._find_all(args.jobs, args.all, "stop")
        if args.all:
            # --all means the running ones; say nothing about jobs that ended long ago.
            workers = [w for w in workers if not w.state.is_finished]
            if not workers:
                _say("No running jobs to stop.")
                return
        stopping = []
        for worker in workers:
            if worker.state.is_finished:
                _say(f"{job_label(worker)} had already ended: {outcome_text(worker)}")
                continue
            worker.stop(args.timeout, wait=False)
            stopping.append(worker)
        for worker in stopping:
            if worker.owned:
                worker.wait()
                _say(f"{job_label(worker)} {outcome_text(worker)}")
                continue
            orphaned = worker.orphaned
            worker.stop(args.timeout)  # joins the stop above and waits for its end
            if orphaned:
                whose = "was started by a kernel that is gone"
            else:
                whose = "belongs to another kernel"
            _say(f"{job_label(worker)} {whose}; stopped it: {outcome_text(worker)}")

    def _wait(self, rest: str) -> None:
        args = self._parse("wait", rest)
        if args is None:
            return
        workers = self._find_all(args.jobs, args.all, "wait for")
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        try:
            for worker in workers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                worker.wait(left)
        except JobmagicError as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:  # the kernel's interrupt: stop waiting, not the jobs
            going = ", ".join(str(w.id) for w in workers if not w.state.is_finished)
            if going:
                _say(f"[stopped waiting; the jobs keep running: {going}]")
            return
        for worker in workers:
            if worker.state.is_finished:
                _say(f"{job_label(worker)} {outcome_text(worker)}")
            else:
                waited = f" (waited {args.timeout:g} s)" if args.timeout is not None else ""
                _say(f"{job_label(worker)} is still {worker.state.value}{waited}")

    def _panel(self, rest: str) -> Any:
        if self._parse("panel", rest) is None:
            return None
        if _in_a_terminal(self.shell):
            _say(
                "The panel needs a notebook frontend (JupyterLab, Notebook, VS Code); "
                "here is %job list:"
            )
            return JobTable(self.service().list())
        try:
            from .panel import JobPanel

            return JobPanel(service=self.service(), tail_lines=self.panel_tail_lines)
        except ImportError as exc:
            message = f"the panel needs ipywidgets ({exc}); pip install ipywidgets"
            raise UsageError(message) from None

    def _rm(self, rest: str) -> None:
        args = self._parse("rm", rest)
        if args is None:
            return
        service = self.service()
        if args.finished and args.jobs:
            raise UsageError("give job ids or --finished, not both")
        if args.all_kernels and not args.finished:
            raise UsageError("--all-kernels goes with --finished: %job rm --finished --all-kernels")
        if args.finished:
            _say(queue_commands.remove_finished(service, everyone=args.all_kernels))
            return
        if not args.jobs:
            raise UsageError("which jobs? give job ids or names, or --finished")
        workers = [self._find(i) for i in args.jobs]
        for worker in workers:
            try:
                service.remove(worker.id or 0)
            except JobmagicError as exc:
                raise UsageError(str(exc)) from None
            _say(f"Removed {job_label(worker)}.")

    def _group(self, rest: str) -> None:
        args = self._parse("group", rest)
        if args is not None:
            _say(queue_commands.group(self.service(), args.group, args.parallel))

    def _restart(self, rest: str) -> list[Worker] | Worker | None:
        args = self._parse("restart", rest)
        if args is None:
            return None
        return queue_commands.restart(self.service(), args.jobs, args.failed, args.group)

    def _pause(self, rest: str) -> None:
        args = self._parse("pause", rest)
        if args is not None:
            _say(queue_commands.pause(self.service(), args.jobs, args.group, paused=True))

    def _resume(self, rest: str) -> None:
        args = self._parse("resume", rest)
        if args is not None:
            _say(queue_commands.pause(self.service(), args.jobs, args.group, paused=False))

    def _queue(self, rest: str) -> None:
        if self._parse("queue", rest) is not None:
            _say(queue_commands.queue(self.service()))

    def _adopt(self, rest: str) -> Worker | None:
        args = self._parse("adopt", rest)
        if args is None:
            return None
        if not args.job:
            raise UsageError("which job? give its id: %job adopt 7")
        try:
            return self.service().adopt(args.job)
        except JobmagicError as exc:
            raise UsageError(str(exc)) from None

    # -- unloading ----------------------------------------------------------------------
    def stop_owned_jobs(self) -> None:
        """Stop this kernel's running jobs, except detached ones, and wait for them."""
        if self._service is not None:
            self._service.stop_all(include_detached=False)


def _say(text: str) -> None:
    """Show a line in the cell's output (stdout, like IPython's own magics)."""
    sys.stdout.write(text + "\n")


# `%job?` shows this docstring as it is: say it in plain text, not reST.
JobMagics.job.__doc__ = plain_text(JobMagics.job.__doc__ or "")


def _in_a_terminal(shell: Any) -> bool:
    """True in terminal IPython, where widgets print as their repr and show nothing."""
    try:
        from IPython.terminal.interactiveshell import TerminalInteractiveShell
    except ImportError:  # pragma: no cover - IPython always has it
        return False
    return isinstance(shell, TerminalInteractiveShell)
