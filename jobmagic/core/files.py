"""Private files and directories: everything jobmagic writes is its user's alone."""

from __future__ import annotations

import os
from pathlib import Path


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


def file_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` in bytes; 0 when it does not exist (yet)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
