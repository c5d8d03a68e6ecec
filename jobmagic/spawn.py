"""Starting a job's process: a tiny ``/bin/sh`` wrapper around the user's command.

The wrapper is the job's process group leader and the kernel's direct child. It runs the
command, then writes the command's exit status to the job's status file, so the status is
on disk even when no kernel is alive to reap the job. It catches SIGTERM, SIGINT and SIGHUP
only to outlive its command long enough to record it: a caught signal is reset to its
default in the command (unlike an ignored one), so the command sees them as usual.

Spawning goes through ``subprocess.Popen`` without ``preexec_fn``, so CPython keeps its
vfork fast path: a spawn costs about a millisecond however large the kernel is.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

# $1: status file, $2: shell, $3: command, $4: "pty" to run it under a pseudo-terminal.
# stdout and stderr arrive as one open log file. The wrapper keeps it on fd 3 for the
# command and points its own stdout and stderr at /dev/null, so its own notices never land
# in the job's byte-exact log (the subshell redirects inside itself, so that the wrapper's
# "Killed" notice about it goes to /dev/null too). With the default shell the command runs
# in a subshell of the wrapper (a fork, no exec: the cheapest way to get a child), with its
# positional parameters cleared as `sh -c` would have them.
WRAPPER = """trap : TERM INT HUP
exec 3>&1 >/dev/null 2>&1
[ -n "${PYTHONUNBUFFERED+set}" ] || export PYTHONUNBUFFERED=1
cmd=$3
if [ "$4" = pty ]; then
  SHELL="$2" script -q -e -f -E never -c "$cmd" /dev/null >&3 2>&3 3>&-
elif [ "$2" = /bin/sh ]; then
  (exec >&3 2>&3 3>&-; set --; eval "$cmd")
else
  "$2" -c "$cmd" >&3 2>&3 3>&-
fi
st=$?
printf '%s\\n' "$st" > "$1"
exit "$st"
"""


def job_environment(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """The kernel's environment plus the caller's ``env``; None means the kernel's as is.

    The wrapper sets ``PYTHONUNBUFFERED=1`` unless it is set, so Python scripts stream
    live; copying the environment only when the caller adds to it keeps spawns cheap.
    """
    if not env:
        return None
    merged = dict(os.environ)
    merged.update(env)
    return merged


def spawn(
    command: str,
    *,
    log_fd: int,
    status_path: str,
    shell: str = "/bin/sh",
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    pty: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` under the wrapper, in a new session, with output on ``log_fd``.

    Raises
    ------
    OSError
        When the wrapper cannot be started (``cwd`` missing, ``/bin/sh`` missing, ...).
    """
    return subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            WRAPPER,
            "jobmagic-job",
            status_path,
            shell,
            command,
            "pty" if pty else "",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=job_environment(env),
        start_new_session=True,
        close_fds=True,
    )
