"""The private per-user directory that holds the job store and the logs."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides where jobmagic keeps its store and logs.
HOME_ENV = "JOBMAGIC_HOME"


def jobmagic_home() -> Path:
    """The job home: ``$JOBMAGIC_HOME``, else ``jobmagic/`` under Jupyter's data dir."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "jobmagic"
