"""The kernel's own ``WorkerService``: ``get_service()``."""

from __future__ import annotations

import threading

from . import binding
from .service import WorkerService
from .worker import Worker

_default_service: WorkerService | None = None
_default_lock = threading.Lock()  # guards _default_service


def get_service() -> WorkerService:
    """The kernel's one :class:`WorkerService`, created on first use."""
    global _default_service
    with _default_lock:
        if _default_service is None or _default_service.closed:
            _default_service = WorkerService()
        return _default_service


def _reset_service_for_tests() -> None:
    """Shut the kernel's service down and forget it (tests use a fresh store each)."""
    global _default_service
    with _default_lock:
        service, _default_service = _default_service, None
    if service is not None:
        service.shutdown()


binding.set_default_service(get_service)

__all__ = ["Worker", "WorkerService", "get_service"]
