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


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def create_private_file(path: Path) -> int:
    """Open ``path`` for appending, created 0600 if missing; return the descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd
