# PYTHON_ARGCOMPLETE_OK
"""``jobmagic``: the jobs of every notebook, from a terminal or a script.

It reads and writes the same job store as the kernels and the Jupyter server
(``$JOBMAGIC_HOME``), and imports neither IPython nor Jupyter's server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from jobmagic._version import __version__
from jobmagic.backends.registry import BACKENDS
from jobmagic.core.state import JobState
from jobmagic.errors import JobmagicError

from .commands import COMMANDS, UsageError

EXAMPLES = """\
examples:
  jobmagic list                      running and queued jobs, and the latest finished
  jobmagic logs 7 --follow           job 7's output until it ends; exits with its status
  jobmagic stop train --timeout 30   SIGTERM to the job named "train", SIGKILL after 30 s
  jobmagic wait 7 8 --timeout 3600   0 if both succeeded; 124 if still running after 1 h
  jobmagic start --name sweep -- python sweep.py --lr 0.1
  jobmagic group gpu --parallel 2    at most 2 jobs of group "gpu" run at once
  jobmagic start --group gpu --after 7 -- python eval.py
  jobmagic start --memory 4G --cpus 2 -- python train.py
  jobmagic start --on ray --gpus 1 --address http://head:8265 -- python train.py
  jobmagic pause --group gpu         start nothing more in "gpu"; SIGSTOP its jobs
  jobmagic restart 7                 job 7 again, as a new job
  jobmagic list --json | jq '.jobs[] | select(.state == "failed") | .id'

Jobs are named by id or name, as in the notebook's %job magic. The store is
$JOBMAGIC_HOME, else jobmagic/ in Jupyter's data directory. Shell completion:
  eval "$(register-python-argcomplete jobmagic)"     (bash; see argcomplete for zsh)
"""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _complete_jobs(**_kwargs: Any) -> list[str]:
    """Ids and names of the store's jobs, for shell completion."""
    from jobmagic.store.job_store import JobStore

    try:
        records = JobStore().list()
    except JobmagicError:
        return []
    return [str(r.id) for r in records] + [r.name for r in records if r.name]


def _jobs_argument(parser: argparse.ArgumentParser, nargs: str, help_text: str) -> None:
    action = parser.add_argument(
        "jobs" if nargs != "one" else "job",
        metavar="ID",
        nargs=None if nargs == "one" else nargs,
        help=help_text,
    )
    action.completer = _complete_jobs  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    """The ``jobmagic`` command line."""
    parser = _Parser(
        prog="jobmagic",
        description="Watch and control the background jobs of your Jupyter notebooks.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jobmagic {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", help="list jobs (every kernel's)")
    p.add_argument("--all", action="store_true", help="every finished job too, not the latest")
    p.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in JobState],
        help="only jobs in this state (repeatable)",
    )
    p.add_argument("--group", help="only the jobs of this queue group")
    p.add_argument("--json", action="store_true", help="the REST API's JSON document")

    p = sub.add_parser("status", help="everything about one job")
    _jobs_argument(p, "one", "the job's id or name")
    p.add_argument(
        "--json", action="store_true", help="the REST API's JSON for the job, with its usage"
    )

    p = sub.add_parser("logs", help="a job's output, byte for byte")
    _jobs_argument(p, "one", "the job's id or name")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="go on until the job ends, then exit with its status",
    )

    p = sub.add_parser("start", help="start a job that no kernel owns")
    p.add_argument("--name", help="an alias for its id (unique among running jobs)")
    p.add_argument("--cwd", metavar="DIR", help="its working directory")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="add to its environment")
    p.add_argument("--timeout", type=float, metavar="S", help="stop it after S seconds")
    p.add_argument("--pty", action="store_true", help="run it on a pseudo-terminal")
    p.add_argument("--group", default="default", help="the queue group it runs in")
    p.add_argument("--priority", type=int, default=0, help="higher starts first in its group")
    p.add_argument("--after", metavar="ID[,ID...]", help="start when these jobs have succeeded")
    p.add_argument("--gpus", type=int, default=0, metavar="N", help="take N GPUs from the pool")
    p.add_argument("--resource", action="append", metavar="NAME=N", help="take N units of a pool")
    p.add_argument("--memory", metavar="SIZE", help="memory it may use (512M, 4G); over it: killed")
    p.add_argument("--cpus", metavar="N", help="CPUs' worth of time it may use (1.5)")
    p.add_argument("--pids", type=int, metavar="N", help="processes and threads it may have")
    p.add_argument(
        "--best-effort",
        action="store_true",
        help="where a limit cannot be enforced here, run without it (and say so)",
    )
    _add_backend_options(p)
    p.add_argument("--json", action="store_true", help="print its JSON, not its id")
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="a shell command line (its words are joined with spaces)",
    )

    p = sub.add_parser("stop", help="stop jobs: SIGTERM, then SIGKILL after the timeout")
    _jobs_argument(p, "*", "ids or names")
    p.add_argument("--all", action="store_true", help="every running job")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="seconds between SIGTERM and SIGKILL (default 5)"
    )

    p = sub.add_parser("wait", help="wait for jobs to end; exit 0 if all succeeded")
    _jobs_argument(p, "*", "ids or names")
    p.add_argument("--all", action="store_true", help="every job queued or running now")
    p.add_argument("--group", help="every job of this group queued or running now")
    p.add_argument("--timeout", type=float, metavar="S", help="exit 124 after S seconds")

    _add_queue_commands(sub)

    p = sub.add_parser("rm", help="delete finished jobs and their logs")
    _jobs_argument(p, "*", "ids or names")
    p.add_argument("--finished", action="store_true", help="every finished job (all kernels')")
    return parser


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``start``'s ``--on``, ``--address`` and ``--ship-cwd``: what runs the job, and where.

    (The notebook's ``%job start`` has the same options: ``notebook/backend_options.py``.)
    """
    parser.add_argument(
        "--on",
        choices=BACKENDS,
        default="local",
        metavar="BACKEND",
        help=f"what runs it: {' or '.join(BACKENDS)} (a job on a Ray cluster); default local",
    )
    parser.add_argument(
        "--address",
        metavar="URL",
        help="ray: the cluster's dashboard, http://HOST:8265 (default $RAY_ADDRESS, else "
        "http://127.0.0.1:8265)",
    )
    parser.add_argument(
        "--ship-cwd", action="store_true", help="ray: upload the working directory with the job"
    )


def _add_queue_commands(sub: Any) -> None:
    """``group``, ``pause``, ``resume`` and ``restart``."""
    p = sub.add_parser("group", help="show queue groups, or limit how many jobs of one run")
    p.add_argument("name", metavar="NAME", nargs="?", help="a group's name")
    p.add_argument("--parallel", type=int, metavar="N", help="run at most N at once (0: any)")
    p.add_argument("--json", action="store_true", help="the groups as JSON")

    for verb, what in (("pause", "SIGSTOP; a paused group starts nothing"), ("resume", "SIGCONT")):
        p = sub.add_parser(verb, help=f"{verb} running jobs or a whole group ({what})")
        _jobs_argument(p, "*", "ids or names")
        p.add_argument("--group", metavar="NAME", help=f"{verb} this group and its jobs")

    p = sub.add_parser("restart", help="start an ended job again, as a new job")
    _jobs_argument(p, "one", "an ended job's id or name")
    p.add_argument("--json", action="store_true", help="print its JSON, not its id")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    parser = build_parser()
    try:
        import argcomplete
    except ImportError:  # completion is a convenience, not a requirement
        pass
    else:
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    for option in ("timeout",):
        value = getattr(args, option, None)
        if value is not None and not value >= 0:
            parser.error(f"--{option} must be a number of seconds >= 0, not {value:g}")
    from jobmagic.engine.service import WorkerService

    prog = f"jobmagic {args.subcommand}"
    try:
        service = WorkerService()
    except JobmagicError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    try:
        return COMMANDS[args.subcommand](service, args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except JobmagicError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0  # `jobmagic logs 7 | head`: the reader has what it wanted
    except KeyboardInterrupt:
        return 130
    finally:
        service.shutdown()


def run() -> NoReturn:
    """The console script's entry point."""
    sys.exit(main())
