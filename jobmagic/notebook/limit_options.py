"""``%job start``'s resource limits: the ``JobMagics`` defaults, and what start says of them.

``--memory``, ``--cpus`` and ``--pids`` fall back to ``c.JobMagics.memory_limit``,
``cpu_limit`` and ``pids_limit``; ``--memory none`` (and so on) runs one job without the
default. The engine checks the values (`jobmagic.core.limits.Limits`); here they are only
chosen. (What a start then says of them is ``describe.limit_notes``.)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from traitlets import Float, Int, TraitError, Unicode, Union, validate
from traitlets.config import Configurable

from jobmagic.core.limits import Limits

from .queue_arguments import argument

#: The option value that turns a configured default off for one job.
NO_LIMIT = "none"
#: Each limit's keyword (of ``WorkerService.start`` and ``Limits``) and its trait.
_TRAITS = {"memory": "memory_limit", "cpus": "cpu_limit", "pids": "pids_limit"}


_Spec = Callable[[], None]
_LIMIT_ARGUMENTS = (
    argument(
        "--memory",
        metavar="SIZE",
        help="Memory its processes may use together (512M, 4G); over it, the job is killed. "
        "Default: c.JobMagics.memory_limit; none: no limit.",
    ),
    argument(
        "--cpus",
        metavar="N",
        help="CPUs' worth of time it may use (1.5); more is slowed down, not killed. "
        "Default: c.JobMagics.cpu_limit; none: no limit.",
    ),
    argument(
        "--pids",
        metavar="N",
        help="Processes and threads it may have at once. Default: c.JobMagics.pids_limit.",
    ),
    argument(
        "--best-effort",
        action="store_true",
        help="Where this machine cannot enforce a limit, run with the limits it can, and say "
        "which were dropped (without it, such a start is refused).",
    ),
)


def limit_arguments(parser: _Spec) -> _Spec:
    """Add ``--memory``, ``--cpus``, ``--pids`` and ``--best-effort`` to a parser's options.

    For the ``magic_arguments`` stack of a parser function, in the place where the help
    should list them.
    """
    for add in reversed(_LIMIT_ARGUMENTS):  # as if written in this order above the function
        parser = add(parser)
    return parser


class LimitDefaults(Configurable):
    """The limits of ``%job start`` and ``%%job`` when their options leave them out.

    A base of ``JobMagics``: configured as ``c.JobMagics.memory_limit = "4G"``, or in a
    notebook as ``%config JobMagics.memory_limit = "4G"``. None (the default): no limit.
    """

    memory_limit: Any = Union(
        [Unicode(), Int()],
        default_value=None,
        allow_none=True,
        help='Default --memory: bytes, or text such as "512M" or "4G" (None: no limit).',
    ).tag(config=True)
    cpu_limit: Any = Float(
        None, allow_none=True, help="Default --cpus: CPUs' worth of time, such as 1.5 (None: any)."
    ).tag(config=True)
    pids_limit: Any = Int(
        None, allow_none=True, help="Default --pids: processes and threads at once (None: any)."
    ).tag(config=True)

    @validate(*_TRAITS.values())
    def _check_limit(self, proposal: dict[str, Any]) -> Any:
        """Refuse a default the engine would refuse at every start, when it is set."""
        value = proposal["value"]
        name = proposal["trait"].name
        if value is not None:
            kind = next(k for k, trait in _TRAITS.items() if trait == name)
            try:
                Limits(**{kind: value})
            except ValueError as exc:
                raise TraitError(f"JobMagics.{name}: {exc}") from None
        return value

    def limit_defaults(self) -> Limits:
        """The configured defaults (checked when they were set)."""
        return Limits(self.memory_limit, self.cpu_limit, self.pids_limit)


def chosen_limits(args: argparse.Namespace, defaults: Limits) -> dict[str, Any]:
    """``WorkerService.start``'s limit keywords from the parsed options and ``defaults``.

    An option left out takes its default; ``none`` means no limit. The values are passed
    on as given: the engine checks them, and its ValueError says what is wrong.
    """
    chosen: dict[str, Any] = {"best_effort": args.best_effort}
    for kind in _TRAITS:
        given = getattr(args, kind)
        if given is None:
            chosen[kind] = getattr(defaults, kind)
        elif given.strip().lower() == NO_LIMIT:
            chosen[kind] = None
        elif kind == "pids" and given.strip().isdigit():
            chosen[kind] = int(given)
        else:
            chosen[kind] = given  # bad text: the engine's message names it
    return chosen
