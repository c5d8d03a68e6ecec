"""The local backend: a job is a process group on this machine, led by its job script.

``LocalExecutor.launch`` makes the job's cgroup where the machine gives one
(``cgroup_layout.py``, ``cgroups.py``), then has the kernel's spawner (``spawner.py``,
``spawner_client.py``) start the job's leader in a new session with the job's log as its
stdout and stderr (where no spawner can run: the wrapper, ``wrapper.py``); ``attach``
finds a running job again from its stored reference (the leader's pid and start time, the
process group, the status file, the cgroup, the spawner); ``probe`` reads how a job
nobody watched ended. The running job itself is a ``LocalExecution`` (``execution.py``).
"""

from __future__ import annotations

import contextlib
import logging
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
from .leaders import SPAWNER_KILLED, FollowedLeader, GoneLeader, WrapperChild
from .procinfo import ProcessGroups, group_remains, group_usage
from .shell import check_exec_size, direct_start, job_argv, job_environment, kernel_environment
from .spawner_client import Spawner, SpawnerUnavailable
from .status_file import (
    await_status,
    prepare_status_file,
    read_status_file,
    remove_status_files,
    spawner_of,
    status_written_at,
)
from .wrapper import spawn

_log = logging.getLogger("jobmagic")
#: Whether local jobs are started by a spawner (``auto``) or each by a wrapper (``off``).
_SPAWNER_VARIABLE = "JOBMAGIC_SPAWNER"


class LocalExecutor:
    """Runs jobs as process groups on this machine.

    Parameters
    ----------
    home:
        The job home; the wrappers' status files go to ``<home>/status/`` (0700).
    cgroups:
        Where jobs get cgroups: ``auto``, ``v2``, ``v1`` or ``off`` (see
        ``cgroup_layout.detect``); None reads ``JOBMAGIC_CGROUPS``.
    spawner:
        Whether jobs are started by a spawner process (True), or each under a wrapper
        the kernel spawns itself (False: slower; see ``wrapper.py``); None reads
        ``JOBMAGIC_SPAWNER`` (``auto``, the default, or ``off``).
    """

    name = "local"
    pooled = True

    def __init__(self, home: Path, cgroups: str | None = None, spawner: bool | None = None) -> None:
        try:
            self.status_dir = private_dir(home / "status")
        except UnsafePath as exc:
            raise StoreError(f"cannot use the job home: {exc}") from None
        # Shared by this executor's executions: exits that arrive together (stop_all)
        # share one scan of /proc.
        self._groups = ProcessGroups()
        self.cgroups, self._why_no_cgroups = detect(cgroups)
        if spawner is None:
            spawner = os.environ.get(_SPAWNER_VARIABLE, "auto").strip().lower() != "off"
        # Started with the first job (a server that only follows jobs never starts one).
        self._spawner: Spawner | None = Spawner() if spawner else None
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
        """Where the exit status of the job logging to ``log_path`` is written.

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
            log_fd = create_private_file(log_path)
        except OSError as exc:
            remove_status_files(status_path)
            if cgroup is not None:
                cgroup.remove()
            raise LaunchError(
                f"cannot create the job's files in {log_path.parent}: {exc.strerror or exc}"
            ) from None
        try:
            return self._start(
                spec,
                log_path,
                log_fd,
                str(status_path),
                cgroup=cgroup,
                containment=containment,
                address_space=address_space,
            )
        except OSError as exc:
            remove_status_files(status_path)
            if cgroup is not None:
                cgroup.remove()
            raise LaunchError(f"could not start: {exc.strerror or exc}") from None
        finally:
            os.close(log_fd)

    def _start(
        self,
        spec: JobSpec,
        log_path: Path,
        log_fd: int,
        status_path: str,
        *,
        cgroup: JobCgroup | None,
        containment: str,
        address_space: int | None,
    ) -> LocalExecution:
        """Start the job's leader: by the spawner, or (where there is none) the wrapper."""
        procs = cgroup.procs_files if cgroup is not None else None
        cwd = spec.cwd or _working_directory()
        if self._spawner is not None and cwd is not None:
            env = job_environment(spec.env) or kernel_environment()
            try:
                leader, spawner = self._spawner.spawn(
                    job_argv(spec.command, spec.shell, spec.pty, procs, address_space),
                    env=env,
                    extra_env={"JOBMAGIC_JOB": os.path.basename(status_path)[: -len(".status")]},
                    cwd=cwd,
                    status_path=status_path,
                    log_fd=log_fd,
                    direct=direct_start(spec, cgroup, address_space),
                )
            except SpawnerUnavailable as exc:
                _log.warning("jobmagic cannot start its spawner (%s): jobs start slower", exc)
                self._spawner = None
            else:
                return LocalExecution(
                    pid=leader.pid,
                    start=leader.start,
                    status_path=status_path,
                    log_path=log_path,
                    groups=self._groups,
                    leader=leader,
                    spawner=spawner,
                    cgroup=cgroup,
                    containment=containment,
                )
        prepare_status_file(Path(status_path))  # the wrapper's `>` keeps its mode: 0600
        popen = spawn(
            spec.command,
            log_fd=log_fd,
            status_path=status_path,
            shell=spec.shell,
            cwd=spec.cwd,
            env=spec.env,
            pty=spec.pty,
            cgroup_procs=procs,
            address_space_kib=address_space,
        )
        return LocalExecution(
            pid=popen.pid,
            start=process_start_time(popen.pid),
            status_path=status_path,
            log_path=log_path,
            groups=self._groups,
            leader=WrapperChild(popen, status_path),
            cgroup=cgroup,
            containment=containment,
        )

    def attach(self, ref: Mapping[str, Any] | None) -> LocalExecution | None:
        """Follow a job this process did not start (another kernel's), if it still runs."""
        if ref is None:
            return None
        pid, start = ref.get("pid"), ref.get("start")
        status_path = str(ref.get("status", ""))
        spawner = spawner_of(ref)
        pidfd = open_pidfd(pid, start)
        if pidfd is None and (spawner is not None or not _wrapper_killed(ref)):
            return None
        assert pid is not None
        return LocalExecution(
            pid=pid,
            start=start,
            status_path=status_path,
            log_path=None,
            groups=self._groups,
            leader=GoneLeader() if pidfd is None else FollowedLeader(pidfd, status_path, spawner),
            spawner=list(spawner) if spawner is not None else None,
            cgroup=JobCgroup.from_ref(ref.get("cgroup")),
        )

    def probe(self, ref: Mapping[str, Any] | None) -> Outcome | None:
        """The exit status written for the job, once its leader is gone; None while it runs.

        A spawner writes the status just after the leader's exit: while it lives and has
        not, this waits for it (up to ``status_file.STATUS_WAIT`` seconds, then None).
        """
        if ref is None:
            return Outcome(None)
        spawner = spawner_of(ref)
        if same_process(ref.get("pid"), ref.get("start")) or (
            spawner is None and _wrapper_killed(ref)
        ):
            return None
        status_path = str(ref.get("status", ""))
        cgroup = JobCgroup.from_ref(ref.get("cgroup"))
        exit_code = read_status_file(status_path) if status_path else None
        unknown = None
        if exit_code is None and status_path and spawner is not None:
            exit_code = await_status(status_path, spawner)
            if exit_code is None:
                if same_process(*spawner):
                    return None  # it owes the status still (stopped?): ask again later
                unknown = SPAWNER_KILLED
        usage = reason = None
        if cgroup is not None:
            usage = cgroup.totals()
            reason = limit_failure(cgroup, exit_code)
            cgroup.remove()
        if not status_path:
            return Outcome(None, reason=reason, usage=usage)
        return Outcome(
            exit_code,
            ended_at=status_written_at(status_path),
            reason=unknown or reason,
            usage=usage,
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

    def close(self) -> None:
        """Let the spawner go: it records the ends of the jobs it runs, then exits."""
        if self._spawner is not None:
            self._spawner.close()

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


def _working_directory() -> str | None:
    """The working directory a job without ``cwd`` runs in (ours); None if it was deleted.

    (The spawner cannot start a job in a directory it cannot name: the wrapper, which
    inherits ours, can.)
    """
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def _raise_open_file_limit() -> None:
    """Each running job holds a pidfd: lift the soft open-file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))
