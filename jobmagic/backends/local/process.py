"""The local backend: a job is a process group on this machine, led by the wrapper.

``LocalExecutor.launch`` makes the job's cgroup where the machine gives one
(``cgroup_layout.py``, ``cgroups.py``), then spawns the wrapper (``wrapper.py``) in a new
session with the job's log as its stdout and stderr; ``attach`` finds a running job again
from its stored reference (the wrapper's pid and start time, the process group, the
status file, the cgroup); ``probe`` reads how a job nobody watched ended. The running job
itself is a ``LocalExecution`` (``execution.py``).
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobmagic.core.files import UnsafePath, create_private_file, private_dir
from jobmagic.core.limits import Limits, Usage
from jobmagic.core.outcome import Outcome
from jobmagic.core.process_identity import open_pidfd, process_start_time, same_process
from jobmagic.core.spec import JobSpec
from jobmagic.errors import LaunchError, StoreError

from .cgroup_layout import detect, refusal
from .cgroups import NAME_PREFIX, JobCgroup
from .execution import LocalExecution, limit_failure
from .procinfo import ProcessGroups, group_remains, group_usage
from .wrapper import (
    job_environment,
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
    cgroups:
        Where jobs get cgroups: ``auto``, ``v2``, ``v1`` or ``off`` (see
        ``cgroup_layout.detect``); None reads ``JOBMAGIC_CGROUPS``.
    """

    name = "local"
    pooled = True

    def __init__(self, home: Path, cgroups: str | None = None) -> None:
        try:
            self.status_dir = private_dir(home / "status")
        except UnsafePath as exc:
            raise StoreError(f"cannot use the job home: {exc}") from None
        # Shared by this executor's executions: exits that arrive together (stop_all)
        # share one scan of /proc.
        self._groups = ProcessGroups()
        self.cgroups, self._why_no_cgroups = detect(cgroups)
        _raise_open_file_limit()

    def prepared(self, spec: JobSpec) -> JobSpec:
        """``spec`` itself: a local job has no default to fill in."""
        return spec

    def check(self, spec: JobSpec) -> None:
        """Refuse what this machine cannot run: limits it cannot enforce, or E2BIG.

        Limits it cannot enforce are refused unless best effort will do; a command or
        environment larger than ``execve`` takes (``E2BIG``) always is.

        Checked before anything is recorded or spawned: the kernel would refuse it anyway,
        and only after copying the whole environment.
        """
        if spec.address is not None or spec.ship_cwd:
            raise ValueError("an address and --ship-cwd are for jobs on a cluster: add --on ray")
        refused = refusal(spec.limits, self.cgroups, self._why_no_cgroups)
        if refused is not None and not spec.best_effort:
            raise ValueError(refused)
        check_exec_size(spec)

    def containment(self, spec: JobSpec) -> tuple[Limits, int | None, str]:
        """How ``spec``'s job is held: enforced limits, ``ulimit -v`` KiB, description.

        The limits its cgroup enforces, an address-space limit (KiB) for ``ulimit -v``,
        and what its record says (``cgroup v1``; ``none``; and, with best effort, which
        limits were dropped or replaced).
        """
        limits = spec.limits
        layout = self.cgroups
        if layout is None:
            enforced = Limits()
        else:
            enforced = Limits(
                limits.memory if layout.can_enforce("memory") else None,
                limits.cpus if layout.can_enforce("cpus") else None,
                limits.pids if layout.can_enforce("pids") else None,
            )
        notes = []
        address_space = None
        if limits.memory is not None and enforced.memory is None:
            address_space = max(1, limits.memory // 1024)
            notes.append("memory as a per-process address-space limit (ulimit -v)")
        if limits.cpus is not None and enforced.cpus is None:
            notes.append("cpus dropped (needs the cpu controller)")
        if limits.pids is not None and enforced.pids is None:
            notes.append("pids dropped (needs the pids controller)")
        name = layout.name if layout is not None else "none"
        return (
            enforced,
            address_space,
            name + (f"; best effort: {', '.join(notes)}" if notes else ""),
        )

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
        # Again: a queued job may start in another process than the one that checked it.
        # (Not the exec size: that check walks the environment, and spawn says E2BIG.)
        refused = refusal(spec.limits, self.cgroups, self._why_no_cgroups)
        if refused is not None and not spec.best_effort:
            raise LaunchError(refused)
        enforced, address_space, containment = self.containment(spec)
        status_path = self.status_path(log_path)
        cgroup = None
        if self.cgroups is not None:
            try:
                cgroup = self.cgroups.create(NAME_PREFIX + log_path.stem, enforced)
            except OSError as exc:
                raise LaunchError(
                    f"cannot set up the job's {self.cgroups.name}: {exc.strerror or exc}"
                    + (f" ({exc.filename})" if exc.filename else "")
                ) from None
        try:
            prepare_status_file(status_path)
            log_fd = create_private_file(log_path)
        except OSError as exc:
            remove_status_files(status_path)
            if cgroup is not None:
                cgroup.remove()
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
                cgroup_procs=cgroup.procs_files if cgroup is not None else None,
                address_space_kib=address_space,
            )
        except OSError as exc:
            remove_status_files(status_path)
            if cgroup is not None:
                cgroup.remove()
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
            cgroup=cgroup,
            containment=containment,
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
            cgroup=JobCgroup.from_ref(ref.get("cgroup")),
        )

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """The exit status the wrapper wrote, once its process is gone; None while it runs."""
        if ref is None:
            return Outcome(None)
        if same_process(ref.get("pid"), ref.get("start")) or _wrapper_killed(ref):
            return None
        status_path = str(ref.get("status", ""))
        cgroup = JobCgroup.from_ref(ref.get("cgroup"))
        exit_code = read_status_file(status_path) if status_path else None
        usage = reason = None
        if cgroup is not None:
            usage = cgroup.totals()
            reason = limit_failure(cgroup, exit_code)
            cgroup.remove()
        if not status_path:
            return Outcome(None, reason=reason, usage=usage)
        return Outcome(
            exit_code, ended_at=status_written_at(status_path), reason=reason, usage=usage
        )

    def usage(self, ref: Mapping[str, Any] | None) -> Usage | None:
        """What the running job of ``ref`` uses now (no CPU rate); None once it has ended.

        From its cgroup where it has one, else from ``/proc`` for its process group's
        live members (a process that left the group is not counted).
        """
        if ref is None:
            return None
        cgroup = JobCgroup.from_ref(ref.get("cgroup"))
        if cgroup is not None:
            return cgroup.usage() if cgroup.members() else None
        if not same_process(ref.get("pid"), ref.get("start")):
            return None
        return group_usage(self._groups, ref.get("pid"))

    def discard(self, job_id: int, ref: Mapping[str, Any] | None) -> None:  # noqa: ARG002 - the protocol's; the ref names the files
        """Delete a removed job's status file, stop marker and (empty) cgroup."""
        status = ref.get("status") if ref else None
        if status:
            remove_status_files(status)
        cgroup = JobCgroup.from_ref(ref.get("cgroup")) if ref else None
        if cgroup is not None and not cgroup.members():
            with contextlib.suppress(OSError):
                cgroup.remove()


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
    cgroup = JobCgroup.from_ref(ref.get("cgroup"))
    if cgroup is not None:
        return bool(cgroup.members())
    return group_remains(ref.get("pid"), ref.get("start"), ref.get("pgid"))


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
    total = command + _WRAPPER_OVERHEAD
    # Bytes as execve sees them; the kernel's own environment as bytes (os.environb),
    # which needs no encoding: this runs at every start.
    merged = job_environment(spec.env)
    environ = (
        {os.fsencode(key): os.fsencode(value) for key, value in merged.items()}
        if merged is not None
        else os.environb
    )
    for key, value in environ.items():
        size = len(key) + len(value) + 2
        if size > MAX_ARG_STRLEN:
            raise ValueError(
                f"the environment variable {os.fsdecode(key)} is {size - 2:,} bytes; this "
                f"system passes at most {MAX_ARG_STRLEN - 2:,}: put the value in a file instead"
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
