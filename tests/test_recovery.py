"""Jobs outlive their kernel: real kernels through jupyter_client, killed, restarted and shut
down, sharing one job home with the next kernel.

Each test drives kernels with small snippets that print one JSON line; a job that must be
running when the kernel dies has printed its first line, read by the kernel (a handshake).
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import is_zombie, wait_exit

from jobmagic import JobState, WorkerService
from jobmagic.core.process_identity import process_start_time
from jobmagic.store.job_store import JobStore

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie has exited)."""
    return process_start_time(pid) is not None and not is_zombie(pid)


class Kernel:
    """A real IPython kernel; ``run(code)`` returns what the code printed."""

    def __init__(self, km: Any) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.pid: int = self.json("import os, json; print(json.dumps(os.getpid()))")

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute ``code``; return its stdout; fail with the traceback on an error."""
        msg_id = self.kc.execute(code, allow_stdin=False)
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise TimeoutError(f"kernel did not finish {code!r} in {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("kernel error:\n" + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)

    def json(self, code: str, timeout: float = 60.0) -> Any:
        """Execute ``code`` that prints one JSON document; return it decoded."""
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])

    def crash(self) -> None:
        """``kill -9`` the kernel and reap it, as a dying kernel would be by its server."""
        self.kc.stop_channels()
        os.kill(self.pid, signal.SIGKILL)
        wait_exit(self.pid, 30)
        assert not self.km.is_alive()  # polls, and so reaps, the kernel process


@pytest.fixture
def start_kernel(
    jobmagic_home: Path, _private_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[Callable[..., Kernel]]:
    """Start kernels sharing this test's job home; all are shut down afterwards."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager(kernel_dirs=[str(_private_dirs["kernels"])])
    env = {**os.environ, "IPYTHONDIR": str(_private_dirs["ipython"])}
    kernels: list[Kernel] = []

    def start(**extra_env: str) -> Kernel:
        km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
        km.start_kernel(env={**env, **extra_env}, cwd=str(tmp_path))
        kernel = Kernel(km)
        kernels.append(kernel)
        return kernel

    yield start
    for kernel in kernels:
        kernel.kc.stop_channels()
        if kernel.km.is_alive():
            kernel.km.shutdown_kernel(now=True)
        kernel.km.cleanup_resources()


START_JOB = """
import json
from jobmagic import get_service
w = get_service().start({command!r}, detach={detach!r})
seen = b""
for chunk in w.stream():
    seen += chunk
    if b"\\n" in seen:
        break
print(json.dumps({{"id": w.id, "pid": w.pid, "first": seen.decode()}}))
"""


def start_job(kernel: Kernel, command: str, *, detach: bool = False) -> dict[str, Any]:
    """Start ``command`` in ``kernel``; return once it printed its first line."""
    info: dict[str, Any] = kernel.json(START_JOB.format(command=command, detach=detach))
    return info


def say_go(fifo: Path) -> None:
    """Open the job's FIFO (blocks until the job opens its end) and write "go"."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def record_of(home: Path, job_id: int) -> Any:
    store = JobStore(home)
    try:
        return store.get(job_id)
    finally:
        store.close()


# -- kill -9 of the kernel -----------------------------------------------------------------
ADOPT_AND_STOP = """
import json
from jobmagic import get_service
svc = get_service()
listed = {{w.id: w for w in svc.list(all=True)}}
view = listed[{job_id}]
before = {{"state": view.state.value, "orphaned": view.orphaned, "owned": view.owned}}
w = svc.adopt({job_id})
chunks = w.stream()
seen = b""
for chunk in chunks:
    seen += chunk
    if b"while no kernel\\n" in seen:
        break
w.stop(timeout=5)
seen += b"".join(chunks)
print(json.dumps({{"before": before, "output": seen.decode(), "state": w.state.value,
                  "owned": w.owned, "orphaned": w.orphaned}}))
"""


def test_job_of_a_killed_kernel_is_adopted_streamed_and_stopped(
    start_kernel: Callable[[], Kernel], jobmagic_home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    command = (
        f"echo 'before the crash'; read go < {shlex.quote(str(fifo))}; "
        "echo 'while no kernel'; exec sleep 1000"
    )
    first = start_kernel()
    job = start_job(first, command)
    assert job["first"] == "before the crash\n"
    first.crash()
    assert alive(job["pid"]), "the job outlives its kernel"
    say_go(fifo)  # the job writes to its log while no kernel is alive

    second = start_kernel()
    result = second.json(ADOPT_AND_STOP.format(job_id=job["id"]))
    assert result["before"] == {"state": "running", "orphaned": True, "owned": False}
    assert result["output"] == "before the crash\nwhile no kernel\n", "streamed from byte 0"
    assert result["state"] == "stopped"
    assert (result["owned"], result["orphaned"]) == (True, False)
    wait_exit(job["pid"], 10)
    record = record_of(jobmagic_home, job["id"])
    assert record.state is JobState.STOPPED
    assert record.owner_pid == second.pid


def test_job_that_ends_while_no_kernel_lives_shows_its_true_exit_code(
    start_kernel: Callable[[], Kernel], jobmagic_home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    first = start_kernel()
    job = start_job(first, f"echo started; read go < {shlex.quote(str(fifo))}; exit 7")
    first.crash()
    say_go(fifo)
    wait_exit(job["pid"], 10)  # it has ended; its spawner, which outlives the kernel, records it

    second = start_kernel()
    seen = second.json(
        "import json\nfrom jobmagic import get_service\n"
        f"w = get_service().get({job['id']})\n"
        "print(json.dumps([w.state.value, w.exit_code, w.error, w.orphaned]))"
    )
    assert seen == ["failed", 7, "exit code 7", False]
    record = record_of(jobmagic_home, job["id"])
    assert (record.state, record.exit_code) == (JobState.FAILED, 7)


def test_a_new_service_in_another_process_reconciles_an_ended_orphan(
    start_kernel: Callable[[], Kernel], jobmagic_home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    first = start_kernel()
    job = start_job(first, f"echo started; read go < {shlex.quote(str(fifo))}; exit 7")
    first.crash()
    say_go(fifo)
    wait_exit(job["pid"], 10)
    service = WorkerService()  # reconciles the store when it opens
    try:
        w = service.get(job["id"])
        assert (w.state, w.exit_code, w.error) == (JobState.FAILED, 7, "exit code 7")
    finally:
        service.shutdown()


# -- restart and shutdown ------------------------------------------------------------------
def test_detached_job_survives_a_kernel_restart_and_can_be_stopped(
    start_kernel: Callable[[], Kernel], jobmagic_home: Path
) -> None:
    kernel = start_kernel()
    detached = start_job(kernel, "echo up; exec sleep 1000", detach=True)
    attached = start_job(kernel, "echo up; exec sleep 1000")
    kernel.kc.stop_channels()
    kernel.km.restart_kernel(now=False)
    restarted = Kernel(kernel.km)
    kernel.kc = restarted.kc  # so that the fixture stops these channels
    assert alive(detached["pid"]), "a detached job outlives a restart"
    assert not alive(attached["pid"]), "an attached job is stopped with its kernel"
    assert record_of(jobmagic_home, attached["id"]).state is JobState.STOPPED

    result = restarted.json(
        "import json\nfrom jobmagic import get_service\n"
        f"w = get_service().adopt({detached['id']})\n"
        "w.stop(timeout=5)\n"
        "print(json.dumps([w.state.value, w.output().decode()]))"
    )
    assert result == ["stopped", "up\n"]
    assert not alive(detached["pid"])
    assert record_of(jobmagic_home, detached["id"]).state is JobState.STOPPED


# What a notebook's kernel (Jupyter sets JPY_SESSION_NAME) runs first.
LOAD = "%load_ext jobmagic"
START_NAMED = """
import json
w = %job start --name {name} {command}
for chunk in w.stream():
    break
print(json.dumps({{"id": w.id, "pid": w.pid}}))
"""
SLEEPS = "echo up; exec sleep 1000"


def test_a_restart_keeps_a_notebooks_jobs_and_its_next_kernel_reattaches_them(
    start_kernel: Callable[..., Kernel], jobmagic_home: Path
) -> None:
    kernel = start_kernel(JPY_SESSION_NAME="work/train.ipynb")
    assert kernel.run(LOAD) == ""  # nothing to re-attach yet
    job = kernel.json(START_NAMED.format(name="train", command=SLEEPS))
    kernel.kc.stop_channels()
    kernel.km.restart_kernel(now=False)  # Kernel > Restart Kernel
    restarted = Kernel(kernel.km)
    kernel.kc = restarted.kc  # so that the fixture stops these channels
    assert alive(job["pid"]), "a restart stopped the notebook's job"

    assert restarted.run(LOAD) == "re-attached 1 job from before the restart: train\n"
    shown = restarted.json(
        "import json\nfrom jobmagic import get_service\n"
        f"w = get_service().get({job['id']})\n"
        "print(json.dumps([w.owned, w.state.value]))"
    )
    assert shown == [True, "running"]
    assert (
        restarted.run(f"%job stop {job['id']}")
        == f'job {job["id"]} "train" stopped (killed by SIGTERM)\n'
    )
    assert not alive(job["pid"])


def test_only_a_kernel_of_the_same_notebook_reattaches_its_jobs(
    start_kernel: Callable[..., Kernel], jobmagic_home: Path
) -> None:
    first = start_kernel(JPY_SESSION_NAME="a.ipynb")
    first.run(LOAD)
    job = first.json(START_NAMED.format(name="long", command=SLEEPS))
    first.crash()
    other = start_kernel(JPY_SESSION_NAME="b.ipynb")
    assert other.run(LOAD) == ""
    assert record_of(jobmagic_home, job["id"]).orphaned
    # Its %job list says where the orphan is, and how to take it over.
    assert other.run("table = %job list\nprint(repr(table))") == (
        "No jobs in this kernel. Start one with %job start COMMAND.\n"
        "1 job of kernels that are gone is still queued or running: "
        "%job list --all shows them, %job adopt ID takes one over.\n"
    )
    again = start_kernel(JPY_SESSION_NAME="a.ipynb")
    assert again.run(LOAD) == "re-attached 1 job from before the restart: long\n"
    assert not record_of(jobmagic_home, job["id"]).orphaned
    again.run(f"%job stop {job['id']}")
    assert not alive(job["pid"])


def test_a_notebook_kernels_shutdown_still_stops_its_jobs(
    start_kernel: Callable[..., Kernel], jobmagic_home: Path
) -> None:
    kernel = start_kernel(JPY_SESSION_NAME="closed.ipynb")
    kernel.run(LOAD)
    job = kernel.json(START_NAMED.format(name="closed", command=SLEEPS))
    kernel.kc.stop_channels()
    kernel.km.shutdown_kernel(now=False)  # the notebook closed: not a restart
    assert not alive(job["pid"])
    record = record_of(jobmagic_home, job["id"])
    assert (record.state, record.stop_requested_by) == (JobState.STOPPED, "kernel")


def test_on_shutdown_keep_leaves_jobs_running_after_a_shutdown(
    start_kernel: Callable[..., Kernel], jobmagic_home: Path
) -> None:
    kernel = start_kernel(JPY_SESSION_NAME="keep.ipynb")
    kernel.run(LOAD + '\n%config JobMagics.on_shutdown = "keep"')
    job = kernel.json(START_NAMED.format(name="kept", command=SLEEPS))
    kernel.kc.stop_channels()
    kernel.km.shutdown_kernel(now=False)
    assert alive(job["pid"])
    assert record_of(jobmagic_home, job["id"]).orphaned
    # As a user would: another process stops it (its cgroup goes with it).
    successor = WorkerService(jobmagic_home)
    try:
        successor.adopt(job["id"]).stop(timeout=5)
    finally:
        successor.shutdown()
    wait_exit(job["pid"], 10)


def test_clean_kernel_shutdown_stops_its_jobs(
    start_kernel: Callable[[], Kernel], jobmagic_home: Path
) -> None:
    kernel = start_kernel()
    job = start_job(
        kernel,
        f"{shlex.quote(sys.executable)} -c 'import os, time; print(os.getpid()); time.sleep(1000)'",
    )
    program_pid = int(job["first"])
    assert alive(program_pid)
    kernel.kc.stop_channels()
    kernel.km.shutdown_kernel(now=False)
    assert not alive(job["pid"])
    assert not alive(program_pid)
    record = record_of(jobmagic_home, job["id"])
    assert (record.state, record.stop_requested_by) == (JobState.STOPPED, "kernel")
