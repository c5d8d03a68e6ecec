"""Hints a new user needs once: a job's ``python`` that is not the kernel's Python."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

#: The command words that run a Python interpreter found on ``PATH``.
_INTERPRETERS = frozenset({"python", "python3"})


def interpreter_hint(command: str, path: str | None = None) -> str | None:
    """A one-line note when ``command`` runs a ``python`` that is not this kernel's.

    ``path``: the ``PATH`` the job runs with (None: this process's). None when the first
    word of the command is not ``python``/``python3``, when that is this kernel's
    interpreter, or when it is not found (the job then fails with the shell's message).
    """
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    if not words or words[0] not in _INTERPRETERS:
        return None
    found = shutil.which(words[0], path=path if path is not None else os.environ.get("PATH"))
    if found is None or os.path.realpath(found) == os.path.realpath(sys.executable):
        return None
    return (
        f"note: {words[0]!r} in this job is {found}, not this kernel's Python "
        f"({sys.executable}); write {{sys.executable}} in the command to run the kernel's"
    )
