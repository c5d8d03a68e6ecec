"""The ``JobMagics`` settings of the kernel's jobs: the service's, the panel's, the shell.

``c.JobMagics.stop_timeout``, the retention limits, the pools and ``on_shutdown`` go to
the kernel's `WorkerService` when a magic first needs it, and again whenever one is set.
(The defaults of a start's limits and backend are ``limit_options`` and
``backend_options``.)
"""

from __future__ import annotations

from typing import Any

from traitlets import Dict, Enum, Float, Int, List, Unicode, observe
from traitlets.config import Configurable

from jobmagic.engine.default import get_service
from jobmagic.engine.service import WorkerService


class KernelSettings(Configurable):
    """A base of ``JobMagics``: its settings, and the service they configure.

    Configured as ``c.JobMagics.stop_timeout = 10``, or in a notebook as
    ``%config JobMagics.stop_timeout = 10``.
    """

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
    gpus = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="The GPU pool's device ids for --gpus (None: JOBMAGIC_GPUS, else nvidia-smi -L).",
    ).tag(config=True)
    resources = Dict(
        value_trait=Int(min=1),
        help='Named pools for --resource NAME=N, and their sizes: {"license": 2}.',
    ).tag(config=True)
    on_shutdown = Enum(
        ["stop", "keep"],
        "stop",
        help=(
            "What a kernel shutdown does with its jobs that are not detached: stop them, "
            "or keep them running (a restart always keeps them, and the notebook's next "
            "kernel re-attaches them)."
        ),
    ).tag(config=True)

    #: The service this object configured last (None until a magic first needs one).
    _service: WorkerService | None = None

    def service(self) -> WorkerService:
        """Return the kernel's `WorkerService`, with this object's configuration applied."""
        service = get_service()
        if service is not self._service:
            service.stop_timeout = self.stop_timeout
            service.keep_finished = self.keep_finished
            service.max_log_bytes = self.max_log_bytes
            gpus: Any = self.gpus  # None is allowed (allow_none), whatever the stubs say
            service.gpus = None if gpus is None else list(gpus)
            service.resources = dict(self.resources)
            service.on_shutdown = self.on_shutdown
            self._service = service
        return service

    @observe("stop_timeout", "keep_finished", "max_log_bytes", "gpus", "resources", "on_shutdown")
    def _push_config(self, change: dict[str, Any]) -> None:
        if self._service is not None:
            setattr(self._service, change["name"], change["new"])
