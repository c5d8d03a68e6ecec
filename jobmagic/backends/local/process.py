"""The local backend: a job is a process group on this machine, led by the wrapper.

``LocalExecutor.launch`` spawns the wrapper (``wrapper.py``) in a new session with the
job's log as its stdout and stderr; ``attach`` finds a running job again from its stored
reference (the wrapper's pid and start time, the process group, the status file). An
execution waits for its leader's exit on a pidfd, on whatever reactor holds it.

Stopping the whole job: ``terminate`` leaves the stop marker and sends SIGTERM to the
process group; ``kill`` sends SIGKILL. When the leader exits during a stop, the rest of the
group keeps its grace period (a pidfd on each member); when the command ends by itself,
whatever it left in its group is killed: a job is done when it is done. Our own child is
not reaped before that, so its pid (the group id) cannot be reused by then; a job that is
not our child is signalled only after its start time was checked.
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

from jobmagic.core.files import create_private_file, private_dir
from jobmagic.core.outcome import Outcome
from jobmagic.core.process_identity import open_pidfd, process_start_time, same_process
from jobmagic.core.spec import JobSpec
from jobmagic.errors import LaunchError

from ..base import Callback, Cancellable, Reactor
from .procinfo import ProcessGroups, kill_leftovers, signal_job
from .wrapper import (
    diagnose,
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
        self.status_dir = private_dir(home / "status")
        # Shared by this executor's executions: exits that arrive together (stop_all)
        # share one scan of /proc.
        self._groups = ProcessGroups()
        _raise_open_file_limit()

    def status_path(self, job_id: int) -> Path:
        """Where the wrapper of job ``job_id`` writes its exit status."""
        return self.status_dir / f"{job_id}.status"

    def launch(self, job_id: int, spec: JobSpec, log_path: Path) -> LocalExecution:
        """Spawn the wrapper for ``spec``; see :meth:`jobmagic.backends.base.Executor.launch`."""
        if spec.cwd is not None and not os.path.isdir(spec.cwd):
            raise LaunchError(f"working directory not found: {spec.cwd}")
        status_path = self.status_path(job_id)
        try:
            prepare_status_file(status_path)
            log_fd = create_private_file(log_path)
        except OSError as exc:
            raise LaunchError(
                f"cannot create the job's files in {log_path.parent}: {exc.strerror}"
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
        if pidfd is None:
            return None
        assert pid is not None
        return LocalExecution(
            pid=pid,
            start=start,
            status_path=str(ref.get("status", "")),
            log_path=None,
            groups=self._groups,
            pidfd=pidfd,
        )

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """The exit status the wrapper wrote, once its process is gone; None while it runs."""
        if ref is None:
            return Outcome(None)
        if same_process(ref.get("pid"), ref.get("start")):
            return None
        status_path = str(ref.get("status", ""))
        if not status_path:
            return Outcome(None)
        return Outcome(read_status_file(status_path), ended_at=status_written_at(status_path))

    def discard(self, job_id: int, ref: Mapping[str, Any] | None) -> None:
        """Delete a removed job's status file and stop marker."""
        status = ref.get("status") if ref else None
        remove_status_files(status or self.status_path(job_id))


class LocalExecution:
    """One job's process group; see the module docstring. Thread-safe."""

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
        self._pidfd: int | None = pidfd if pidfd is not None else os.pidfd_open(pid)
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
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group."""
        with self._lock:
            if self._ended:
                return
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, sig)
        elif not signal_job(self._pid, self._start, self._pid, sig) and sig == signal.SIGKILL:
            # The leader is gone: what is left of its group, if the group is still its.
            kill_leftovers(self._pid, self._start, self._pid)

    def on_exit(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` from ``reactor`` once the whole job has ended."""
        with self._lock:
            if self._callback is not None or self._pidfd is None:
                raise RuntimeError("on_exit() was already called for this execution")
            self._reactor = reactor
            self._callback = callback
            self._leader_watch = reactor.watch_readable(self._pidfd, self._leader_exited)

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


def _raise_open_file_limit() -> None:
    """Each running job holds a pidfd: lift the soft open-file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))
