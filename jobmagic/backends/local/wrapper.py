"""The local backend's wrapper: a tiny ``/bin/sh`` script around the user's command.

The wrapper is the job's process group leader and the kernel's direct child. It runs the
command, then writes the command's exit status to the job's status file, so the status is
on disk even when no kernel is alive to reap the job. It catches SIGTERM, SIGINT and SIGHUP
only to outlive its command long enough to record it: a caught signal is reset to its
default in the command (unlike an ignored one), so the command sees them as usual. A
``pty=True`` command runs under the pty relay (``pty_relay.py``), which keeps it in the
job's process group: a stop reaches it as it reaches any command.

Spawning goes through ``subprocess.Popen`` with no Python callback between fork and exec,
so CPython keeps its vfork fast path: a spawn costs about a millisecond however large the
kernel is.

Both sides of the wrapper's file protocol live here: the status file it writes when the
command ends (read by whoever finds the job ended: its kernel, another kernel, the
server), the stop marker that a stop leaves before it signals, and what the shell's last
words in the log say about exits 126 and 127.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from jobmagic.core.files import create_private_file
from jobmagic.text.terminal import decode, read_tail

#: The pty relay, run by file path (it imports nothing of jobmagic).
PTY_RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pty_relay.py")

# $1 status file, $2 (unused: it named a stop marker file), $3 shell, $4 command, $5 how
# to run it (see run_mode), $6 the Python that runs $7, the pty relay (pty_relay.py), in
# the "pty" modes, $8 the job's cgroup.procs files (one per line; none: no cgroup), $9 an
# address-space limit in KiB for `ulimit -v` (--best-effort memory without a cgroup).
# The job's processes inherit JOBMAGIC_JOB=<id>-<store generation> (its status file's
# name): without a cgroup, it is how a stop finds those that left the process group.
# stdout and stderr arrive as one open log file. The wrapper keeps it on fd 3 for the
# command and points its own stdout and stderr at /dev/null, so its own notices ("Killed")
# never land in the job's byte-exact log. The command runs in a subshell of the wrapper (a
# fork: the cheapest way to get a child), which first checks the stop marker: `stop()`
# appends a line to the (empty) status file before it signals the group, so a stop that
# lands while the wrapper starts up is never swallowed by the wrapper's trap. In the
# "pty" modes the subshell becomes the relay, which runs the command on a pty in the
# job's process group.
# The subshell joins the job's cgroup before anything else (its own pid read from
# /proc/self/stat by the `read` builtin: no fork); the wrapper stays outside, so a kill
# of the whole cgroup leaves it alive to record the command's end.
WRAPPER = """trap : TERM INT HUP
exec 3>&1 >/dev/null 2>&1
[ -n "${PYTHONUNBUFFERED+set}" ] || export PYTHONUNBUFFERED=1
_jm_status=$1 _jm_shell=$3 _jm_cmd=$4 _jm_mode=$5 _jm_python=$6 _jm_relay=$7
_jm_cgroup=$8 _jm_vmem=$9 _jm_job=${1##*/}
export JOBMAGIC_JOB="${_jm_job%.status}"
(
  exec >&3 2>&3 3>&-
  [ -s "$_jm_status" ] && exit 143
  if [ -n "$_jm_cgroup" ]; then
    read -r _jm_self _jm_rest < /proc/self/stat
    _jm_ifs=$IFS IFS='
'
    for _jm_procs in $_jm_cgroup; do
      printf '%s\\n' "$_jm_self" > "$_jm_procs" || {
        printf 'jobmagic: %s\\n' "cannot join the job's cgroup ($_jm_procs)" >&2; exit 125; }
    done
    IFS=$_jm_ifs
  fi
  [ -z "$_jm_vmem" ] || ulimit -v "$_jm_vmem" || exit 125
  set --
  case $_jm_mode in
    exec) eval "exec $_jm_cmd" ;;
    eval) eval "$_jm_cmd" ;;
    pty-exec) exec "$_jm_python" -I -S "$_jm_relay" "$_jm_shell" "exec $_jm_cmd" ;;
    pty) exec "$_jm_python" -I -S "$_jm_relay" "$_jm_shell" "$_jm_cmd" ;;
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
    """How the wrapper runs ``command``: "exec", "eval", "shell", "pty-exec" or "pty".

    A simple command under the default shell is exec'd in place of the subshell ("exec"),
    so the program itself is the wrapper's child: its own exit status is recorded (0 after
    a graceful exit on SIGTERM, -9 when killed), not that of a shell in between. Other
    commands under the default shell are evaluated by the subshell ("eval"); another
    shell runs the command itself ("shell"). With a pty, the pty relay runs the command
    with ``SHELL -c``, and the shell execs a simple command under the default shell
    ("pty-exec"): there too the program is the relay's child, not a shell. A command longer
    than ``SIMPLE_COMMAND_CHARS`` counts as not simple without being looked at: lexing a
    megabyte takes seconds.
    """
    if shell != "/bin/sh":
        return "pty" if pty else "shell"
    simple = _is_simple_command(command)
    if pty:
        return "pty-exec" if simple else "pty"
    return "exec" if simple else "eval"


#: Longer commands are not lexed to see whether they are simple (``shlex`` takes ~0.1 s
#: for this much at worst, and grows faster than the command).
SIMPLE_COMMAND_CHARS = 64 * 1024


def _is_simple_command(command: str) -> bool:
    if len(command) > SIMPLE_COMMAND_CHARS:
        return False
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
    shell: str = "/bin/sh",
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    pty: bool = False,
    cgroup_procs: list[str] | None = None,
    address_space_kib: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` under the wrapper, in a new session, with output on ``log_fd``.

    ``cgroup_procs``: the job's cgroup's ``cgroup.procs`` files, which the command's
    process joins before it runs; ``address_space_kib``: a ``ulimit -v`` for it.

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
            "",
            shell,
            command,
            run_mode(command, shell, pty),
            sys.executable or "python3",
            PTY_RELAY,
            "\n".join(cgroup_procs or ()),
            str(address_space_kib) if address_space_kib else "",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=job_environment(env),
        start_new_session=True,
        close_fds=True,
    )


# -- the status file and the stop marker ---------------------------------------------------

#: A shell reports "killed by signal N" as this plus N.
_SHELL_SIGNAL_BASE = 128


def prepare_status_file(path: Path) -> None:
    """Create the (empty) status file 0600: the wrapper's ``>`` keeps an existing file's mode."""
    os.close(create_private_file(path))


def stop_marker_path(status_path: str | os.PathLike[str]) -> str:
    """Where wrappers before 0.2 looked for a stop marker file (removed with the job)."""
    return os.fspath(status_path) + ".stop"


#: What a stop appends to the status file; a wrapper that finds the file not empty when
#: it starts runs nothing. Its exit status, written later, is the file's first line.
STOP_MARK = b"stop\n"


def leave_stop_marker(status_path: str | os.PathLike[str]) -> None:
    """Tell a wrapper that may still be starting up not to run its command (before a signal).

    An append to the status file, which the launch made: no file is created (creating
    one costs up to a millisecond on some filesystems, a thousand times in a stop_all).
    Appended, it never clobbers an exit status the wrapper wrote already; written before
    the wrapper's own ``>``, it is truncated away, or left after the status's first line.
    """
    # Without the marker only a wrapper still starting up misses the stop; the signal
    # that follows reaches everything else.
    with contextlib.suppress(OSError):
        fd = os.open(status_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, STOP_MARK)
        finally:
            os.close(fd)


def exit_code_from_shell_status(status: int) -> int:
    """Turn a shell's ``$?`` into a ``Popen.returncode``-style exit code.

    A shell reports a child killed by signal N as 128+N; that becomes -N. A command that
    itself exits with such a value reads as killed, the same ambiguity ``sh -c`` has.
    """
    if _SHELL_SIGNAL_BASE < status < _SHELL_SIGNAL_BASE + signal.NSIG:
        return -(status - _SHELL_SIGNAL_BASE)
    return status


def read_status_file(path: str | os.PathLike[str]) -> int | None:
    """The exit code a job's wrapper wrote, or None when it wrote nothing (yet).

    The status is the file's first line; a stop's mark (``STOP_MARK``) may follow it, or
    be all there is (no status yet).
    """
    try:
        with open(path, "rb") as f:
            text = f.read(4096)
    except FileNotFoundError:
        return None
    first, newline, _ = text.partition(b"\n")
    if not newline:
        return None
    try:
        return exit_code_from_shell_status(int(first))
    except ValueError:
        return None


def status_written_at(path: str | os.PathLike[str]) -> float | None:
    """When the wrapper wrote the status file (epoch seconds), None if it is missing."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def remove_status_files(path: str | os.PathLike[str]) -> None:
    """Delete a finished job's status file and stop marker."""
    for name in (os.fspath(path), stop_marker_path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# -- what the shell said -----------------------------------------------------------------

#: How much of a log's end is read to explain a failure ("command not found: pyhton").
_DIAGNOSIS_BYTES = 4096
# The shell's exit statuses for "not found" and "found but not executable".
NOT_FOUND_STATUS = 127
NOT_EXECUTABLE_STATUS = 126
_NOT_FOUND = re.compile(
    rb"(?:^|\n)[^\n]*?:(?: line)? ?\d*:? ?([^\n:]+): (?:command )?not found\s*$"
)
_NOT_EXECUTABLE = re.compile(rb"(?:^|\n)[^\n]*?: ?\d*:? ?([^\n:]+): Permission denied\s*$")


def diagnose(exit_code: int | None, log_path: Path) -> str | None:
    """Explain exits 127 and 126 from the shell's message at the end of the log, if any."""
    if exit_code not in (NOT_FOUND_STATUS, NOT_EXECUTABLE_STATUS):
        return None
    try:
        tail = read_tail(log_path, _DIAGNOSIS_BYTES).rstrip()
    except OSError:
        return None
    pattern = _NOT_FOUND if exit_code == NOT_FOUND_STATUS else _NOT_EXECUTABLE
    match = pattern.search(tail)
    if match is None:
        return None
    what = decode(match.group(1)).strip()
    if exit_code == NOT_FOUND_STATUS:
        return f"command not found: {what}"
    return f"not executable: {what}"
