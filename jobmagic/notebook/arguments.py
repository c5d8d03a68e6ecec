"""How ``%job`` reads its arguments: one ``magic_arguments`` parser per subcommand.

Each subcommand's parser carries its ``--help`` text (the spec function's docstring).
`split_start_line` separates ``%job start``'s options from the command that follows them,
so the command keeps its quotes, pipes and redirections.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from .backend_options import backend_arguments
from .limit_options import limit_arguments
from .queue_arguments import QUEUE_PARSERS, argument, magic_arguments
from .queue_arguments import count as _count


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


def _job_ids(text: str) -> list[int]:
    """Parse ``--after 3,4``: job ids, comma-separated."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ids = []
    if not ids or any(i <= 0 for i in ids):
        raise argparse.ArgumentTypeError(f"expected job ids such as 3 or 3,4, got {text!r}")
    return ids


def _resource(text: str) -> tuple[str, int]:
    """Parse ``--resource license=1`` (``NAME`` alone means 1)."""
    name, _, count = text.partition("=")
    try:
        value = int(count) if count else 1
    except ValueError:
        value = 0
    if not name or value < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=N with N >= 1, got {text!r}")
    return name, value


def _integer(text: str) -> int:
    """Parse ``--priority N``: any whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


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
# (``argument`` and ``magic_arguments``: IPython's, typed, from queue_arguments.)


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
@argument("--group", default="default", help="The queue group to run in (see %%job group).")
@argument("--priority", type=_integer, default=0, help="Higher starts first in its group.")
@argument(
    "--after",
    type=_job_ids,
    metavar="ID[,ID...]",
    default=[],
    help="Start when these jobs have succeeded (never, if one fails).",
)
@argument("--gpus", type=_count, default=0, metavar="N", help="Take N devices from the GPU pool.")
@argument(
    "--resource",
    metavar="NAME=N",
    action="append",
    type=_resource,
    default=[],
    help="Take N units of a named pool (c.JobMagics.resources); repeat for more.",
)
@limit_arguments
@backend_arguments
@argument("command", nargs="*", help="The shell command (the rest of the line).")
def _start_parser() -> None:
    """Start COMMAND in the background and return its Worker at once.

    The command runs through /bin/sh -c, like !cmd, after IPython expands {expr} and
    $name. Options end at the first word that is not an option; put -- before a
    command that itself starts with a dash. Its stdout and stderr go to the job's log.

    --memory, --cpus and --pids hold the whole job (every process it starts) in a
    cgroup; a machine that cannot enforce one refuses the start unless --best-effort.
    %job status shows the limits and what the job uses.

    --on ray submits it to a Ray cluster instead: --gpus, --cpus and --memory are then
    what Ray reserves for it, and its output still comes to its log here.

    Examples
    --------
    ::

        %job start sleep 10
        j = %job start --name train python train.py --lr {lr}
        %job start --env CUDA_VISIBLE_DEVICES=1 --timeout 3600 ./run.sh
        %job start --pty python -c "from tqdm import trange; [0 for _ in trange(10**7)]"
        %job start -- -weird-command-name
        %job start --group gpu --priority 5 python sweep.py --lr {lr}
        %job start --after 3,4 python report.py
        %job start --gpus 1 --resource license=1 python train.py
        %job start --memory 4G --cpus 2 --pids 500 python train.py
        %job start --memory 4G --best-effort python train.py
        %job start --on ray --gpus 1 --cpus 2 --memory 4G python train.py
        %job start --on ray --address http://head:8265 --ship-cwd python train.py
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
@argument("--finished", action="store_true", help="Remove this kernel's finished jobs.")
@argument("--all-kernels", action="store_true", help="With --finished: every kernel's.")
@argument("jobs", metavar="ID", nargs="*", help="Finished job ids or names.")
def _rm_parser() -> None:
    """Delete finished jobs' records and logs.

    Examples
    --------
    ::

        %job rm 3
        %job rm --finished
        %job rm --finished --all-kernels
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
    **QUEUE_PARSERS,
}
SUBCOMMANDS = tuple(_PARSERS)


def _parser(subcommand: str) -> MagicArgumentParser:
    parser: MagicArgumentParser = _PARSERS[subcommand].parser
    return parser


def _help(subcommand: str) -> str:
    return plain_text(str(_PARSERS[subcommand].__doc__))


def plain_text(doc: str) -> str:
    """A reST docstring as a person reads it in a notebook or a terminal.

    The literal-block markers (``::``) and inline-literal quotes go; the text and the
    indented examples stay as they are.
    """
    lines = []
    for line in doc.splitlines():
        if line.strip() == "::":
            continue
        end = line.rstrip()
        shown = line
        if end.endswith(" ::"):
            shown = end[:-3] + ":"
        elif end.endswith("::"):
            shown = end[:-1]
        lines.append(shown.replace("``", ""))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


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
