"""How a local job's command is handed to its shell, and what the shell's last words mean.

Every local job's leader runs ``JOB_SCRIPT`` under ``/bin/sh`` (the spawner starts it;
the wrapper, where there is no spawner, runs the same script in its subshell), except a
plain command the spawner starts itself (``direct_start``, ``spawn_direct.py``). The
script joins the job's cgroup before anything else, applies a ``ulimit -v``, then runs
the command the way ``run_mode`` chose: a simple command is exec'd in the script's place
(the program itself leads the job and its own exit status is recorded), anything else is
evaluated by the script's shell, another shell runs the command itself, and a ``pty=True``
command runs under the pty relay (``pty_relay.py``), which keeps it in the job's process
group.

What the shell says when it cannot run a command ends the log; ``diagnose`` reads it to
explain exits 127 and 126.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from jobmagic.core.limits import Limits
from jobmagic.core.spec import JobSpec
from jobmagic.text.terminal import decode, read_tail

from .cgroups import V1, JobCgroup

#: The pty relay, run by file path (it imports nothing of jobmagic).
PTY_RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pty_relay.py")
#: The job script's ``$0``: the name the shell's own messages begin with.
SCRIPT_NAME = "jobmagic-job"

# The job script's variables: _jm_shell, _jm_cmd, _jm_mode (see run_mode), _jm_python
# (the Python that runs _jm_relay, the pty relay, in the "pty" modes), _jm_cgroup (the
# job's cgroup.procs files, one per line; none: no cgroup) and _jm_vmem (an address-space
# limit in KiB for `ulimit -v`: --best-effort memory without a cgroup). It joins the
# cgroup before anything else by writing 0 to cgroup.procs, which means "the writer"
# (v1 and v2 alike): its pid is never read (dash's `read` takes /proc/self/stat a byte
# at a time, 300 system calls, a third of a millisecond per job). `set --` leaves the
# command no positional parameters.
JOB_SCRIPT_BODY = """if [ -n "$_jm_cgroup" ]; then
  _jm_ifs=$IFS IFS='
'
  for _jm_procs in $_jm_cgroup; do
    printf '0\\n' > "$_jm_procs" || {
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
"""
#: The leader's program: ``/bin/sh -c JOB_SCRIPT jobmagic-job SHELL CMD MODE PYTHON RELAY
#: CGROUP VMEM`` (see ``job_argv``).
JOB_SCRIPT = (
    "_jm_shell=$1 _jm_cmd=$2 _jm_mode=$3 _jm_python=$4 _jm_relay=$5 _jm_cgroup=$6 _jm_vmem=$7\n"
    + JOB_SCRIPT_BODY
)


def job_argv(
    command: str,
    shell: str,
    pty: bool,
    cgroup_procs: list[str] | None = None,
    address_space_kib: int | None = None,
) -> list[str]:
    """The argv of a job's leader: ``/bin/sh`` running ``JOB_SCRIPT`` for ``command``."""
    return [
        "/bin/sh",
        "-c",
        JOB_SCRIPT,
        SCRIPT_NAME,
        *script_arguments(command, shell, pty, cgroup_procs, address_space_kib),
    ]


def script_arguments(
    command: str,
    shell: str,
    pty: bool,
    cgroup_procs: list[str] | None,
    address_space_kib: int | None,
) -> list[str]:
    """The job script's seven arguments (its variables, in ``JOB_SCRIPT``'s order)."""
    return [
        shell,
        command,
        run_mode(command, shell, pty),
        sys.executable or "python3",
        PTY_RELAY,
        "\n".join(cgroup_procs or ()),
        str(address_space_kib) if address_space_kib else "",
    ]


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
    """How the job script runs ``command``: "exec", "eval", "shell", "pty-exec" or "pty".

    A simple command under the default shell is exec'd in place of the script ("exec"),
    so the program itself leads the job: its own exit status is recorded (0 after a
    graceful exit on SIGTERM, -9 when killed), not that of a shell in between. Other
    commands under the default shell are evaluated by the script's shell ("eval");
    another shell runs the command itself ("shell"). With a pty, the pty relay runs the
    command with ``SHELL -c``, and the shell execs a simple command under the default
    shell ("pty-exec"): there too the program is the relay's child, not a shell. A
    command longer than ``SIMPLE_COMMAND_CHARS`` counts as not simple without being
    looked at: lexing a megabyte takes seconds.
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


#: A command of words no shell changes: the spawner may start it itself (``spawn_direct``).
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_@%+=:,./ \t-]+")


def direct_words(command: str, shell: str, pty: bool) -> list[str] | None:
    """The program and arguments of a plain ``exec``-mode command; None for any other.

    Only a program the shell would ``exec`` (not one of its own words: ``true`` and
    ``echo`` stay the shell's builtins) and only words the shell leaves as they are.
    """
    if shell != "/bin/sh" or pty or not _PLAIN_COMMAND.fullmatch(command):
        return None
    words = command.split()
    if not words or words[0] in _SHELL_WORDS or "=" in words[0] or words[0].startswith("-"):
        return None
    return words


def direct_start(
    spec: JobSpec, cgroup: JobCgroup | None, address_space: int | None
) -> tuple[list[str], list[str]] | None:
    """A plain command's words and the cgroup directories the spawner joins for it.

    None (the job script starts it) for any other command, a ``ulimit -v``, a limit
    (the spawner's thread must never count against one), or a cgroup v2 (a process
    joins it whole: the spawner does not move itself).
    """
    if address_space is not None or spec.limits != Limits():
        return None
    if cgroup is not None and cgroup.version != V1:
        return None
    words = direct_words(spec.command, spec.shell, spec.pty)
    if words is None:
        return None
    return words, list(cgroup.dirs) if cgroup is not None else []


def job_environment(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """The kernel's environment plus the caller's ``env``; None means the kernel's as is.

    ``PYTHONUNBUFFERED=1`` is added unless it is set, so Python scripts stream live;
    copying the environment only when the caller adds to it keeps spawns cheap.
    """
    if not env:
        return None
    merged = dict(os.environ)
    merged.update(env)
    return merged


class _Snapshot:
    """The kernel's environment as a job gets it, read once per change of it."""

    __slots__ = ("decoded", "largest", "raw", "size")

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        self.raw = raw
        self.decoded = {os.fsdecode(key): os.fsdecode(value) for key, value in raw.items()}
        sizes = [len(key) + len(value) + 2 for key, value in raw.items()]
        self.size = sum(sizes) + 8 * len(sizes)  # and a pointer each
        self.largest = max(zip(sizes, raw, strict=True), default=(0, b""))


# Guards _snapshot: jobs start from any thread.
_snapshot_lock = threading.Lock()
_snapshot: _Snapshot | None = None


def kernel_environment() -> dict[str, str]:
    """The kernel's environment now, as a dict that is the same object until it changes.

    Read again only when ``os.environ`` changed (its bytes compared, no decoding): every
    start needs it, and decoding each variable of it costs more than the rest of a start's
    own Python. Callers must not change the dict.
    """
    return _current_snapshot().decoded


def _current_snapshot() -> _Snapshot:
    global _snapshot
    raw: dict[bytes, bytes] | None = getattr(os.environb, "_data", None)
    with _snapshot_lock:
        snapshot = _snapshot
        if snapshot is None or raw is None or raw != snapshot.raw:
            snapshot = _snapshot = _Snapshot(dict(raw if raw is not None else os.environb))
        return snapshot


# -- what execve takes -------------------------------------------------------------

#: Linux's limit on one argument or environment string, terminating NUL included.
MAX_ARG_STRLEN = 32 * (os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096)
# What the job script adds around the command, generously (its text, paths, words).
_WRAPPER_OVERHEAD = 8192


def check_exec_size(spec: JobSpec) -> None:
    """Raise ValueError when ``spec`` is larger than ``execve`` can pass to the job script."""
    command = len(os.fsencode(spec.command)) + 1
    if command > MAX_ARG_STRLEN:
        raise ValueError(
            f"the command is {command - 1:,} bytes; this system runs commands of at most "
            f"{MAX_ARG_STRLEN - 1:,} bytes: put it in a script file and run that"
        )
    total = command + _WRAPPER_OVERHEAD
    # Bytes as execve sees them; the kernel's own environment's sizes are read once per
    # change of it (this runs at every start).
    merged = job_environment(spec.env)
    if merged is None:
        snapshot = _current_snapshot()
        largest, name = snapshot.largest
        total += snapshot.size
    else:
        entries = [(os.fsencode(key), os.fsencode(value)) for key, value in merged.items()]
        largest, name = max(
            ((len(key) + len(value) + 2, key) for key, value in entries), default=(0, b"")
        )
        total += sum(len(key) + len(value) + 10 for key, value in entries)
    if largest > MAX_ARG_STRLEN:
        raise ValueError(
            f"the environment variable {os.fsdecode(name)} is {largest - 2:,} bytes; this "
            f"system passes at most {MAX_ARG_STRLEN - 2:,}: put the value in a file instead"
        )
    arg_max = os.sysconf("SC_ARG_MAX")
    if arg_max > 0 and total > arg_max:
        raise ValueError(
            f"the command and its environment take {total:,} bytes; this system starts "
            f"programs with at most {arg_max:,}: put the command in a script file, or "
            "pass less environment"
        )


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
