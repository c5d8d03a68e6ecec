"""Jobs on a real local Ray cluster: exit codes, byte-exact logs, live output, stop, adoption.

One Ray head (the session's ``ray_address`` fixture) serves them all. Jobs hand-shake with the tests
through FIFOs (a job blocks reading one until the test writes), never through sleeps.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from ray_head import ray_head

from jobmagic import JobState, WorkerService
from jobmagic.backends.ray.execution import NEVER_STARTED
from jobmagic.backends.ray.log_mirror import without_ray_lines
from jobmagic.backends.ray.rest import JobsApi, RayRefused
from jobmagic.engine.worker import Worker
from jobmagic.notebook.row_summary import render_summary
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import job_json
from jobmagic.text.describe import state_text

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture
def service(ray_address: str) -> Iterator[WorkerService]:
    svc = WorkerService()
    try:
        yield svc
    finally:
        svc.shutdown()


#: One process (no child for Ray's SIGTERM to the tree to kill first): prints "ready",
#: then on SIGTERM "got TERM" and exits 5.
TERM_HANDLER = shlex.join(
    [
        sys.executable,
        "-c",
        (
            "import signal, sys, time\n"
            "def stop(*_):\n"
            "    print('got TERM', flush=True)\n"
            "    sys.exit(5)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)"
        ),
    ]
)


def start(svc: WorkerService, address: str, command: str, **options: object) -> Worker:
    return svc.start(command, backend="ray", address=address, **options)  # type: ignore[arg-type]


def read_until(worker: Worker, wanted: bytes) -> bytes:
    """The output from byte 0 up to the chunk holding ``wanted`` (pytest-timeout bounds it)."""
    seen = b""
    for chunk in worker.stream():
        seen += chunk
        if wanted in seen:
            return seen
    raise AssertionError(f"{wanted!r} never came; got {seen[-300:]!r}")


def ray_log(svc: WorkerService, address: str, worker: Worker) -> bytes:
    """Ray's own log of the job, its lines of Ray's own left out."""
    record = worker_record(svc, worker)
    ref = record.backend_ref
    assert ref is not None
    whole = JobsApi(address).logs(ref["submission_id"])
    return without_ray_lines(whole, ref["submission_id"], ref["entrypoint"]).encode()


def worker_record(svc: WorkerService, worker: Worker) -> JobRecord:
    record = svc.store.get(worker.id)
    assert record is not None
    return record


def test_exit_codes_output_and_the_record(service: WorkerService, ray_address: str) -> None:
    ok = start(
        service,
        ray_address,
        "echo one; printf 'two'; echo \"$GREETING\" >&2",
        env={"GREETING": "hi there"},
    )
    three = start(service, ray_address, "echo failing; exit 3")
    assert ok.wait(60) == 0
    assert ok.state is JobState.SUCCEEDED
    assert ok.output() == b"one\ntwohi there\n"
    assert three.wait(60) == 3
    assert three.state is JobState.FAILED
    assert three.error == "exit code 3"
    assert three.output() == b"failing\n"
    record = worker_record(service, three)
    assert record.backend == "ray"
    assert record.address == ray_address
    assert record.backend_ref is not None
    assert record.backend_ref["submission_id"].startswith(f"jobmagic-{three.id}-")
    assert record.exit_code == 3
    assert ray_log(service, ray_address, three) == b"failing\n"


def test_best_effort_says_what_ray_cannot_limit(service: WorkerService, ray_address: str) -> None:
    worker = start(service, ray_address, "echo ran", pids=10, best_effort=True)
    assert worker.wait(60) == 0
    assert worker.containment == "ray; best effort: pids dropped (Ray cannot limit processes)"
    assert worker_record(service, worker).containment == worker.containment
    assert worker.output() == b"ran\n"


def test_a_command_that_is_not_found(service: WorkerService, ray_address: str) -> None:
    worker = start(service, ray_address, "no-such-command-xyz --flag")
    assert worker.wait(60) == 127
    assert worker.state is JobState.FAILED
    assert worker.error == "command not found: no-such-command-xyz"


def test_runs_in_the_directory_it_was_started_from(
    service: WorkerService, ray_address: str, tmp_path: Path
) -> None:
    odd = tmp_path / "a dir; with 'quotes'"
    odd.mkdir()
    worker = start(service, ray_address, "pwd", cwd=str(odd))
    assert worker.wait(60) == 0
    assert worker.output() == f"{odd}\n".encode()


def test_20_mb_of_base64_arrive_byte_for_byte(
    service: WorkerService, ray_address: str, tmp_path: Path
) -> None:
    written = tmp_path / "written.b64"
    worker = start(service, ray_address, f"head -c 15000000 /dev/urandom | base64 | tee {written}")
    assert worker.wait(150) == 0, worker.error
    expected = hashlib.sha256(written.read_bytes()).hexdigest()
    assert written.stat().st_size > 20_000_000
    assert hashlib.sha256(worker.output()).hexdigest() == expected
    assert hashlib.sha256(ray_log(service, ray_address, worker)).hexdigest() == expected


def test_each_line_reaches_the_local_log_within_3_s_of_its_print(
    service: WorkerService, ray_address: str
) -> None:
    # The job stamps each line with the time it prints it; lines come every 0.7 s, so
    # they meet Ray's log tail (a read, 1 s asleep at the end of the file, 1 s more
    # between reads when idle) at different points of its cycle.
    worker = start(
        service,
        ray_address,
        'for n in 1 2 3 4 5; do echo "line $n $(date +%s.%N)"; sleep 0.7; done',
    )
    arrivals: dict[bytes, float] = {}
    seen = b""
    for chunk in worker.stream():
        now = time.time()
        seen += chunk
        for line in seen.splitlines(keepends=True):
            if line.endswith(b"\n"):
                arrivals.setdefault(line, now)
    assert worker.wait(30) == 0
    assert len(arrivals) == 5
    for line, arrived in arrivals.items():
        printed = float(line.split()[2])
        assert arrived - printed <= 3.0, (line, arrived - printed)


def test_stop_runs_the_jobs_sigterm_handler(service: WorkerService, ray_address: str) -> None:
    worker = start(
        service,
        ray_address,
        TERM_HANDLER,
    )
    read_until(worker, b"ready\n")
    worker.stop()
    assert worker.wait(30) is None
    assert worker.state is JobState.STOPPED
    assert worker.output() == b"ready\ngot TERM\n"


def test_stop_of_a_job_that_ignores_sigterm_kills_it(
    service: WorkerService, ray_address: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    worker = start(
        service,
        ray_address,
        f"trap '' TERM; echo $$ > {pidfile}; echo ready; exec {sys.executable} -c "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'",
    )
    read_until(worker, b"ready\n")
    pid = int(pidfile.read_text())
    worker.stop(timeout=1)
    assert worker.wait(60) is None
    assert worker.state is JobState.STOPPED
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


OWNER = textwrap.dedent(
    """
    import sys
    from jobmagic import WorkerService
    svc = WorkerService()
    w = svc.start(sys.argv[2], backend="ray", address=sys.argv[1])
    for chunk in w.stream():
        if b"start" in chunk:
            break
    print(w.id, flush=True)
    sys.stdin.read()
    """
)


def started_by_a_killed_owner(address: str, command: str) -> int:
    """The id of a Ray job whose owner printed "start" and was killed with SIGKILL."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, address, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert owner.stdout is not None
    try:
        return int(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        owner.stdout.close()
        assert owner.stdin is not None
        owner.stdin.close()


def test_a_killed_kernels_job_is_adopted_and_streamed_from_byte_0(
    ray_address: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job_id = started_by_a_killed_owner(
        ray_address, f'echo start; read line < {fifo}; echo "$line"; exit 7'
    )
    svc = WorkerService()
    try:
        worker = svc.adopt(job_id)
        assert worker.state is JobState.RUNNING
        read_until(worker, b"start\n")
        with fifo.open("w") as pipe:
            pipe.write("after the kernel died\n")
        assert worker.wait(60) == 7
        assert worker.state is JobState.FAILED
        assert worker.output() == b"start\nafter the kernel died\n"
    finally:
        svc.shutdown()


def test_a_job_that_ended_with_no_kernel_is_finished_by_reconcile(
    ray_address: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    job_id = started_by_a_killed_owner(
        ray_address, f'echo start; read line < {fifo}; echo "$line"; exit 4'
    )
    with fifo.open("w") as pipe:
        pipe.write("nobody watched\n")
    svc = WorkerService()
    try:
        api = JobsApi(ray_address)
        ref = svc.store.get(job_id).backend_ref
        wait_until(  # no kernel follows it: Ray's API has nothing to wait on
            lambda: api.info(ref["submission_id"])["status"] == "FAILED",
            60,
            message="Ray to end the job",
        )
        assert svc.reconcile() == [job_id]
        record = svc.store.get(job_id)
        assert record.state is JobState.FAILED
        assert record.exit_code == 4
        log = Path(record.log_path).read_bytes()
        assert log == b"start\nnobody watched\n"
    finally:
        svc.shutdown()


def test_a_group_of_parallel_1_submits_one_ray_job_at_a_time(
    service: WorkerService, ray_address: str
) -> None:
    service.set_group("one-at-a-time", parallel=1)
    workers = [
        start(service, ray_address, f"echo {n}; sleep 0.5", group="one-at-a-time") for n in range(3)
    ]
    for worker in workers:
        assert worker.wait(90) == 0
    api = JobsApi(ray_address)
    spans = []
    for worker in workers:
        ref = worker_record(service, worker).backend_ref
        info = api.info(ref["submission_id"])
        spans.append((info["start_time"], info["end_time"]))
        assert worker.output() == f"{workers.index(worker)}\n".encode()
    for (_, ended), (began, _) in itertools.pairwise(spans):
        assert began >= ended


def test_an_unreachable_cluster_fails_the_start_in_one_line(tmp_path: Path) -> None:
    svc = WorkerService()
    try:
        began = time.monotonic()
        worker = svc.start("true", backend="ray", address="http://127.0.0.1:1")
        assert worker.state is JobState.FAILED
        assert time.monotonic() - began < 10
        assert worker.error is not None
        assert worker.error.startswith("cannot reach the Ray cluster at http://127.0.0.1:1: ")
        assert "\n" not in worker.error
    finally:
        svc.shutdown()


def test_what_a_ray_job_cannot_be_is_refused_before_it_is_recorded() -> None:
    svc = WorkerService()
    try:
        with pytest.raises(ValueError, match="a Ray job has no terminal"):
            svc.start("true", backend="ray", pty=True)
        with pytest.raises(ValueError, match="Ray cannot limit a job's processes"):
            svc.start("true", backend="ray", pids=10)
        with pytest.raises(ValueError, match="Ray client address"):
            svc.start("true", backend="ray", address="ray://head:10001")
        with pytest.raises(ValueError, match="unknown backend 'nowhere'; jobmagic has: local, ray"):
            svc.start("true", backend="nowhere")
        with pytest.raises(ValueError, match="add --on ray"):
            svc.start("true", address="http://127.0.0.1:8265")
        assert svc.list(all=True) == []
    finally:
        svc.shutdown()


def test_the_command_line_stops_a_ray_job_another_process_owns(
    service: WorkerService, ray_address: str
) -> None:
    worker = start(
        service,
        ray_address,
        TERM_HANDLER,
    )
    read_until(worker, b"ready\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jobmagic")), "stop", str(worker.id)],
        capture_output=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"job {worker.id} stopped\n"
    assert worker.wait(30) is None
    assert worker.state is JobState.STOPPED
    assert worker_record(service, worker).stop_requested_by == "cli"
    assert worker.output() == b"ready\ngot TERM\n"


def test_ship_cwd_uploads_the_directory(
    service: WorkerService, ray_address: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("shipped with the job\n")
    worker = start(service, ray_address, "cat data.txt; pwd", cwd=str(project), ship_cwd=True)
    assert worker.wait(120) == 0, worker.error
    data, where = worker.output().decode().splitlines()
    assert data == "shipped with the job"
    assert where != str(project)  # Ray's unpacked copy, not the original


def test_a_submission_id_ray_has_already_is_refused_with_rays_reason(ray_address: str) -> None:
    api = JobsApi(ray_address)
    api.submit({"entrypoint": "true", "submission_id": "jobmagic-test-taken"})
    with pytest.raises(RayRefused) as refused:
        api.submit({"entrypoint": "true", "submission_id": "jobmagic-test-taken"})
    assert str(refused.value) == (
        "Job with submission_id jobmagic-test-taken already exists."
        " Please use a different submission_id"
    )


def wait_for_detail(service: WorkerService, worker: Worker, wanted: str | None) -> None:
    """Block until ``worker.detail`` is ``wanted`` (woken by the service's change events)."""
    changed = threading.Event()
    unsubscribe = service.subscribe(lambda _event: changed.set())
    try:
        while True:
            changed.clear()
            if worker.detail == wanted:
                return
            assert changed.wait(90), f"detail {worker.detail!r}, never {wanted!r}"
    finally:
        unsubscribe()


def test_a_job_ray_cannot_place_yet_says_it_waits_for_the_cluster(
    service: WorkerService, ray_address: str
) -> None:
    worker = start(service, ray_address, "echo ran", gpus=1)  # the head has no GPU
    wait_for_detail(service, worker, "waiting for the Ray cluster")
    assert worker.state is JobState.RUNNING
    assert state_text(worker) == "running (waiting for the Ray cluster)"
    record = worker_record(service, worker)
    assert record.detail == "waiting for the Ray cluster"
    assert job_json(record)["detail"] == "waiting for the Ray cluster"
    _, summary, _ = render_summary(worker)
    assert (
        f'<span class="jobmagic-where">ray {ray_address} (waiting for the Ray cluster)</span>'
        in summary
    )
    assert record.gpus_held == []  # Ray's GPUs, not the local pool's
    began = time.monotonic()
    worker.stop(timeout=1)
    assert time.monotonic() - began < 10
    assert worker.state is JobState.STOPPED
    assert worker.error == NEVER_STARTED
    assert worker.output() == b""


def test_a_running_job_says_nothing_more_and_names_its_node(
    service: WorkerService, ray_address: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    worker = start(service, ray_address, f"echo ready; read line < {fifo}")
    read_until(worker, b"ready\n")
    wait_for_detail(service, worker, None)
    assert state_text(worker) == "running"
    record = worker_record(service, worker)
    assert record.backend_ref is not None
    node = record.backend_ref["node"]
    assert isinstance(node, str)
    assert node
    assert job_json(record)["where"] == f"ray {ray_address} (node {node})"
    with fifo.open("w") as pipe:
        pipe.write("done\n")
    assert worker.wait(60) == 0


def test_a_cluster_that_goes_away_is_told_and_its_forgotten_job_ends_failed(
    service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    port = free_port()
    with ray_head(dashboard_port=port) as address:
        worker = start(service, address, f"echo ready; read line < {fifo}")
        read_until(worker, b"ready\n")
    _release(fifo)  # if Ray's shutdown left the command behind, it ends now
    lost = f"lost contact with the Ray cluster at {address}; trying again"
    wait_for_detail(service, worker, lost)
    assert worker.state is JobState.RUNNING
    with ray_head(dashboard_port=port):  # a new cluster where the old one was
        assert worker.wait(120) is None
    assert worker.state is JobState.FAILED
    assert worker.error is not None
    assert worker.error.startswith(f"the Ray cluster at {address} no longer knows job ")
    assert worker.output() == b"ready\n"


def _release(fifo: Path) -> None:
    """Let a command blocked reading ``fifo`` go on, if one is still there."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it
        return
    try:
        os.write(fd, b"done\n")
    finally:
        os.close(fd)


# Python without Ray: a finder that says no package "ray" exists, as on a machine where
# jobmagic was installed without the [ray] extra. Then starts a Ray job.
_WITHOUT_RAY = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoRay(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoRay())
    from jobmagic import WorkerService
    svc = WorkerService()
    try:
        svc.start("true", backend="ray")
    except ValueError as exc:
        print(exc)
    print(len(svc.list(all=True)), "ray" in sys.modules)
    svc.shutdown()
    """
)


def test_without_the_ray_extra_a_ray_job_says_how_to_get_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_RAY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the Ray backend needs Ray: pip install 'jobmagic[ray]'\n0 False\n"
