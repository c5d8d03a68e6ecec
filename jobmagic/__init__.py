"""Run shell commands as background jobs from a notebook, and watch and control them.

In IPython or Jupyter, ``%load_ext jobmagic`` adds the ``%job`` and ``%%job`` magics;
from plain Python::

    from jobmagic import get_service

    job = get_service().start("python train.py", name="train")
    job.wait()
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .service import WorkerService, get_service
from .state import JobState
from .worker import Worker

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["JobState", "Worker", "WorkerService", "__version__", "get_service"]


def load_ipython_extension(ipython: "InteractiveShell") -> None:
    """Register the ``%job`` magics; called by ``%load_ext jobmagic``."""
    # Imported here so that `import jobmagic` (the engine alone) never imports IPython.
    from . import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: "InteractiveShell") -> None:
    """Remove what ``load_ipython_extension`` registered; called by ``%unload_ext``."""
    from . import magics

    magics.unload_ipython_extension(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Tell JupyterLab where the prebuilt frontend extension lives in this package."""
    return [{"src": "labextension", "dest": "jobmagic"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell jupyter_server which module holds ``_load_jupyter_server_extension``."""
    return [{"module": "jobmagic.server"}]
