"""The ``%job`` line magic and the ``%%job`` cell magic.

``%load_ext jobmagic`` registers `JobMagics`; ``%unload_ext jobmagic`` stops the jobs the
kernel started (detached ones keep running) and removes the magics again. Every user
mistake becomes a one-line ``UsageError``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from IPython.core import magic_arguments as ipython_magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from traitlets import Float, Int, Unicode, observe
from traitlets.config import Configurable

from jobmagic import terminal_text
from jobmagic.errors import JobmagicError
from jobmagic.listing import (
    JobStatus,
    JobTable,
    outcome_text,
    pretty_worker,
    worker_summary_html,
)
from jobmagic.service import WorkerService, get_service
from jobmagic.worker import Worker

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

#: On a terminal, ``%job logs --follow`` flushes a partial line (a progress bar) at most
#: this often, in seconds. In a kernel it never flushes by itself: ipykernel sends what
#: was written every 0.2 s, and explicit flushes there turn every later write into a
#: message of its own (Jupyter drops iopub traffic above 1,000 messages/s).
FOLLOW_FLUSH_INTERVAL = 0.1

#: ``%job logs`` without ``--tail`` shows at most this much of a log's end: more would
#: exceed what Jupyter lets through iopub (1 MB/s) and no one reads it in a cell anyway.
LOG_DISPLAY_BYTES = 512 * 1024


def _seconds(text: str) -> float:
    """Parse a timeout option: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    """Parse ``--env KEY=VALUE`` (the key must not be empty)."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _lines(text: str) -> int:
    """Parse ``--tail N``: a whole number of lines >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of lines >= 0, got {text!r}")
    return value


# -- the subcommands' parsers: each docstring is that subcommand's help ---------------------
# The functions are never called; ``magic_arguments`` turns their decorators into parsers.
# IPython's decorators are untyped: these annotations let mypy check how we use them.
_Spec = Callable[[], None]
magic_arguments: Callable[..., Callable[[_Spec], _Spec]] = ipython_magic_arguments.magic_arguments
argument: Callable[..., Callable[[_Spec], _Spec]] = ipython_magic_arguments.argument


@magic_arguments(name="job start")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--name", help="An alias for the job id (unique among running jobs).")
@argument("--cwd", metavar="DIR", help="Run in DIR instead of the kernel's directory.")
@argument(
    "--env",
    metavar="KEY=VALUE",
    action="append",
    type=_env_pair,
    default=[],
    help="Add an environment variable; repeat for more.",
)
@argument("--timeout", type=_seconds, metavar="S", help="Stop the job after S seconds.")
@argument("--pty", action="store_true", help="Run under a pseudo-terminal (progress, colours).")
@argument("--detach", action="store_true", help="Keep running when the kernel shuts down.")
@argument("command", nargs="*", help="The shell command (the rest of the line).")
def _start_parser() -> None:
    """Start COMMAND in the background and return its Worker at once.

    The command runs through /bin/sh -c, like !cmd, after IPython expands {expr} and
    $name. Options end at the first word that is not an option; put -- before a
    command that itself starts with a dash. Its stdout and stderr go to the job's log.

    Examples
    --------
    ::

        %job start sleep 10
        j = %job start --name train python train.py --lr {lr}
        %job start --env CUDA_VISIBLE_DEVICES=1 --timeout 3600 ./run.sh
        %job start --pty python -c "from tqdm import trange; [0 for _ in trange(10**7)]"
        %job start -- -weird-command-name
    """


@magic_arguments(name="job list")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--all", action="store_true", help="Every job in the store (all kernels, history).")
def _list_parser() -> None:
    """Show this kernel's jobs as a table.

    Examples
    --------
    ::

        %job list
        %job list --all
    """


@magic_arguments(name="job status")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("job", metavar="ID", nargs="?", help="A job id or name.")
def _status_parser() -> None:
    """Show a job's state, exit code, error, runtime, pid and log path.

    Examples
    --------
    ::

        %job status 3
        %job status train
    """


@magic_arguments(name="job logs")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--tail", type=_lines, metavar="N", help="Only the last N lines.")
@argument("--follow", action="store_true", help="Keep printing new output until the job ends.")
@argument("job", metavar="ID", nargs="?", help="A job id or name.")
def _logs_parser() -> None:
    """Print a job's output, each progress bar collapsed to its latest state.

    With --follow, output keeps streaming into the cell until the job ends; interrupt
    the kernel to stop following (the job keeps running).

    Examples
    --------
    ::

        %job logs 3
        %job logs train --tail 20
        %job logs train --follow
    """


@magic_arguments(name="job stop")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--all", action="store_true", help="Stop every running job of this kernel.")
@argument(
    "--timeout",
    type=_seconds,
    metavar="S",
    help="Seconds between SIGTERM and SIGKILL (default: JobMagics.stop_timeout).",
)
@argument("jobs", metavar="ID", nargs="*", help="Job ids or names.")
def _stop_parser() -> None:
    """Stop jobs: SIGTERM to the whole job, SIGKILL if it is still there after S seconds.

    Examples
    --------
    ::

        %job stop 3
        %job stop train eval --timeout 30
        %job stop --all
    """


@magic_arguments(name="job wait")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--all", action="store_true", help="Wait for every job of this kernel.")
@argument("--timeout", type=_seconds, metavar="S", help="Give up after S seconds.")
@argument("jobs", metavar="ID", nargs="*", help="Job ids or names.")
def _wait_parser() -> None:
    """Block until jobs end and report their exit codes. Interrupt the kernel to stop waiting.

    Examples
    --------
    ::

        %job wait 3
        %job wait train eval
        %job wait --all --timeout 600
    """


@magic_arguments(name="job panel")
@argument("-h", "--help", action="store_true", help="Show this help.")
def _panel_parser() -> None:
    """Show a live control panel: one row per job, with Stop buttons and output.

    Examples
    --------
    ::

        %job panel
    """


@magic_arguments(name="job rm")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--finished", action="store_true", help="Remove every finished job (all kernels').")
@argument("jobs", metavar="ID", nargs="*", help="Finished job ids or names.")
def _rm_parser() -> None:
    """Delete finished jobs' records and logs.

    Examples
    --------
    ::

        %job rm 3
        %job rm --finished
    """


@magic_arguments(name="job adopt")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("job", metavar="ID", nargs="?", help="A job id or name.")
def _adopt_parser() -> None:
    """Take over a running job whose kernel died, to follow, wait for and stop it here.

    Examples
    --------
    ::

        %job list --all
        %job adopt 7
    """


_PARSERS: dict[str, Any] = {
    "start": _start_parser,
    "list": _list_parser,
    "status": _status_parser,
    "logs": _logs_parser,
    "stop": _stop_parser,
    "wait": _wait_parser,
    "panel": _panel_parser,
    "rm": _rm_parser,
    "adopt": _adopt_parser,
}
SUBCOMMANDS = tuple(_PARSERS)


def _parser(subcommand: str) -> MagicArgumentParser:
    parser: MagicArgumentParser = _PARSERS[subcommand].parser
    return parser


def _help(subcommand: str) -> str:
    return str(_PARSERS[subcommand].__doc__)


# -- splitting ``%job start``'s line into options and the command ----------------------------


def _next_word(line: str, pos: int) -> tuple[str, int]:
    """Return the shell word at ``pos`` (quotes removed) and the index just after it."""
    stream = io.StringIO(line[pos:])
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        word = lexer.get_token()
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"{exc} in {line[pos:]!r}") from None
    # shlex reads one character at a time: the stream stops just past the word's end.
    return word or "", pos + stream.tell()


def split_start_line(line: str, parser: MagicArgumentParser) -> tuple[list[str], str]:
    """Split ``%job start``'s line into option words and the command text.

    Options end at the first word that does not start with a dash, or after ``--``; the
    command is the rest of the line as written (quotes, pipes and redirections intact).
    """
    options: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if pos >= len(line):
            return options, ""
        if not line.startswith("-", pos) or line[pos : pos + 2].rstrip() == "-":
            return options, line[pos:].strip()
        word, pos = _next_word(line, pos)
        if word == "--":
            return options, line[pos:].strip()
        flag = word.partition("=")[0]
        # argparse has no public way to ask which options take a value.
        action = parser._option_string_actions.get(flag)  # noqa: SLF001
        if action is None:
            raise UsageError(
                f"unknown option {flag}; put -- before a command that starts with a dash"
            )
        options.append(word)
        if action.nargs != 0 and "=" not in word:
            while pos < len(line) and line[pos].isspace():
                pos += 1
            if pos < len(line):
                value, pos = _next_word(line, pos)
                options.append(value)


# -- following a log -------------------------------------------------------------------------


class LivePrinter:
    r"""Writes a job's output to a text stream as it arrives, as a terminal would show it.

    Carriage-return overwrites within what arrives are collapsed, so a progress bar costs
    one line update per chunk instead of every intermediate state; the line still being
    written is rewritten with a leading ``\r``, which Jupyter and terminals both render
    as "replace this line".

    Parameters
    ----------
    out : text stream
        Where to write (``sys.stdout`` in a cell).
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._decoder = terminal_text.incremental_decoder()
        self._current = ""  # the unfinished line, overwrites collapsed
        self._shown = ""  # what of it is on screen
        self._pending_cr = False  # a chunk ended in "\r": maybe half of "\r\n"
        self._flushed_at = 0.0  # time.monotonic() of the last flush
        try:
            self._terminal = out.isatty()
        except ValueError:  # a closed stream
            self._terminal = False

    def show(self, text: str) -> None:
        """Print display text (already decoded and collapsed); live output continues it."""
        if text:
            self._out.write(text)
            self._out.flush()
            self._current = self._shown = text.rpartition("\n")[2]

    def finish(self) -> None:
        """Print what a split character or an unfinished line held back, then end the line."""
        self.feed(b"", final=True)

    def feed(self, data: bytes, final: bool = False) -> None:
        """Print the text of ``data``; ``final`` flushes a split character and the last line."""
        text = self._decoder.decode(data, final=final)
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r") and not final:
            text = text[:-1]
            self._pending_cr = True
        pieces = text.replace("\r\n", "\n").split("\n")
        out: list[str] = []
        for finished in pieces[:-1]:
            out.append(self._update(terminal_text.collapse_line(self._current + finished)))
            out.append("\n")
            self._current = self._shown = ""
        self._current = terminal_text.collapse_line(self._current + pieces[-1])
        out.append(self._update(self._current))
        if final and self._shown:
            out.append("\n")
            self._current = self._shown = ""
        if any(out):
            self._out.write("".join(out))
        now = time.monotonic()
        if final or (self._terminal and now - self._flushed_at >= FOLLOW_FLUSH_INTERVAL):
            self._out.flush()
            self._flushed_at = now

    def _update(self, line: str) -> str:
        """Return the text that turns what is shown of the current line into ``line``."""
        shown, self._shown = self._shown, line
        if line.startswith(shown):
            return line[len(shown) :]
        return "\r" + line


def _log_snapshot(worker: Worker, tail: int | None) -> tuple[str, int]:
    """Read the end of a job's log as display text, and the byte offset it reaches."""
    try:
        with worker.log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            start = max(0, size - LOG_DISPLAY_BYTES)
            log.seek(start)
            data = log.read(size - start)
    except FileNotFoundError:
        return "", 0
    text = terminal_text.collapse_carriage_returns(terminal_text.decode(data))
    if start > 0:
        # The first line was cut: drop it, and say where the rest is.
        text = text.partition("\n")[2]
        if tail is None:
            text = (
                f"[showing the last {LOG_DISPLAY_BYTES // 1024} KiB of {size} bytes; "
                f"the whole log is {worker.log_path}]\n" + text
            )
    if tail is not None:
        text = terminal_text.tail_lines(text, tail)
    return text, size


def _stream_from(worker: Worker, offset: int) -> Generator[bytes, None, None]:
    """Yield the job's output from byte ``offset`` on, live until the job ends."""
    skip = offset
    for chunk in worker.stream():
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk[skip:]
        skip = 0


# -- the magics ------------------------------------------------------------------------------


@magics_class
class JobMagics(Magics, Configurable):
    """The ``%job`` and ``%%job`` magics, configurable as ``c.JobMagics.<trait>``."""

    stop_timeout = Float(
        5.0,
        min=0.0,
        help="Seconds a stopped job gets between SIGTERM and SIGKILL.",
    ).tag(config=True)
    keep_finished = Int(
        1000,
        min=0,
        help="Retention: how many finished jobs the store keeps (oldest are removed first).",
    ).tag(config=True)
    max_log_bytes = Int(
        5 << 30,
        min=0,
        help="Retention: how many bytes of finished jobs' logs the store keeps.",
    ).tag(config=True)
    panel_tail_lines = Int(
        200,
        min=1,
        help="Lines of a job's output that %job panel shows.",
    ).tag(config=True)
    command_shell = Unicode(
        "/bin/sh",
        help="The shell that runs %job start commands (%%job cells always run in bash).",
    ).tag(config=True)

    #: The service this object configured last (None until a magic first needs one).
    _service: WorkerService | None = None

    # -- the service ------------------------------------------------------------------
    def service(self) -> WorkerService:
        """Return the kernel's `WorkerService`, with this object's configuration applied."""
        service = get_service()
        if service is not self._service:
            service.stop_timeout = self.stop_timeout
            service.keep_finished = self.keep_finished
            service.max_log_bytes = self.max_log_bytes
            self._service = service
        return service

    @observe("stop_timeout", "keep_finished", "max_log_bytes")
    def _push_config(self, change: dict[str, Any]) -> None:
        if self._service is not None:
            setattr(self._service, change["name"], change["new"])

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

          %job start [--name N] [--cwd DIR] [--env K=V ...] [--timeout S] [--pty] [--detach] COMMAND
          %job list [--all]
          %job status ID
          %job logs ID [--tail N] [--follow]
          %job stop ID... | --all [--timeout S]
          %job wait ID... | --all [--timeout S]
          %job panel
          %job rm ID... | --finished
          %job adopt ID

          %%job [--name N] [--cwd DIR] [--env K=V ...] [--timeout S] [--pty] [--detach]
          <bash script>

        ``%job start`` runs COMMAND through /bin/sh -c, like ``!cmd``, after IPython
        expands ``{expr}`` and ``$name``; options end at the first word that is not an
        option (``--`` is only needed when the command starts with a dash). It returns the
        job's Worker: ``j = %job start ...``, then ``j.wait()``, ``j.tail()``, ``await j``.
        ``%%job`` runs the cell body as a bash script (no {} or $ expansion in the body).
        An ID is a job's number or its ``--name``. ``%job SUBCOMMAND --help`` shows
        the options of one subcommand.

        Examples
        --------
        ::

          %load_ext jobmagic
          j = %job start --name train python train.py --lr {lr}
          %job list
          %job logs train --tail 20
          %job logs train --follow
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
        if subcommand not in _PARSERS:
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
        words, command = split_start_line(rest, _parser("start"))
        args = _parser("start").parse_args(words)
        if args.help:
            _say(_help("start"))
            return None
        if not command:
            raise UsageError("empty command; write it after the options: %job start sleep 10")
        return self._launch(command, args, shell=self.command_shell)

    def _start_cell(self, line: str, cell: str) -> Worker | None:
        try:
            return self._start_cell_options(line, cell)
        except UsageError as exc:
            raise UsageError(f"%%job: {exc}") from None

    def _start_cell_options(self, line: str, cell: str) -> Worker | None:
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
        return self._launch(cell, args, shell="/bin/bash")

    def _launch(self, command: str, args: argparse.Namespace, shell: str) -> Worker:
        cwd = None
        if args.cwd is not None:
            directory = Path(args.cwd).expanduser().absolute()
            if not directory.is_dir():
                raise UsageError(f"--cwd: no such directory: {args.cwd}")
            cwd = str(directory)
        try:
            return self.service().start(
                command,
                name=args.name,
                cwd=cwd,
                env=dict(args.env),
                timeout=args.timeout,
                pty=args.pty,
                detach=args.detach,
                shell=shell,
            )
        except (JobmagicError, ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None

    # -- looking at jobs --------------------------------------------------------------
    def _list(self, rest: str) -> JobTable | None:
        args = self._parse("list", rest)
        if args is None:
            return None
        return JobTable(self.service().list(all=args.all), everything=args.all)

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
            sys.stdout.write(_log_snapshot(worker, args.tail)[0])
            sys.stdout.flush()
            return
        printer = LivePrinter(sys.stdout)
        try:
            text, offset = _log_snapshot(worker, args.tail)
            printer.show(text)
            chunks = _stream_from(worker, offset)
            with contextlib.closing(chunks):
                for chunk in chunks:
                    printer.feed(chunk)
        except KeyboardInterrupt:
            # Interrupting the kernel is how one stops following; the job is not touched.
            printer.finish()
            _say(f"[stopped following job {worker.id}; it is still {worker.state.value}]")
            return
        except JobmagicError as exc:
            printer.finish()
            raise UsageError(str(exc)) from None
        printer.finish()

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
                _say(f"{_name(worker)} had already ended: {outcome_text(worker)}")
                continue
            worker.stop(args.timeout, wait=False)
            stopping.append(worker)
        for worker in stopping:
            if worker.owned:
                worker.wait()
                _say(f"{_name(worker)} {outcome_text(worker)}")
            else:
                _say(f"{_name(worker)} belongs to another kernel; asked it to stop (SIGTERM)")

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
        for worker in workers:
            if worker.state.is_finished:
                _say(f"{_name(worker)} {outcome_text(worker)}")
            else:
                waited = f" (waited {args.timeout:g} s)" if args.timeout is not None else ""
                _say(f"{_name(worker)} is still {worker.state.value}{waited}")

    def _panel(self, rest: str) -> Any:
        if self._parse("panel", rest) is None:
            return None
        service = self.service()
        try:
            return service.panel(tail_lines=self.panel_tail_lines)
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
        if args.finished:
            count = service.remove_finished()
            _say(f"Removed {count} finished job{'' if count == 1 else 's'}.")
            return
        if not args.jobs:
            raise UsageError("which jobs? give job ids or names, or --finished")
        workers = [self._find(i) for i in args.jobs]
        for worker in workers:
            try:
                service.remove(worker.id or 0)
            except JobmagicError as exc:
                raise UsageError(str(exc)) from None
            _say(f"Removed {_name(worker)}.")

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


def _name(worker: Worker) -> str:
    return f'job {worker.id} "{worker.name}"' if worker.name else f"job {worker.id}"


# -- the extension hooks ----------------------------------------------------------------------

_FORMATS = ("text/plain", "text/html")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics and how a `Worker` displays; ``%load_ext jobmagic`` calls this."""
    magics = JobMagics(shell=ipython)
    ipython.register_magics(magics)
    if ipython.display_formatter is not None:
        formatters = ipython.display_formatter.formatters
        formatters["text/plain"].for_type(Worker, pretty_worker)
        formatters["text/html"].for_type(Worker, worker_summary_html)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Stop the kernel's non-detached jobs and remove the magics (``%unload_ext jobmagic``)."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(JobMagics.__name__, None)
    for kind in ("line", "cell"):
        manager.magics[kind].pop("job", None)
    if ipython.display_formatter is not None:
        for mime in _FORMATS:
            ipython.display_formatter.formatters[mime].pop(Worker, None)
    if isinstance(magics, JobMagics):
        with contextlib.suppress(ValueError):
            # IPython annotates `configurables` as a list of shells; it holds Configurables.
            ipython.configurables.remove(magics)  # type: ignore[arg-type]
        magics.stop_owned_jobs()
