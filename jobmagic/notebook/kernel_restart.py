"""A kernel restart never kills a run: the jobs keep running, the next kernel re-attaches them.

Jupyter restarts a kernel with a ``shutdown_request`` whose ``restart`` is true (a plain
shutdown has it false). The extension wraps the kernel's handler of that message: on a
restart the service is told to keep its jobs running when the interpreter exits
(``WorkerService.on_shutdown = "keep"``). The kernel that comes up for the same notebook
(Jupyter names it in ``JPY_SESSION_NAME``) re-attaches them when it loads the extension
(``WorkerService.reattach``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobmagic.engine.service import WorkerService
from jobmagic.engine.worker import Worker
from jobmagic.text.describe import job_label

#: The kernel handler tables that may carry ``shutdown_request`` (ipykernel's).
_HANDLER_TABLES = ("shell_handlers", "control_handlers")


def keep_jobs_on_restart(ipython: Any, service: Callable[[], WorkerService]) -> None:
    """Make a restart of ``ipython``'s kernel keep its jobs; a no-op outside a kernel."""
    kernel = getattr(ipython, "kernel", None)
    for table in _HANDLER_TABLES:
        handlers = getattr(kernel, table, None)
        original = handlers.get("shutdown_request") if isinstance(handlers, dict) else None
        if original is None or getattr(original, "jobmagic_original", None) is not None:
            continue
        handlers["shutdown_request"] = _keeping_jobs(original, service)  # type: ignore[index]


def forget_restarts(ipython: Any) -> None:
    """Put the kernel's own ``shutdown_request`` handlers back (``%unload_ext``)."""
    kernel = getattr(ipython, "kernel", None)
    for table in _HANDLER_TABLES:
        handlers = getattr(kernel, table, None)
        if not isinstance(handlers, dict):
            continue
        original = getattr(handlers.get("shutdown_request"), "jobmagic_original", None)
        if original is not None:
            handlers["shutdown_request"] = original


def _keeping_jobs(original: Any, service: Callable[[], WorkerService]) -> Any:
    async def shutdown_request(stream: Any, ident: Any, parent: dict[str, Any]) -> Any:
        if (parent.get("content") or {}).get("restart"):
            service().on_shutdown = "keep"
        return await original(stream, ident, parent)

    shutdown_request.jobmagic_original = original  # type: ignore[attr-defined]
    return shutdown_request


def reattached_message(workers: list[Worker]) -> str | None:
    """The one line that says which jobs a new kernel took back; None when there were none."""
    if not workers:
        return None
    names = ", ".join(w.name or job_label(w) for w in workers)
    noun = "job" if len(workers) == 1 else "jobs"
    return f"re-attached {len(workers)} {noun} from before the restart: {names}"
