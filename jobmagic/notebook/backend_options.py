"""``%job start``'s backend: the ``JobMagics`` defaults, and the options that choose one.

``--on BACKEND`` falls back to ``c.JobMagics.backend`` (``"local"``); a Ray job's
``--address`` falls back to ``c.JobMagics.ray_address``, and that to the engine's default
(``RAY_ADDRESS``, else ``http://127.0.0.1:8265``). The engine checks the address and what
a backend can run; here they are only chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from traitlets import TraitError, Unicode, validate
from traitlets.config import Configurable

from jobmagic.backends.registry import BACKENDS

from .queue_arguments import argument

#: The backend whose jobs ``c.JobMagics.ray_address`` is for.
_RAY = "ray"

_Spec = Callable[[], None]
_BACKEND_ARGUMENTS = (
    argument(
        "--on",
        metavar="BACKEND",
        choices=BACKENDS,
        help=f"What runs it: {' or '.join(BACKENDS)} (a job on a Ray cluster). "
        "Default: c.JobMagics.backend.",
    ),
    argument(
        "--address",
        metavar="URL",
        help="The Ray cluster's dashboard, http://HOST:8265. Default: c.JobMagics.ray_address, "
        "else RAY_ADDRESS, else http://127.0.0.1:8265.",
    ),
    argument(
        "--ship-cwd",
        action="store_true",
        help="Ray: upload the working directory with the job (else the cluster must see "
        "the same path).",
    ),
)


def backend_arguments(parser: _Spec) -> _Spec:
    """Add ``--on``, ``--address`` and ``--ship-cwd`` to a parser's options.

    For the ``magic_arguments`` stack of a parser function, in the place where the help
    should list them.
    """
    for add in reversed(_BACKEND_ARGUMENTS):  # as if written in this order above the function
        parser = add(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class DefaultBackend:
    """What a start without ``--on`` or ``--address`` runs on.

    ``name``: a backend of ``BACKENDS``. ``ray_address``: a Ray job's cluster; None: the
    engine's default (``RAY_ADDRESS``, else ``http://127.0.0.1:8265``).
    """

    name: str = "local"
    ray_address: str | None = None


class BackendDefaults(Configurable):
    """The backend of ``%job start`` and ``%%job`` when their options leave it out.

    A base of ``JobMagics``: configured as ``c.JobMagics.backend = "ray"``, or in a
    notebook as ``%config JobMagics.backend = "ray"``.
    """

    backend: Any = Unicode(
        "local", help=f"Default --on: the backend that runs a job ({', '.join(BACKENDS)})."
    ).tag(config=True)
    ray_address: Any = Unicode(
        None,
        allow_none=True,
        help="Default --address of a Ray job: http://HOST:8265 (None: RAY_ADDRESS, else "
        "http://127.0.0.1:8265). Jobs of other backends never get it.",
    ).tag(config=True)

    @validate("backend")
    def _check_backend(self, proposal: dict[str, Any]) -> Any:
        """Refuse a backend jobmagic does not have when it is set, not at every start."""
        value = proposal["value"]
        if value not in BACKENDS:
            raise TraitError(
                f"JobMagics.backend: unknown backend {value!r}; jobmagic has: {', '.join(BACKENDS)}"
            )
        return value

    def backend_defaults(self) -> DefaultBackend:
        """The configured defaults (the backend checked when it was set)."""
        return DefaultBackend(self.backend, self.ray_address)


def chosen_backend(args: argparse.Namespace, defaults: DefaultBackend) -> dict[str, Any]:
    """``WorkerService.start``'s backend keywords from the parsed options and ``defaults``.

    ``--address`` is passed on as given, whatever the backend: a local job refuses it with
    a message that says to add ``--on ray``. The configured ``ray_address`` goes to Ray
    jobs only (the local executor refuses any address).
    """
    backend = args.on if args.on is not None else defaults.name
    address = args.address
    if address is None and backend == _RAY:
        address = defaults.ray_address
    return {"backend": backend, "address": address, "ship_cwd": args.ship_cwd}
