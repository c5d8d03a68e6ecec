"""The local backend: a job is a process group on this machine, led by the wrapper.

``LocalExecutor.launch`` spawns the wrapper (``wrapper.py``) in a new session with the
job's log as its stdout and stderr; ``attach`` finds a running job again from its stored
reference (the wrapper's pid and start time, the process group, the status file). An
execution waits for its leader's exit on a pidfd, on whatever reactor holds it.

Stopping the whole job: ``terminate`` leaves the stop marker and sends SIGCONT (a paused
job must run to hear it), then SIGTERM to the process group; ``kill`` sends SIGKILL.
``pause`` and ``resume`` send SIGSTOP and SIGCONT to the group. When the leader exits
during a stop, the rest of the group keeps its grace period (a pidfd on each member);
when the command ends by itself, whatever it left in its group is killed: a job is done
when it is done. Our own child is not reaped before that, so its pid (the group id)
cannot be reused by then; a job that is not our child is signalled only after its start
time was checked.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobmagic.core.files import UnsafePath, create_private_file, private_dir
from jobmagic.core.outcome import Outcome
from jobmagic.core.process_identity import open_pidfd, process_start_time, same_process
from jobmagic.core.spec import JobSpec
from jobmagic.errors import LaunchError, StoreError

from ..base import Callback, Cancellable, Reactor
from .procinfo import ProcessGroups, group_remains, kill_leftovers, signal_job, signal_leftovers
from .wrapper import (
    diagnose,
    job_environment,
    leave_stop_marker,
    prepare_status_file,
    read_status_file,
    remove_status_files,
    spawn,
    status_written_at,
)


class LocalExecutor:
    """Runs jobs as process groups on this machine.

    Parameters
    ----------
    home:
        The job home; the wrappers' status files go to ``<home>/status/`` (0700).
    """

    name = "local"

    def __init__(self, home: Path) -> None:
        try:
            self.status_dir = private_dir(home / "status")
        except UnsafePath as exc:
            raise StoreError(f"cannot use the job home: {exc}") from None
        # Shared by this executor's executions: exits that arrive together (stop_all)
        # share one scan of /proc.
        self._groups = ProcessGroups()
        _raise_open_file_limit()

    def check(self, spec: JobSpec) -> None:
        """Refuse a command or environment larger than ``execve`` takes (``E2BIG``).

        Checked before anything is recorded or spawned: the kernel would refuse it anyway,
        and only after copying the whole environment.
        """
        check_exec_size(spec)

    def status_path(self, log_path: Path) -> Path:
        """Where the wrapper of the job logging to ``log_path`` writes its exit status.

        Named after the log (``<id>-<store generation>``), so that a store started afresh
        never shares a status file with an earlier store's job.
        """
        return self.status_dir / f"{log_path.stem}.status"

    def launch(self, job_id: int, spec: JobSpec, log_path: Path) -> LocalExecution:  # noqa: ARG002 - the protocol's; files are named after the log
        """Spawn the wrapper for ``spec``; see :meth:`jobmagic.backends.base.Executor.launch`."""
        if spec.cwd is not None and not os.path.isdir(spec.cwd):
            raise LaunchError(f"working directory not found: {spec.cwd}")
        status_path = self.status_path(log_path)
        try:
            prepare_status_file(status_path)
            log_fd = create_private_file(log_path)
        except OSError as exc:
            remove_status_files(status_path)
            raise LaunchError(
                f"cannot create the job's files in {log_path.parent}: {exc.strerror or exc}"
            ) from None
        try:
            popen = spawn(
                spec.command,
                log_fd=log_fd,
                status_path=str(status_path),
                shell=spec.shell,
                cwd=spec.cwd,
                env=spec.env,
                pty=spec.pty,
            )
        except OSError as exc:
            remove_status_files(status_path)
            raise LaunchError(f"could not start: {exc.strerror or exc}") from None
        finally:
            os.close(log_fd)
        return LocalExecution(
            pid=popen.pid,
            start=process_start_time(popen.pid),
            status_path=str(status_path),
            log_path=log_path,
            groups=self._groups,
            popen=popen,
        )

    def attach(self, ref: Mapping[str, Any] | None) -> LocalExecution | None:
        """Follow a job this process did not start (another kernel's), if it still runs."""
        if ref is None:
            return None
        pid, start = ref.get("pid"), ref.get("start")
        pidfd = open_pidfd(pid, start)
        if pidfd is None and not _wrapper_killed(ref):
            return None
        assert pid is not None
        return LocalExecution(
            pid=pid,
            start=start,
            status_path=str(ref.get("status", "")),
            log_path=None,
            groups=self._groups,
            pidfd=pidfd,
            leaderless=pidfd is None,
        )

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """The exit status the wrapper wrote, once its process is gone; None while it runs."""
        if ref is None:
            return Outcome(None)
        if same_process(ref.get("pid"), ref.get("start")) or _wrapper_killed(ref):
            return None
        status_path = str(ref.get("status", ""))
        if not status_path:
            return Outcome(None)
        return Outcome(read_status_file(status_path), ended_at=status_written_at(status_path))

    def discard(self, job_id: int, ref: Mapping[str, Any] | None) -> None:  # noqa: ARG002 - the protocol's; the ref names the files
        """Delete a removed job's status file and stop marker."""
        status = ref.get("status") if ref else None
        if status:
            remove_status_files(status)


def _wrapper_killed(ref: Mapping[str, Any]) -> bool:
    """True when the job's wrapper is gone without a status but its command runs on.

    (Someone SIGKILLed the wrapper while no kernel watched.) The job is then its process
    group's surviving members: it still runs, and can be stopped.
    """
    if same_process(ref.get("pid"), ref.get("start")):
        return False
    status = ref.get("status")
    if status and read_status_file(status) is not None:
        return False
    return group_remains(ref.get("pid"), ref.get("start"), ref.get("pgid"))


#: Why a job whose wrapper was killed has no exit status.
WRAPPER_KILLED = "its jobmagic wrapper was killed, so its exit status is unknown"


class LocalExecution:
    """One job's process group; see the module docstring. Thread-safe.

    ``leaderless``: the wrapper was killed while its command runs on (see
    ``_wrapper_killed``); the job ends when the last member of its group does.
    """

    def __init__(
        self,
        *,
        pid: int,
        start: int | None,
        status_path: str,
        log_path: Path | None,
        groups: ProcessGroups,
        popen: subprocess.Popen[bytes] | None = None,
        pidfd: int | None = None,
        leaderless: bool = False,
    ) -> None:
        self._pid = pid
        self._start = start
        self._status_path = status_path
        self._log_path = log_path
        self._groups = groups
        # Our own child, not reaped until outcome(): while it is unreaped its pid, the
        # group id, stays ours and the group may be signalled without checks.
        self._popen = popen
        # Guards every field below: terminate() and kill() come from any thread, the
        # exit handling runs on the reactor's.
        self._lock = threading.Lock()
        self._leaderless = leaderless
        self._pidfd: int | None = pidfd
        if pidfd is None and not leaderless:
            self._pidfd = os.pidfd_open(pid)
        self._watching = False  # on_exit() was called
        self._terminated = False
        self._ended = False  # the whole job ended (on_exit's callback ran or runs)
        self._reactor: Reactor | None = None
        self._callback: Callback | None = None
        self._leader_watch: Cancellable | None = None
        self._draining: dict[int, Cancellable] = {}  # member pidfd -> its watch

    @property
    def ref(self) -> dict[str, Any]:
        """``{"pid", "start", "pgid", "status"}``: the wrapper, its group, its status file."""
        return {
            "pid": self._pid,
            "start": self._start,
            "pgid": self._pid,
            "status": self._status_path,
        }

    @property
    def pid(self) -> int:
        """The wrapper's pid, which is also the job's process group id."""
        return self._pid

    def terminate(self) -> None:
        """Leave the stop marker, then SIGTERM the whole process group."""
        with self._lock:
            self._terminated = True
            if self._ended:
                return
        # The marker first: a wrapper still starting up checks it before the command.
        leave_stop_marker(self._status_path)
        self._signal(signal.SIGCONT)  # a paused job's processes must run to shut down
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP the whole process group (the wrapper, the command, its children)."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, sig)
        elif not signal_job(self._pid, self._start, self._pid, sig):
            # The leader is gone: what is left of its group, if the group is still its.
            signal_leftovers(self._pid, self._start, self._pid, sig)

    def on_exit(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` from ``reactor`` once the whole job has ended."""
        with self._lock:
            if self._watching or (self._pidfd is None and not self._leaderless):
                raise RuntimeError("on_exit() was already called for this execution")
            self._watching = True
            self._reactor = reactor
            self._callback = callback
            if self._pidfd is not None:
                self._leader_watch = reactor.watch_readable(self._pidfd, self._leader_exited)
            else:
                # No leader to wait for: its group's members, watched from the reactor.
                self._leader_watch = reactor.call_later(0, self._members_left)

    def _members_left(self) -> None:
        if not self._watch_members():
            self._complete()

    def _leader_exited(self) -> None:
        # The command's shell may die of SIGTERM while the program it ran is still shutting
        # down gracefully: during a stop the rest of the group keeps its grace period (the
        # stop's SIGKILL timer is still armed).
        with self._lock:
            stopping = self._terminated
        if stopping and self._watch_members():
            return
        self._complete()

    def _watch_members(self) -> bool:
        """Watch the group's live processes (reactor thread); True while any is left."""
        reactor = self._reactor
        assert reactor is not None
        if self._popen is None and not self._group_is_ours():
            return False
        members = self._groups.members(self._pid, reactor.iteration, exclude=self._pid)
        for member in members:
            try:
                pidfd = os.pidfd_open(member)
            except ProcessLookupError:
                continue
            watch = reactor.watch_readable(pidfd, functools.partial(self._member_exited, pidfd))
            with self._lock:
                self._draining[pidfd] = watch
        with self._lock:
            return bool(self._draining)

    def _group_is_ours(self) -> bool:
        """For a job that is not our child: whether its group id was not taken over."""
        leader_start = process_start_time(self._pid)
        return leader_start is None or leader_start == self._start

    def _member_exited(self, pidfd: int) -> None:
        with self._lock:
            if self._draining.pop(pidfd, None) is None:
                return  # close() released it meanwhile
            more = bool(self._draining)
        os.close(pidfd)
        if not more and not self._watch_members():
            self._complete()

    def _complete(self) -> None:
        """Kill what the command left in its group, then tell the holder it ended."""
        if self._popen is not None:
            # Before the leader is reaped: until then the group id cannot be reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        else:
            kill_leftovers(self._pid, self._start, self._pid)
        with self._lock:
            self._ended = True
            callback = self._callback
        if callback is not None:
            callback()

    def outcome(self) -> Outcome:
        """Reap the wrapper, read the status it wrote, explain exits 126 and 127."""
        returncode = self._popen.wait() if self._popen is not None else None
        self.close()
        exit_code = read_status_file(self._status_path) if self._status_path else None
        if exit_code is None:
            exit_code = returncode
        reason = diagnose(exit_code, self._log_path) if self._log_path is not None else None
        if exit_code is None and self._leaderless:
            reason = WRAPPER_KILLED
        return Outcome(exit_code, reason=reason)

    def close(self) -> None:
        """Release the pidfds (the job, if it still runs, goes on)."""
        with self._lock:
            pidfd, self._pidfd = self._pidfd, None
            watches = [self._leader_watch, *self._draining.values()]
            draining, self._draining = list(self._draining), {}
            self._leader_watch = None
        for watch in watches:
            if watch is not None:
                watch.cancel()
        for fd in [pidfd, *draining]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


#: Linux's limit on one argument or environment string, terminating NUL included.
MAX_ARG_STRLEN = 32 * (os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096)
# What the wrapper adds around the command, generously (its script, paths, words).
_WRAPPER_OVERHEAD = 8192


def check_exec_size(spec: JobSpec) -> None:
    """Raise ValueError when ``spec`` is larger than ``execve`` can pass to the wrapper."""
    command = len(os.fsencode(spec.command)) + 1
    if command > MAX_ARG_STRLEN:
        raise ValueError(
            f"the command is {command - 1:,} bytes; this system runs commands of at most "
            f"{MAX_ARG_STRLEN - 1:,} bytes: put it in a script file and run that"
        )
    environ = job_environment(spec.env) or os.environ
    total = command + _WRAPPER_OVERHEAD
    for key, value in environ.items():
        size = len(os.fsencode(key)) + len(os.fsencode(value)) + 2
        if size > MAX_ARG_STRLEN:
            raise ValueError(
                f"the environment variable {key} is {size - 2:,} bytes; this system passes "
                f"at most {MAX_ARG_STRLEN - 2:,}: put the value in a file instead"
            )
        total += size + 8  # and its pointer
    arg_max = os.sysconf("SC_ARG_MAX")
    if arg_max > 0 and total > arg_max:
        raise ValueError(
            f"the command and its environment take {total:,} bytes; this system starts "
            f"programs with at most {arg_max:,}: put the command in a script file, or "
            "pass less environment"
        )


def _raise_open_file_limit() -> None:
    """Each running job holds a pidfd: lift the soft open-file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))
