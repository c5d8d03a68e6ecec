"""Resource limits and containment on real cgroups (v1 as root on these machines).

Each job runs in a cgroup of its own inside the test process's cgroup: limits are the
kernel's, an OOM kill is the kernel's OOM killer, and "nothing left" is read from the
cgroup's member list and ``/proc``. Where the machine has no usable cgroup the tests that
need one are skipped with the reason; the no-cgroup path is run everywhere, by turning
cgroups off with ``JOBMAGIC_CGROUPS=off`` (a setting, not a mock).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import alive, cgroup_paths, read_until
from helpers import python_cmd, wait_until

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.cgroup_layout import CgroupLayout, detect
from jobmagic.backends.local.cgroups import JobCgroup
from jobmagic.backends.local.process import LocalExecutor
from jobmagic.core.spec import JobSpec
from jobmagic.errors import LaunchError
from jobmagic.store.job_store import JobStore

pytestmark = pytest.mark.timeout(60)

LAYOUT, WHY_NONE = detect("auto")
needs_cgroup = pytest.mark.skipif(LAYOUT is None, reason=f"no cgroups here: {WHY_NONE}")
needs_limits = pytest.mark.skipif(
    LAYOUT is None or LAYOUT.missing(JobSpec("x", memory="1G", cpus=1, pids=10).limits) != [],
    reason="this machine's cgroups do not enforce memory, cpu and pids limits",
)
MiB = 1 << 20


@pytest.fixture
def svc(jobmagic_home: Path) -> Iterator[WorkerService]:
    service = WorkerService(jobmagic_home)
    yield service
    service.shutdown()


def cgroup_of(service: WorkerService, job_id: int) -> JobCgroup:
    record = service.store.get(job_id)
    assert record is not None
    assert record.backend_ref is not None
    cgroup = JobCgroup.from_ref(record.backend_ref.get("cgroup"))
    assert cgroup is not None, f"job {job_id} has no cgroup: {record.backend_ref}"
    return cgroup


def escaped_sleeps() -> list[int]:
    """The pids of ESCAPES's four ``sleep 100N`` once all of them run.

    Its ``ready`` line comes 0.2 s after it started them, which a loaded machine may not
    give ``python3`` to get to its ``exec``: waited for here, on ``/proc``.
    """
    wanted = [f"sleep 100{n} ".encode() for n in range(4)]

    def running() -> list[int]:
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if cmdline in wanted and alive(int(entry.name)):
                found.append(int(entry.name))
        return found if len(found) == len(wanted) else []

    return wait_until(running, 20, message="the four sleeps of ESCAPES run")


# -- limits ------------------------------------------------------------------------------
@needs_limits
def test_a_job_over_its_memory_limit_fails_out_of_memory_and_others_live(
    svc: WorkerService,
) -> None:
    neighbour = svc.start("sleep 30")
    hog = svc.start(python_cmd("b = b'x' * (300 << 20); print('allocated')"), memory="100M")
    assert hog.wait(30) == -signal.SIGKILL
    assert hog.state is JobState.FAILED
    assert hog.error == "out of memory (limit 100 MiB)"
    assert hog.output() == b"", "it never got to print"
    modest = svc.start(python_cmd("b = b'x' * (20 << 20); print('fine')"), memory="100M")
    assert modest.wait(30) == 0
    assert modest.output() == b"fine\n"
    assert neighbour.state is JobState.RUNNING, "the other job lives on"
    assert alive(os.getpid())
    record = svc.store.get(hog.id)
    assert record is not None
    assert (record.state, record.error, record.memory_limit) == (
        JobState.FAILED,
        "out of memory (limit 100 MiB)",
        100 * MiB,
    )
    neighbour.stop()


FORKER = """
import signal, subprocess
children, refused = [], 0
for _ in range(200):
    try:
        children.append(subprocess.Popen(["sleep", "1000"]))
    except OSError:
        refused += 1
print(f"started {len(children)} refused {refused}", flush=True)
signal.pause()  # stays until stopped
"""


@needs_limits
def test_forks_beyond_the_pids_limit_fail_and_the_job_stops_clean(svc: WorkerService) -> None:
    job = svc.start(python_cmd(FORKER), pids=50)
    match = read_until(job, re.compile(rb"started (\d+) refused (\d+)\n"))
    started, refused = int(match.group(1)), int(match.group(2))
    assert started + refused == 200
    assert 0 < started < 50, "the limit counts the job's python too"
    assert refused > 150
    cgroup = cgroup_of(svc, job.id)
    assert len(cgroup.members()) == started + 1
    job.stop(timeout=5)
    assert job.state is JobState.STOPPED
    assert cgroup.members() == []
    assert not any(os.path.exists(path) for path in cgroup.dirs), "its cgroup is removed"


@needs_limits
def test_a_pids_limit_failure_is_named(svc: WorkerService) -> None:
    job = svc.start("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait", pids=4)
    assert job.wait(30) != 0
    assert job.state is JobState.FAILED
    assert job.error == "could not start a process: the job reached its process limit (4)"


BUSY = (
    "import time\nend = time.time() + 30\nprint('busy', flush=True)\nwhile time.time() < end: pass"
)


@needs_limits
def test_half_a_cpu_gets_half_a_core(svc: WorkerService) -> None:
    job = svc.start(python_cmd(BUSY), cpus=0.5)
    read_until(job, re.compile(rb"busy\n"))
    cgroup = cgroup_of(svc, job.id)
    before, start = cgroup.usage().cpu_seconds, time.monotonic()
    assert before is not None
    # The measurement needs wall time to pass; the job's own CPU time is what is measured.
    time.sleep(3)
    after, elapsed = cgroup.usage().cpu_seconds, time.monotonic() - start
    assert after is not None
    share = (after - before) / elapsed
    assert 0.35 <= share <= 0.65, f"{share:.2f} of a core"
    job.stop()


@needs_limits
def test_peak_memory_of_a_200_mib_job_is_reported_within_ten_percent(
    svc: WorkerService,
) -> None:
    job = svc.start(python_cmd("b = b'x' * (200 << 20); print(len(b))"))
    assert job.wait(30) == 0
    usage = job.usage()
    assert usage is not None
    assert usage.peak_memory is not None
    assert 180 * MiB <= usage.peak_memory <= 220 * MiB, usage
    assert usage.cpu_seconds is not None
    assert usage.cpu_seconds > 0
    assert usage.memory is None, "an ended job uses nothing now"
    record = svc.store.get(job.id)
    assert record is not None
    assert record.peak_memory == usage.peak_memory


@needs_cgroup
def test_live_usage_of_a_running_job(svc: WorkerService) -> None:
    job = svc.start(python_cmd(BUSY))
    read_until(job, re.compile(rb"busy\n"))
    first = job.usage()
    assert first is not None
    assert first.memory is not None
    assert first.memory > 0
    assert first.cpu_percent is not None
    assert job.usage() is first, "a second reading within a second is the first one"
    job.stop()


# -- containment -------------------------------------------------------------------------
ESCAPES = (
    "setsid sleep 1001 & "  # a new session
    "sh -c 'sleep 1002 &' & "  # a double fork (it stays in the process group)
    'python3 -c \'import os; os.setpgid(0, 0); os.execvp("sleep", ["sleep", "1003"])\' & '
    "sleep 0.2; echo ready; exec sleep 1000"
)


@needs_cgroup
def test_stop_kills_processes_that_left_the_process_group(svc: WorkerService) -> None:
    job = svc.start(ESCAPES)
    read_until(job, re.compile(rb"ready\n"))
    sleeps = escaped_sleeps()
    cgroup = cgroup_of(svc, job.id)
    members = cgroup.members()
    assert sorted(members) == sorted(sleeps), members  # sleep 1000 (the job's leader), 1001-1003
    job.stop(timeout=5)
    assert job.state is JobState.STOPPED
    assert cgroup.members() == []
    assert [pid for pid in members if alive(pid)] == []
    assert not any(os.path.exists(path) for path in cgroup.dirs)


@needs_cgroup
def test_what_a_job_leaves_behind_is_killed_when_it_ends(svc: WorkerService) -> None:
    job = svc.start("setsid sleep 1004 & echo $! ; exit 3")
    assert job.wait(10) == 3
    (pid,) = [int(word) for word in job.output().split()]
    assert not alive(pid), "the setsid'ed sleep ended with its job"


@needs_cgroup
def test_a_jobs_cgroup_is_inside_the_kernels(svc: WorkerService) -> None:
    # With every limit, so that it joins every hierarchy a job can have.
    every = {"memory": "1G", "cpus": 1, "pids": 100}
    limits = {name: value for name, value in every.items() if LAYOUT and LAYOUT.can_enforce(name)}
    job = svc.start("echo ready; exec sleep 1000", **limits)  # type: ignore[arg-type]
    read_until(job, re.compile(rb"ready\n"))
    cgroup = cgroup_of(svc, job.id)
    command_pid = cgroup.members()[0]
    mine, its = cgroup_paths(os.getpid()), cgroup_paths(command_pid)
    assert LAYOUT is not None
    checked = 0
    for controller in cgroup.roles if LAYOUT.version == 1 else [""]:
        parent = mine[controller].rstrip("/")
        assert its[controller].startswith(parent + "/jobmagic-"), (controller, its, mine)
        checked += 1
    assert checked >= 1
    job.stop()


CRASHING_KERNEL = """
import json, sys
from jobmagic import WorkerService
svc = WorkerService(sys.argv[1])
w = svc.start("setsid sleep 1005 & echo ready; exec sleep 1000", detach=True, memory="64M")
for chunk in w.stream():
    if b"ready" in chunk:
        break
print(json.dumps(w.id), flush=True)
sys.stdin.read()
"""


@needs_limits
def test_a_crashed_kernels_job_keeps_its_cgroup_and_the_next_kernel_stops_all_of_it(
    jobmagic_home: Path,
) -> None:
    kernel = subprocess.Popen(
        [sys.executable, "-c", CRASHING_KERNEL, str(jobmagic_home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert kernel.stdout is not None
    job_id = json.loads(kernel.stdout.readline())
    kernel.kill()
    kernel.wait()
    store = JobStore(jobmagic_home)
    record = store.get(job_id)
    store.close()
    assert record is not None
    assert record.backend_ref is not None
    cgroup = JobCgroup.from_ref(record.backend_ref["cgroup"])
    assert cgroup is not None
    members = cgroup.members()
    assert len(members) == 2, "the job and its setsid'ed sleep outlive the kernel"
    assert cgroup.memory_limit() == 64 * MiB

    service = WorkerService(jobmagic_home)
    try:
        job = service.adopt(job_id)
        job.stop(timeout=5)
        assert job.state is JobState.STOPPED
    finally:
        service.shutdown()
    assert [pid for pid in members if alive(pid)] == []
    assert not any(os.path.exists(path) for path in cgroup.dirs), "removed once finished"


# -- no cgroup ---------------------------------------------------------------------------
@pytest.fixture
def no_cgroups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMAGIC_CGROUPS", "off")


def test_without_cgroups_limits_are_refused_with_how_to_get_them(
    no_cgroups: None, svc: WorkerService
) -> None:
    with pytest.raises(ValueError, match="memory limits need a cgroup") as refused:
        svc.start("true", memory="100M")
    message = str(refused.value)
    assert "\n" not in message
    assert "JOBMAGIC_CGROUPS=off" in message
    assert "systemd-run --user --scope -p Delegate=yes" in message
    assert "--best-effort" in message
    assert svc.list(all=True) == [], "nothing was recorded"


def test_best_effort_without_cgroups_runs_and_says_what_was_dropped(
    no_cgroups: None, svc: WorkerService
) -> None:
    job = svc.start("ulimit -v; echo done", memory="100M", cpus=1, pids=50, best_effort=True)
    assert job.wait(10) == 0
    assert job.output() == f"{100 * 1024}\ndone\n".encode(), "memory became ulimit -v"
    assert job.containment == (
        "none; best effort: memory as a per-process address-space limit (ulimit -v), "
        "cpus dropped (needs the cpu controller), pids dropped (needs the pids controller)"
    )
    record = svc.store.get(job.id)
    assert record is not None
    assert record.containment == job.containment


def test_without_cgroups_a_plain_job_runs_and_its_usage_comes_from_proc(
    no_cgroups: None, svc: WorkerService
) -> None:
    job = svc.start(python_cmd(BUSY))
    read_until(job, re.compile(rb"busy\n"))
    assert job.containment == "none"
    usage = job.usage()
    assert usage is not None
    assert usage.memory is not None
    assert usage.memory > 0
    job.stop()
    ended = job.usage()
    assert ended is not None
    assert ended.cpu_seconds is not None
    assert ended.cpu_seconds > 0
    assert ended.peak_memory is None, "no cgroup keeps it (and rusage's is the kernel's)"


# -- bad input and failures ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"memory": 0}, "more than 0 bytes"),
        ({"memory": "-1G"}, "more than 0 bytes"),
        ({"memory": "lots"}, "cannot read 'lots' as a size"),
        ({"memory": "100K"}, "at least 1 MiB"),
        ({"cpus": 0}, "cpus is a number of CPUs > 0"),
        ({"cpus": -1.5}, "cpus is a number of CPUs > 0"),
        ({"pids": 1}, "pids is a whole number of processes >= 2"),
    ],
)
def test_bad_limits_are_refused_before_anything_is_recorded(
    svc: WorkerService, limits: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        svc.start("true", **limits)  # type: ignore[arg-type]
    assert svc.list(all=True) == []


@needs_cgroup
def test_a_cgroup_that_cannot_be_made_fails_the_launch_and_leaves_nothing(
    jobmagic_home: Path,
) -> None:
    assert LAYOUT is not None
    missing = "/sys/fs/cgroup/no-such-hierarchy"
    # The pids hierarchy "vanished": the job needs it for its --pids limit.
    broken = CgroupLayout(
        LAYOUT.version, {**LAYOUT.bases, "pids": missing}, (*LAYOUT.hierarchies, missing)
    )
    executor = LocalExecutor(jobmagic_home)
    executor.cgroups = broken
    log = jobmagic_home / "logs" / "1-test.log"
    log.parent.mkdir(exist_ok=True)
    with pytest.raises(LaunchError, match=r"^cannot set up the job's cgroup v\d: No such file"):
        executor.launch(1, JobSpec("true", pids=10), log)
    for base in LAYOUT.hierarchies:
        assert not os.path.exists(os.path.join(base, "jobmagic-1-test")), "nothing half-made"
    assert not executor.status_path(log).exists()
    assert not log.exists()


@needs_cgroup
def test_more_cpus_than_the_machine_has_is_allowed(svc: WorkerService) -> None:
    spec_cpus = (os.cpu_count() or 1) * 4
    assert JobSpec("true", cpus=spec_cpus).limits.more_cpus_than_machine()
    if LAYOUT is not None and LAYOUT.can_enforce("cpus"):
        job = svc.start("true", cpus=spec_cpus)
        assert job.wait(10) == 0


# -- cgroup v2 where there are no controllers: contained, limits refused ------------------
V2, V2_WHY = detect("v2")


@pytest.mark.skipif(V2 is None, reason=f"no writable cgroup v2 here: {V2_WHY}")
def test_cgroup_v2_contains_a_job_even_without_controllers(
    monkeypatch: pytest.MonkeyPatch, svc: WorkerService
) -> None:
    monkeypatch.setenv("JOBMAGIC_CGROUPS", "v2")
    service = WorkerService(svc.store.home)
    try:
        job = service.start(ESCAPES)
        read_until(job, re.compile(rb"ready\n"))
        assert job.containment == "cgroup v2"
        sleeps = escaped_sleeps()
        cgroup = cgroup_of(service, job.id)
        members = cgroup.members()
        assert sorted(members) == sorted(sleeps)
        job.stop(timeout=5)
        assert [pid for pid in members if alive(pid)] == []
        assert not os.path.exists(cgroup.dirs[0])
        assert V2 is not None
        if not V2.can_enforce("memory"):
            with pytest.raises(ValueError, match="memory limits need the memory controller"):
                service.start("true", memory="100M")
    finally:
        service.shutdown()


# -- where a job's cgroup goes -------------------------------------------------------------
def test_our_cgroup_directory_in_a_mount_that_shows_all_or_part_of_the_tree() -> None:
    from jobmagic.backends.local.cgroup_layout import _directory, _Mount

    whole = _Mount("/sys/fs/cgroup/memory", "/", 1, frozenset({"memory"}))
    assert _directory(whole, "/user.slice/k") == "/sys/fs/cgroup/memory/user.slice/k"
    assert _directory(whole, "/") == "/sys/fs/cgroup/memory"
    # A container's namespace: the mount's root is the container's own cgroup.
    part = _Mount("/sys/fs/cgroup", "/docker/abc", 2, frozenset())
    assert _directory(part, "/docker/abc") == "/sys/fs/cgroup"
    assert _directory(part, "/docker/abc/kernel") == "/sys/fs/cgroup/kernel"
    assert _directory(part, "/elsewhere") is None


def test_a_stored_cgroup_reference_names_only_job_cgroups() -> None:
    good = {"version": 1, "dirs": ["/sys/fs/cgroup/pids/jobmagic-1-x"], "roles": {}}
    assert JobCgroup.from_ref(good) is not None
    for bad in (
        {"version": 1, "dirs": ["/sys/fs/cgroup/pids"], "roles": {}},
        {"version": 1, "dirs": ["/tmp/jobmagic-1-x"], "roles": {}},
        {"version": 1, "dirs": ["/sys/fs/cgroup/pids/../jobmagic-1-x"], "roles": {}},
        {"version": 3, "dirs": ["/sys/fs/cgroup/pids/jobmagic-1-x"], "roles": {}},
        {"version": 1, "dirs": [], "roles": {}},
        None,
    ):
        assert JobCgroup.from_ref(bad) is None, bad


def test_an_unknown_cgroups_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="JOBMAGIC_CGROUPS is one of auto, v2, v1, off"):
        detect("sometimes")


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids of ``pids`` still alive after waiting (on pidfds) up to ``timeout`` s."""
    import select

    left = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        if alive(pid):
            left.append(pid)
    return left


def test_without_cgroups_a_stop_finds_what_left_the_group_and_says_so(
    no_cgroups: None, svc: WorkerService
) -> None:
    job = svc.start(ESCAPES)
    read_until(job, re.compile(rb"ready\n"))
    sleeps = escaped_sleeps()  # the job's leader (sleep 1000), and three more
    job.stop(timeout=5)
    assert job.state is JobState.STOPPED
    assert wait_gone(sleeps) == []
    assert job.error == (
        "the stop also killed 2 process(es) that had left the job's process group "
        "(setsid, a double fork): with no cgroup here, such processes can escape a job"
    )


def test_a_job_knows_its_own_name_in_jobmagic_job(svc: WorkerService) -> None:
    job = svc.start("echo $JOBMAGIC_JOB")
    assert job.wait(10) == 0
    assert job.output() == f"{job.log_path.stem}\n".encode()


def test_the_status_file_keeps_its_exit_status_whatever_a_stop_appends(tmp_path: Path) -> None:
    from jobmagic.backends.local.status_file import leave_stop_marker, read_status_file

    status = tmp_path / "1.status"
    status.write_bytes(b"")
    leave_stop_marker(status)  # a stop before the wrapper wrote anything
    assert status.read_bytes() == b"stop\n"
    assert read_status_file(status) is None
    status.write_bytes(b"0\n")  # the wrapper's `>`
    leave_stop_marker(status)  # a stop just after the job ended
    assert read_status_file(status) == 0
    status.write_bytes(b"143\nop\n")  # its `>` truncated the mark, then wrote at offset 0
    assert read_status_file(status) == -15
    leave_stop_marker(tmp_path / "missing.status")  # nothing to mark: no file is made
    assert not (tmp_path / "missing.status").exists()
