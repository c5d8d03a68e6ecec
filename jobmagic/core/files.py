"""Private files and directories: everything jobmagic writes is its user's alone.

Like ssh and systemd with their private directories, jobmagic refuses a directory that
another user owns, and never follows a symbolic link when it creates or opens a job's
files: in a directory someone else could write to, a planted link would otherwise make
it truncate, append to or chmod a file elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_PRIVATE_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW
_DIR_MODE = 0o700
_FILE_MODE = 0o600


class UnsafePath(PermissionError):
    """A directory or file jobmagic would use is a link, not a directory, or not yours."""


def private_dir(path: Path, *, link_allowed: bool = False) -> Path:
    """Create ``path`` (and parents) if needed, check it is ours, make it 0700.

    ``link_allowed``: ``path`` may be a symbolic link that we own to a directory that we
    own (a job home the user pointed elsewhere); otherwise a link is refused.

    Raises
    ------
    UnsafePath
        ``path`` is a link (unless allowed), not a directory, or owned by another user.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, _DIR_MODE)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        if not link_allowed:
            raise UnsafePath(f"{path} is a symbolic link; jobmagic's directories must not be")
        _check_owner(path, info, "symbolic link")
        info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is not a directory")
    _check_owner(path, info, "directory")
    if stat.S_IMODE(info.st_mode) != _DIR_MODE:
        os.chmod(path, _DIR_MODE)
    return path


def _check_owner(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_uid != os.geteuid():
        raise UnsafePath(
            f"the {what} {path} belongs to {_user_name(info.st_uid)}, not to you "
            f"({_user_name(os.geteuid())}); jobmagic keeps jobs only in a directory of "
            "your own: set JOBMAGIC_HOME to one (or remove this one)"
        )


def _user_name(uid: int) -> str:
    import pwd

    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def create_private_file(path: Path, *, new: bool = False) -> int:
    """Open ``path`` for appending, created 0600 if missing; return the descriptor.

    A symbolic link at ``path`` is never followed (``OSError`` ELOOP). ``new``: the file
    must not exist yet (``FileExistsError``).

    Raises
    ------
    UnsafePath
        ``path`` exists and belongs to another user.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _PRIVATE_OPEN
    if new:
        flags |= os.O_EXCL
    fd = os.open(path, flags, _FILE_MODE)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            _check_owner(path, info, "file")
        if stat.S_IMODE(info.st_mode) != _FILE_MODE:
            os.fchmod(fd, _FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private_file(path: Path) -> None:
    """Refuse ``path`` if it is a link or another user's (a missing file is fine).

    For files that other code opens by name (SQLite's database and its journals).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{path} is a symbolic link; jobmagic's files must not be")
    _check_owner(path, info, "file")


def file_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` in bytes; 0 when it does not exist (yet)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
