"""The spawner's fast path: a plain command started without the job script's shell.

A job's leader is normally ``/bin/sh`` running the job script (``shell.JOB_SCRIPT``),
which joins the job's cgroup and then execs the command. For a plain command (words of
letters, digits and ``_@%+=:,./-`` only, under ``/bin/sh``, no pty, no ``ulimit -v``)
the shell adds nothing but its own start, about as long as the command's: the spawner
then finds the program on the job's ``PATH`` and ``posix_spawn``-s it itself. The
program leads the job exactly as after the script's ``exec``: same pid, same session,
same log, same recorded status.

What the shell would have done on the way is done here the shell's way:

- the job's cgroup (cgroup v1, a job with no limits: memory and cpuacct only) is joined
  by moving the spawner's thread into it for the spawn (``0`` to each ``tasks`` file,
  the writing thread) and back to its parent directory after; the child inherits the
  thread's cgroups, so it runs its first instruction inside them. A job with limits is
  never started this way: the spawner's thread must never count against a job's memory
  or pids limit;
- the environment loses the variables whose names are no shell names, as dash drops
  them, and ``PWD`` is the working directory unless it already names it (dash's rule);
- anything the fast path cannot do the same way (the program not found, not a regular
  executable file, a join that fails, a spawn that fails) falls back to the job script,
  which then says and does what it always did (exit 127 or 126 with the shell's words,
  ``ENOEXEC`` run as a script, exit 125 for a cgroup it cannot join).

Standard library only: the spawner runs with ``-I -S`` and imports this by file path.
"""

from __future__ import annotations

import os
import re
import stat

#: A name the shell passes on from its environment.
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def shell_environment(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` as dash passes it on: only the variables with shell names."""
    return {key: value for key, value in environment.items() if _SHELL_NAME.fullmatch(key)}


def working_directory_variable(environment: dict[str, str]) -> str:
    """What dash sets ``PWD`` to in the current directory: the given one if it names it."""
    given = environment.get("PWD", "")
    if given.startswith("/"):
        try:
            if os.path.samestat(os.stat(given), os.stat(".")):
                return given
        except OSError:
            pass
    return os.getcwd()


def find_program(name: str, environment: dict[str, str]) -> str | None:
    """The file the shell would exec for ``name``, if it is a regular executable file.

    None where the shell might do anything else (no ``PATH``, the first file found not a
    regular executable): the job script then runs the command.
    """
    if "/" in name:
        candidates = [name]
    else:
        path = environment.get("PATH")
        if path is None:
            return None  # the shell's own default search path: its business
        candidates = [os.path.join(entry, name) if entry else name for entry in path.split(":")]
    for candidate in candidates:
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(candidate, os.X_OK):
            return candidate
        return None
    return None


def join(cgroup_dirs: list[str]) -> bool:
    """Move this thread into each directory's cgroup (v1); False (and back) on a failure."""
    joined: list[str] = []
    for directory in cgroup_dirs:
        try:
            _write_zero(os.path.join(directory, "tasks"))
        except OSError:
            leave(joined)
            return False
        joined.append(directory)
    return True


def leave(cgroup_dirs: list[str]) -> bool:
    """Move this thread back to each directory's parent cgroup; False if one refused."""
    ok = True
    for directory in cgroup_dirs:
        try:
            _write_zero(os.path.join(os.path.dirname(directory), "tasks"))
        except OSError:
            ok = False
    return ok


def _write_zero(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0\n")
    finally:
        os.close(fd)
