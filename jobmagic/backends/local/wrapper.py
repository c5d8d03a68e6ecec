"""The fallback where no spawner can run: a tiny ``/bin/sh`` wrapper around the job script.

Local jobs are started by the kernel's spawner (``spawner.py``), which records their
exit statuses. Where it cannot be used (it cannot be started, or the kernel's working
directory was deleted: the spawner could not start a job there), the kernel spawns this
wrapper instead. The wrapper is then the job's process group leader and the kernel's
direct child. It runs the job script (``shell.JOB_SCRIPT_BODY``) in a subshell, then
writes the subshell's exit status to the job's status file, so the status is on disk even
when no kernel is alive to reap the job. It catches SIGTERM, SIGINT and SIGHUP only to
outlive its command long enough to record it: a caught signal is reset to its default in
the command (unlike an ignored one), so the command sees them as usual.

Spawning goes through ``subprocess.Popen`` with no Python callback between fork and exec,
so CPython keeps its vfork fast path: a spawn costs about a millisecond however large the
kernel is.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from .shell import JOB_SCRIPT_BODY, SCRIPT_NAME, job_environment, script_arguments

# $1 status file, $2 (unused: it named a stop marker file), then the job script's seven
# arguments: $3 shell, $4 command, $5 how to run it, $6 the Python, $7 the pty relay, $8
# the job's cgroup.procs files, $9 an address-space limit in KiB (see shell.JOB_SCRIPT).
# The job's processes inherit JOBMAGIC_JOB=<id>-<store generation> (its status file's
# name): without a cgroup, it is how a stop finds those that left the process group.
# stdout and stderr arrive as one open log file. The wrapper keeps it on fd 3 for the
# command and points its own stdout and stderr at /dev/null, so its own notices ("Killed")
# never land in the job's byte-exact log. The command runs in a subshell of the wrapper (a
# fork: the cheapest way to get a child), which first checks the stop marker: `stop()`
# appends a line to the (empty) status file before it signals the group, so a stop that
# lands while the wrapper starts up is never swallowed by the wrapper's trap. The subshell
# joins the job's cgroup before anything else; the wrapper stays outside, so a kill of the
# whole cgroup leaves it alive to record the command's end.
WRAPPER = (
    """trap : TERM INT HUP
exec 3>&1 >/dev/null 2>&1
[ -n "${PYTHONUNBUFFERED+set}" ] || export PYTHONUNBUFFERED=1
_jm_status=$1 _jm_shell=$3 _jm_cmd=$4 _jm_mode=$5 _jm_python=$6 _jm_relay=$7
_jm_cgroup=$8 _jm_vmem=$9 _jm_job=${1##*/}
export JOBMAGIC_JOB="${_jm_job%.status}"
(
  exec >&3 2>&3 3>&-
  [ -s "$_jm_status" ] && exit 143
"""
    + JOB_SCRIPT_BODY
    + """)
_jm_st=$?
printf '%s\\n' "$_jm_st" > "$_jm_status"
exit "$_jm_st"
"""
)


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
            SCRIPT_NAME,
            status_path,
            "",
            *script_arguments(command, shell, pty, cgroup_procs, address_space_kib),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_fd,
        stderr=log_fd,
        cwd=cwd,
        env=job_environment(env),
        start_new_session=True,
        close_fds=True,
    )
