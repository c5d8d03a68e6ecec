"""The spawner's fast path: plain commands started without the job script's shell.

The first tests talk to a real spawner (``spawner_client.Spawner``) with a request that
names both ways of starting: a job script that prints "script" and a plain command that
prints "direct". The log says which one ran, so each fallback is seen, not inferred.
The rest run jobs through the engine: the program joins its cgroup from its first
instruction, the spawner goes back to its own, and what the program gets (environment,
``PWD``, exit status) is what the job script's ``exec`` gave it.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import alive, cgroup_paths, read_until, wait_exit

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.cgroup_layout import detect
from jobmagic.backends.local.cgroups import V1, V2, JobCgroup
from jobmagic.backends.local.leaders import SPAWNER_KILLED
from jobmagic.backends.local.shell import direct_start, direct_words
from jobmagic.backends.local.spawner_client import Spawner
from jobmagic.backends.local.status_file import await_status
from jobmagic.core.files import create_private_file
from jobmagic.core.spec import JobSpec

pytestmark = pytest.mark.timeout(60)

LAYOUT, WHY_NONE = detect("auto")
needs_v1 = pytest.mark.skipif(
    LAYOUT is None or LAYOUT.version != V1, reason=f"no cgroup v1 here: {WHY_NONE or 'v2'}"
)
SCRIPT = ["/bin/sh", "-c", "echo script"]


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    process = Spawner()
    yield process
    process.close()


def run(
    spawner: Spawner,
    tmp_path: Path,
    words: list[str],
    *,
    argv: list[str] = SCRIPT,
    join: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int | None, bytes]:
    """Start one job with both ways named; its exit status and its log."""
    log = tmp_path / f"job-{len(list(tmp_path.glob('job-*.log')))}.log"
    status = str(log.with_suffix(".status"))
    fd = create_private_file(log)
    try:
        _, ref = spawner.spawn(
            argv,
            env=env if env is not None else dict(os.environ),
            extra_env={},
            cwd=str(cwd or tmp_path),
            status_path=status,
            log_fd=fd,
            direct=(words, join or []),
        )
    finally:
        os.close(fd)
    code = await_status(status, (ref[0], ref[1]), timeout=20)
    return code, log.read_bytes()


# -- which way the spawner takes ------------------------------------------------------------
def test_a_program_on_the_path_is_started_by_the_spawner_itself(
    spawner: Spawner, tmp_path: Path
) -> None:
    assert run(spawner, tmp_path, ["echo", "direct"]) == (0, b"direct\n")


def test_what_the_fast_path_cannot_start_goes_to_the_job_script(
    spawner: Spawner, tmp_path: Path
) -> None:
    no_shebang = tmp_path / "no-shebang"
    no_shebang.write_text("echo from the file\n")
    no_shebang.chmod(0o700)
    not_executable = tmp_path / "data"
    not_executable.write_text("")
    for words in (
        ["no-such-program-here"],  # not on PATH: the shell says "not found"
        [str(no_shebang)],  # ENOEXEC: the shell runs it as a script
        [str(not_executable)],  # not executable: the shell says so
        [str(tmp_path)],  # a directory
    ):
        assert run(spawner, tmp_path, words) == (0, b"script\n"), words
    # No PATH at all: the shell's own default search, not ours to guess.
    assert run(spawner, tmp_path, ["echo", "direct"], env={"HOME": "/"}) == (0, b"script\n")


def test_a_cgroup_the_spawner_cannot_join_goes_to_the_job_script(
    spawner: Spawner, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-cgroup")
    assert run(spawner, tmp_path, ["echo", "direct"], join=[missing]) == (0, b"script\n")
    # ... and the spawner is still where it was: the next plain command runs directly.
    assert run(spawner, tmp_path, ["echo", "direct"]) == (0, b"direct\n")


def test_the_program_gets_the_environment_the_job_scripts_shell_would_pass(
    spawner: Spawner, tmp_path: Path
) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "here")
    base = {"PATH": os.environ["PATH"], "KEPT": "1", "NOT-A-NAME": "2", "1ST": "3"}
    for pwd in ("/nonexistent", str(tmp_path / "link"), "relative", None):
        env = dict(base) if pwd is None else {**base, "PWD": pwd}
        code, direct = run(spawner, tmp_path, ["env"], argv=SCRIPT, env=env, cwd=tmp_path / "here")
        assert code == 0
        shell = ["/bin/sh", "-c", "exec env"]
        code, scripted = run(spawner, tmp_path, ["no-such-program"], argv=shell, env=env,
                             cwd=tmp_path / "here")  # fmt: skip
        assert code == 0
        # dash passes the variables on in an order of its own: compared as sets.
        assert set(direct.splitlines()) == set(scripted.splitlines()), pwd
        assert b"KEPT=1" in direct.splitlines()
        assert not re.search(rb"NOT-A-NAME|1ST", direct)


def test_exit_statuses_are_the_programs_own(spawner: Spawner, tmp_path: Path) -> None:
    code, log = run(spawner, tmp_path, ["python3", "-c", "print('direct'); raise SystemExit(7)"])
    assert (code, log) == (7, b"direct\n")
    code, log = run(spawner, tmp_path, ["sh", "-c", "echo direct; kill -TERM $$"])
    assert (code, log) == (-signal.SIGTERM, b"direct\n")  # its status file says 143


# -- what the kernel sends that way ---------------------------------------------------------
def test_only_plain_commands_of_programs_without_limits_are_sent_the_fast_way() -> None:
    v1 = JobCgroup(V1, ("/sys/fs/cgroup/memory/jobmagic-1-a",), {})
    v2 = JobCgroup(V2, ("/sys/fs/cgroup/x/jobmagic-1-a",), {})
    plain = JobSpec("python3 train.py --lr=0.1 data/a,b.csv")
    assert direct_start(plain, None, None) == (plain.command.split(), [])
    assert direct_start(plain, v1, None) == (plain.command.split(), list(v1.dirs))
    assert direct_start(plain, v2, None) is None  # joining v2 would move the whole spawner
    assert direct_start(plain, None, 1024) is None  # `ulimit -v` is the shell's
    assert direct_start(JobSpec(plain.command, memory="1G"), v1, None) is None
    assert direct_start(JobSpec(plain.command, pids=10), None, None) is None
    for command in (
        "true",  # the shell's builtin, not /usr/bin/true
        "echo hi",
        "FOO=1 python3 x.py",
        "python3 $HOME/x.py",
        "python3 'a b'",
        "python3 x.py > out",
        "python3 *.py",
        "python3 ~/x.py",
        "a; b",
        "-x",
        "",
    ):
        assert direct_words(command, "/bin/sh", False) is None, command
    assert direct_words("python3 x.py", "/bin/bash", False) is None
    assert direct_words("python3 x.py", "/bin/sh", True) is None


# -- through the engine, on a real cgroup -----------------------------------------------------
@pytest.fixture
def svc(jobmagic_home: Path) -> Iterator[WorkerService]:
    service = WorkerService(jobmagic_home)
    yield service
    service.shutdown()


FORKER = """import os, subprocess, sys
child = subprocess.Popen(["sleep", "1001"], start_new_session=True)
print("ready", os.getpid(), child.pid, flush=True)
sys.stdin.read()
"""


@needs_v1
def test_a_plain_commands_processes_are_in_its_cgroup_and_the_spawner_is_not(
    svc: WorkerService, tmp_path: Path
) -> None:
    script = tmp_path / "forker.py"
    script.write_text(FORKER)
    job = svc.start(f"python3 {script}")
    match = read_until(job, re.compile(rb"ready (\d+) (\d+)\n"))
    leader, escaped = int(match.group(1)), int(match.group(2))
    record = svc.store.get(job.id)
    assert record is not None
    assert record.backend_ref is not None
    cgroup = JobCgroup.from_ref(record.backend_ref["cgroup"])
    assert cgroup is not None
    assert leader == job.pid
    assert sorted(cgroup.members()) == sorted([leader, escaped])
    spawner = int(record.backend_ref["spawner"][0])
    assert cgroup_paths(spawner) == cgroup_paths(os.getpid())  # back where it came from
    job.stop()
    assert job.wait(timeout=20) is not None
    assert not alive(escaped)
    assert not any(os.path.exists(directory) for directory in cgroup.dirs)


WAITER = """import os, sys
print("ready", os.getpid(), flush=True)
open(sys.argv[1]).read()
sys.exit(7)
"""


def test_a_directly_started_job_outlives_a_killed_spawner_and_ends_honestly_unknown(
    svc: WorkerService, tmp_path: Path
) -> None:
    script, fifo = tmp_path / "waiter.py", tmp_path / "go"
    script.write_text(WAITER)
    os.mkfifo(fifo)
    command = f"python3 {script} {fifo}"
    assert direct_words(command, "/bin/sh", False) is not None  # the fast path's kind
    job = svc.start(command)
    program = int(read_until(job, re.compile(rb"ready (\d+)\n")).group(1))
    assert program == job.pid  # the program leads the job: no shell in between
    record = svc.store.get(job.id)
    assert record is not None
    assert record.backend_ref is not None
    spawner = int(record.backend_ref["spawner"][0])
    os.kill(spawner, signal.SIGKILL)
    wait_exit(spawner)
    assert alive(program)
    with fifo.open("w") as f:
        f.write("go\n")
    assert job.wait(20) is None  # its 7 went to nobody: not made up
    assert (job.state, job.exit_code, job.error) == (JobState.FAILED, None, SPAWNER_KILLED)
