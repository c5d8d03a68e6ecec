"""The parsers of the queue's subcommands: ``group``, ``queue``, ``restart``, ``pause``.

(And ``resume``; ``arguments.py`` holds the other subcommands' parsers.)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from IPython.core import magic_arguments as ipython_magic_arguments

# The functions are never called; ``magic_arguments`` turns their decorators into parsers.
# IPython's decorators are untyped: these annotations let mypy check how we use them.
_Spec = Callable[[], None]
magic_arguments: Callable[..., Callable[[_Spec], _Spec]] = ipython_magic_arguments.magic_arguments
argument: Callable[..., Callable[[_Spec], _Spec]] = ipython_magic_arguments.argument


def count(text: str) -> int:
    """Parse ``--parallel N``, ``--gpus N``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


@magic_arguments(name="job group")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--parallel", type=count, metavar="N", help="Run at most N of its jobs at once (0: any).")
@argument("group", metavar="NAME", nargs="?", help="A group's name.")
def _group_parser() -> None:
    """Show the queue groups, or set how many jobs of one group may run at once.

    The limit is shared by every kernel (it lives in the job store). Jobs that cannot
    start yet stay queued and start by themselves when a slot frees.

    Examples
    --------
    ::

        %job group
        %job group gpu --parallel 2
    """


@magic_arguments(name="job restart")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--failed", action="store_true", help="Every failed job not restarted before.")
@argument("--group", help="With --failed: only the jobs of this group.")
@argument("jobs", metavar="ID", nargs="*", help="Ended job ids or names.")
def _restart_parser() -> None:
    """Start ended jobs again, as new jobs with the same command, options and cwd.

    Environment variables given with --env are read from this kernel's environment now.

    Examples
    --------
    ::

        %job restart 7
        %job restart --failed --group sweep
    """


@magic_arguments(name="job queue")
@argument("-h", "--help", action="store_true", help="Show this help.")
def _queue_parser() -> None:
    """Show every kernel's queued jobs in the order they will start, and why they wait.

    Examples
    --------
    ::

        %job queue
    """


@magic_arguments(name="job pause")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--group", metavar="NAME", help="Pause a group: it starts nothing, its jobs pause.")
@argument("jobs", metavar="ID", nargs="*", help="Running job ids or names.")
def _pause_parser() -> None:
    """Pause running jobs (SIGSTOP to each whole job), or a whole group.

    A paused job keeps its slot and its devices; its runtime and timeout stop counting.
    A paused group starts none of its queued jobs, in any kernel, until it is resumed.

    Examples
    --------
    ::

        %job pause 7
        %job pause --group sweep
    """


@magic_arguments(name="job resume")
@argument("-h", "--help", action="store_true", help="Show this help.")
@argument("--group", metavar="NAME", help="Resume a group and its paused jobs.")
@argument("jobs", metavar="ID", nargs="*", help="Paused job ids or names.")
def _resume_parser() -> None:
    """Let paused jobs go on (SIGCONT), or resume a paused group and its jobs.

    Examples
    --------
    ::

        %job resume 7
        %job resume --group sweep
    """


QUEUE_PARSERS: dict[str, Any] = {
    "group": _group_parser,
    "queue": _queue_parser,
    "restart": _restart_parser,
    "pause": _pause_parser,
    "resume": _resume_parser,
}
