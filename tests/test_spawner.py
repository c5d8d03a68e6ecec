"""The spawner (``jobmagic/backends/local/spawner.py``) with real processes: its own failure,
its kernel's death, its end, what it shares with nobody, and the wrapper where it cannot run.

Jobs that must be running when the test acts print a line and block on a FIFO; the test
reads their output until it sees that line, and lets them go on by writing to the FIFO
(handshakes, never a sleep). Processes are waited for on pidfds.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import alive, read_until, wait_exit
from helpers import python_cmd, wait_until

from jobmagic import JobState, WorkerService
from jobmagic.backends.local import spawner_client
from jobmagic.backends.local.leaders import SPAWNER_KILLED
from jobmagic.backends.local.process import LocalExecutor
from jobmagic.backends.local.status_file import await_status
from jobmagic.core.process_identity import process_start_time

pytestmark = pytest.mark.timeout(60)

READY = re.compile(rb"ready (\d+)\n")


def waiting_job(fifo: Path, code: int) -> str:
    """A job that prints ``ready PID``, waits for a line on ``fifo``, then exits ``code``."""
    return python_cmd(
        "import os, sys; print('ready', os.getpid(), flush=True);"
        f" open({str(fifo)!r}).read(); sys.exit({code})"
    )


def say_go(fifo: Path) -> None:
    """Let a ``waiting_job`` go on (blocks until it opens its end)."""
    with fifo.open("w") as f:
        f.write("go\n")


def spawner_of(service: WorkerService, job_id: int) -> int:
    """The pid of the spawner that started job ``job_id`` (from its record)."""
    record = service.store.get(job_id)
    assert record is not None
    assert record.backend_ref is not None
    pid: int = record.backend_ref["spawner"][0]
    return pid


@pytest.fixture
def svc(jobmagic_home: Path) -> Iterator[WorkerService]:
    service = WorkerService(home=jobmagic_home, stop_timeout=5.0)
    yield service
    service.shutdown()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "go"
    os.mkfifo(path)
    return path


# -- the spawner killed ----------------------------------------------------------------------
def test_a_killed_spawners_jobs_run_on_and_end_with_their_status_honestly_unknown(
    svc: WorkerService, fifo: Path
) -> None:
    job = svc.start(waiting_job(fifo, 7))
    program = int(read_until(job, READY).group(1))
    spawner = spawner_of(svc, job.id or 0)
    os.kill(spawner, signal.SIGKILL)
    wait_exit(spawner)
    assert alive(program), "the job outlives its spawner"
    assert job.state is JobState.RUNNING

    say_go(fifo)  # it exits 7, but nobody is its parent to hear that any more
    assert job.wait(20) is None
    assert (job.state, job.exit_code, job.error) == (JobState.FAILED, None, SPAWNER_KILLED)
    record = svc.store.get(job.id or 0)
    assert record is not None
    assert (record.state, record.exit_code, record.error) == (JobState.FAILED, None, SPAWNER_KILLED)


def test_after_its_spawner_was_killed_a_running_job_still_stops(svc: WorkerService) -> None:
    job = svc.start(python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()"))
    program = int(read_until(job, READY).group(1))
    os.kill(spawner_of(svc, job.id or 0), signal.SIGKILL)
    job.stop(timeout=5)
    assert job.state is JobState.STOPPED
    assert not alive(program)


def test_the_next_job_gets_a_new_spawner_and_the_killed_one_is_reaped(
    svc: WorkerService,
) -> None:
    assert svc.start("exit 3").wait(20) == 3
    first = spawner_of(svc, 1)
    os.kill(first, signal.SIGKILL)
    wait_exit(first)
    job = svc.start("echo after; exit 4")
    assert job.wait(20) == 4
    assert job.output() == b"after\n"
    second = spawner_of(svc, job.id or 0)
    assert second != first
    assert process_start_time(first) is None, "the killed spawner was left a zombie"
    assert alive(second)


def test_a_spawner_killed_while_its_kernel_is_dead_leaves_the_job_running_and_stoppable(
    svc: WorkerService, jobmagic_home: Path, fifo: Path
) -> None:
    other = DyingKernel(jobmagic_home, waiting_job(fifo, 7))
    os.kill(other.spawner, signal.SIGKILL)
    wait_exit(other.spawner)
    job = svc.get(other.job_id)
    assert job.state is JobState.RUNNING
    assert job.orphaned
    assert alive(other.program)
    adopted = svc.adopt(other.job_id)
    say_go(fifo)
    assert adopted.wait(20) is None
    assert (adopted.state, adopted.error) == (JobState.FAILED, SPAWNER_KILLED)


# -- the kernel dies -------------------------------------------------------------------------
class DyingKernel:
    """Another Python process that starts a job, says so, and kills itself with SIGKILL."""

    def __init__(self, home: Path, command: str) -> None:
        code = (
            "import json, os, re, signal\nfrom jobmagic import WorkerService\n"
            "svc = WorkerService()\n"
            f"w = svc.start({command!r})\n"
            "seen = b''\n"
            "for chunk in w.stream():\n"
            "    seen += chunk\n"
            "    if re.search(rb'ready \\d+\\n', seen): break\n"
            "spawner = svc.store.get(w.id).backend_ref['spawner'][0]\n"
            "program = int(seen.split()[1])\n"
            "print(json.dumps([w.id, spawner, program]), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            env={**os.environ, "JOBMAGIC_HOME": str(home)},
            text=True,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the other kernel did not start its job"
        self.job_id, self.spawner, self.program = json.loads(process.stdout.readline())
        assert process.wait(10) == -signal.SIGKILL
        process.stdout.close()


def test_a_dead_kernels_spawner_records_its_jobs_end_then_exits(
    jobmagic_home: Path, fifo: Path
) -> None:
    other = DyingKernel(jobmagic_home, waiting_job(fifo, 7))
    assert alive(other.spawner), "the spawner outlives its kernel"
    assert alive(other.program)
    say_go(fifo)
    wait_exit(other.spawner)  # its last job has ended and its kernel is gone: it exits
    assert not alive(other.program)
    # Whoever looks next finds the true exit code (the spawner wrote it down).
    service = WorkerService(home=jobmagic_home)
    try:
        job = service.get(other.job_id)
        assert (job.state, job.exit_code, job.error) == (JobState.FAILED, 7, "exit code 7")
    finally:
        service.shutdown()


def test_a_dead_kernels_job_found_just_after_its_end_has_its_status(
    jobmagic_home: Path, fifo: Path
) -> None:
    other = DyingKernel(jobmagic_home, waiting_job(fifo, 5))
    say_go(fifo)
    wait_exit(other.program)  # it has exited; its spawner may not have written yet
    service = WorkerService(home=jobmagic_home)  # reconciles: waits for the status
    try:
        assert service.get(other.job_id).exit_code == 5
    finally:
        service.shutdown()
    wait_exit(other.spawner)


def test_a_spawner_exits_when_its_kernel_shuts_down(svc: WorkerService, fifo: Path) -> None:
    assert svc.start("true").wait(20) == 0
    spawner = spawner_of(svc, 1)
    kept = svc.start(waiting_job(fifo, 0), detach=True)
    read_until(kept, READY)
    record = svc.store.get(kept.id or 0)
    assert record is not None
    svc.shutdown()
    assert alive(spawner), "a detached job keeps its spawner"
    say_go(fifo)
    wait_exit(spawner)  # its last job has ended, and its kernel has let it go
    # Its end is on disk for whoever looks next (and the look removes its cgroup).
    executor = LocalExecutor(svc.store.home)
    try:
        outcome = executor.probe(record.backend_ref)
    finally:
        executor.close()
    assert outcome is not None
    assert outcome.exit_code == 0


# -- what the spawner does for its jobs ------------------------------------------------------
def test_orphans_a_job_leaves_are_the_spawners_children_and_go_with_the_job(
    svc: WorkerService,
) -> None:
    job = svc.start("sh -c 'sleep 1000 & echo orphan $!'; echo ready 0; exec sleep 1000")
    orphan = int(read_until(job, re.compile(rb"orphan (\d+)\n")).group(1))
    read_until(job, READY)
    fields = Path(f"/proc/{orphan}/stat").read_bytes().rsplit(b")", 1)[1].split()
    assert int(fields[1]) == spawner_of(svc, job.id or 0), "reparented to the spawner"
    job.stop(timeout=5)
    assert job.state is JobState.STOPPED
    assert not alive(orphan)
    # Reaped by the spawner (nothing tells us when: /proc is looked at again).
    wait_until(lambda: process_start_time(orphan) is None, 10, message="orphan reaped")


def test_the_spawner_has_no_listening_socket_and_its_files_are_private(
    svc: WorkerService,
) -> None:
    job = svc.start("echo hi")
    assert job.wait(20) == 0
    spawner = spawner_of(svc, job.id or 0)
    targets = [os.readlink(f"/proc/{spawner}/fd/{fd}") for fd in os.listdir(f"/proc/{spawner}/fd")]
    sockets = {int(t[len("socket:[") : -1]) for t in targets if t.startswith("socket:[")}
    assert len(sockets) == 2, targets  # the two ends of its socket pairs
    assert all(t.startswith(("socket:[", "pipe:[", "/dev/null")) for t in targets), targets
    unix = _unix_sockets()
    for inode in sockets:
        path, listening = unix[inode]
        assert (path, listening) == ("", False), "a socket pair: no name, not listening"
    status_dir = svc.store.home / "status"
    assert stat.S_IMODE(status_dir.stat().st_mode) == 0o700
    status_file = status_dir / f"{job.log_path.stem}.status"
    # Written just after the spawner told the kernel: waited for as a reader would.
    assert await_status(str(status_file), (spawner, process_start_time(spawner) or 0)) == 0
    assert stat.S_IMODE(status_file.stat().st_mode) == 0o600
    assert status_file.read_text() == "0\n"


def _unix_sockets() -> dict[int, tuple[str, bool]]:
    """Every Unix socket: inode -> (its path, or "": none; whether it listens)."""
    found: dict[int, tuple[str, bool]] = {}
    listening_flag = 0x10000  # __SO_ACCEPTCON
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        flags, inode = int(fields[3], 16), int(fields[6])
        found[inode] = (fields[7] if len(fields) > 7 else "", bool(flags & listening_flag))
    return found


# -- where no spawner can run ------------------------------------------------------------------
def test_where_the_spawner_cannot_start_jobs_run_under_the_wrapper(
    jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(spawner_client, "SPAWNER", str(jobmagic_home / "no-such-spawner.py"))
    service = WorkerService(home=jobmagic_home)
    try:
        job = service.start("echo still runs; exit 6")
        assert job.wait(20) == 6
        assert job.output() == b"still runs\n"
        assert "jobmagic cannot start its spawner" in caplog.text
        ref: dict[str, Any] = service.store.get(job.id or 0).backend_ref  # type: ignore[union-attr]
        assert "spawner" not in ref
        assert Path(ref["status"]).read_text() == "6\n", "the wrapper wrote the status"
    finally:
        service.shutdown()


def test_jobmagic_spawner_off_runs_jobs_under_the_wrapper(
    jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMAGIC_SPAWNER", "off")
    service = WorkerService(home=jobmagic_home)
    try:
        job = service.start("exit 2")
        assert job.wait(20) == 2
        record = service.store.get(job.id or 0)
        assert record is not None
        assert record.backend_ref is not None
        assert "spawner" not in record.backend_ref
        assert os.getpgid(0) != record.backend_ref["pgid"]
    finally:
        service.shutdown()
