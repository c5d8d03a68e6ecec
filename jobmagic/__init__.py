"""Run shell commands as background jobs from a notebook, and watch and control them.

In IPython or Jupyter, ``%load_ext jobmagic`` adds the ``%job`` and ``%%job`` magics;
from plain Python::

    from jobmagic import get_service

    job = get_service().start("python train.py", name="train")
    job.wait()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .core.state import JobState
    from .engine.default import get_service
    from .engine.service import WorkerService
    from .engine.worker import Worker

__all__ = ["JobState", "Worker", "WorkerService", "__version__", "get_service"]

# The public names load on first use: `import jobmagic.server` (in the Jupyter server)
# must not start the kernel's engine. Worker and WorkerService come with get_service, so
# that a Worker started on its own finds the kernel's service. The widgets (JobPanel,
# OutputWidgetHandler) import ipywidgets, so they are not in __all__.
_LAZY = {
    "JobState": "jobmagic.core.state",
    "Worker": "jobmagic.engine.default",
    "WorkerService": "jobmagic.engine.default",
    "get_service": "jobmagic.engine.default",
    "JobPanel": "jobmagic.notebook.panel",
    "OutputWidgetHandler": "jobmagic.notebook.output_widget",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobmagic' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the ``%job`` magics; called by ``%load_ext jobmagic``."""
    # Imported here so that `import jobmagic` (the engine alone) never imports IPython.
    from .notebook import extension_hooks

    extension_hooks.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Remove what ``load_ipython_extension`` registered; called by ``%unload_ext``."""
    from .notebook import extension_hooks

    extension_hooks.unload_ipython_extension(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Tell JupyterLab where the prebuilt frontend extension lives in this package."""
    return [{"src": "labextension", "dest": "jobmagic"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell jupyter_server which module holds ``_load_jupyter_server_extension``."""
    return [{"module": "jobmagic.server"}]
