"""Starting a job's process: a tiny ``/bin/sh`` wrapper around the user's command.

The wrapper is the job's process group leader and the kernel's direct child. It runs the
command, then writes the command's exit status to the job's status file, so the status is
on disk even when no kernel is alive to reap the job. It catches SIGTERM, SIGINT and SIGHUP
only to outlive its command long enough to record it: a caught signal is reset to its
default in the command (unlike an ignored one), so the command sees them as usual.

Spawning goes through ``subprocess.Popen`` with no Python callback between fork and exec,
so CPython keeps its vfork fast path: a spawn costs about a millisecond however large the
kernel is.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping

# $1 status file, $2 stop marker, $3 shell, $4 command, $5 how to run it (see run_mode).
# stdout and stderr arrive as one open log file. The wrapper keeps it on fd 3 for the
# command and points its own stdout and stderr at /dev/null, so its own notices ("Killed")
# never land in the job's byte-exact log. The command runs in a subshell of the wrapper (a
# fork: the cheapest way to get a child), which first checks the stop marker: `stop()`
# creates the marker before it signals the group, so a stop that lands while the wrapper
# starts up is never swallowed by the wrapper's trap.
WRAPPER = """trap : TERM INT HUP
exec 3>&1 >/dev/null 2>&1
[ -n "${PYTHONUNBUFFERED+set}" ] || export PYTHONUNBUFFERED=1
_jm_status=$1 _jm_stop=$2 _jm_shell=$3 _jm_cmd=$4 _jm_mode=$5
(
  exec >&3 2>&3 3>&-
  [ -e "$_jm_stop" ] && exit 143
  set --
  case $_jm_mode in
    exec) eval "exec $_jm_cmd" ;;
    eval) eval "$_jm_cmd" ;;
    pty) SHELL=$_jm_shell exec script -q -e -f -E never -c "$_jm_cmd" /dev/null ;;
    *) exec "$_jm_shell" -c "$_jm_cmd" ;;
  esac
)
_jm_st=$?
printf '%s\\n' "$_jm_st" > "$_jm_status"
exit "$_jm_st"
"""

# Names a POSIX shell runs itself: `exec NAME` would run a different program or none.
_SHELL_WORDS = frozenset(
    {
        ".",
        ":",
        "[",
        "alias",
        "bg",
        "break",
        "cd",
        "chdir",
        "command",
        "continue",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fc",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "kill",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        "!",
        "{",
        "}",
        "case",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "if",
        "in",
        "then",
        "until",
        "while",
    }
)


def run_mode(command: str, shell: str, pty: bool) -> str:
    """How the wrapper runs ``command``: "pty", "exec", "eval" or "shell".

    A simple command under the default shell is exec'd in place of the subshell, so the
    program itself is the wrapper's child: its own exit status is recorded (0 after a
    graceful exit on SIGTERM, -9 when killed), not that of a shell in between.
    """
    if pty:
        return "pty"
    if shell != "/bin/sh":
        return "shell"
    return "exec" if _is_simple_command(command) else "eval"


def _is_simple_command(command: str) -> bool:
    lexer = shlex.shlex(command, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t"
    try:
        words = list(lexer)
    except ValueError:
        return False
    if not words or words[0] in _SHELL_WORDS or "=" in words[0]:
        return False
    return not any(word and set(word) <= set("();<>|&\n") for word in words)


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
    stop_path: str,
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
            stop_path,
            shell,
            command,
            run_mode(command, shell, pty),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=job_environment(env),
        start_new_session=True,
        close_fds=True,
    )
