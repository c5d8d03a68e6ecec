"""The failures an adversarial run found (issue 19), each reproduced against real parts.

A watcher that meets an unexpected error, a store that cannot be written, a store reset
or deleted under running kernels, a home another user could write to, another kernel's
or an orphan's job stopped from here, two kernels adopting at once, bad input, a wrapper
killed while nobody watched, and commands larger than the system runs.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import OtherKernel, alive, read_until
from helpers import python_cmd, wait_until

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.shell import MAX_ARG_STRLEN
from jobmagic.core.spec import JobSpec
from jobmagic.errors import JobmagicError, JobNotFound, StoreError
from jobmagic.store.job_store import JobStore
from jobmagic.store.opening import DB_NAME

pytestmark = pytest.mark.timeout(60)

READY = re.compile(rb"ready (\d+)\n")
SLEEPER = python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()")
# Ignores SIGTERM: only the SIGKILL at the end of the grace period ends it.
STUBBORN = python_cmd(
    "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', os.getpid(), flush=True); signal.pause()"
)
_LOGGER_NUMBERS = itertools.count()


def quiet_logger() -> logging.Logger:
    return logging.getLogger(f"jobmagic-tests.reliability.{next(_LOGGER_NUMBERS)}")


@pytest.fixture
def svc(jobmagic_home: Path) -> Iterator[WorkerService]:
    service = WorkerService(logger=quiet_logger(), home=jobmagic_home, stop_timeout=5.0)
    yield service
    service.shutdown()


# -- 1. the watcher ----------------------------------------------------------------------
class _FailingPolls:
    """The watcher's epoll, whose next ``failures`` polls raise (an injected fault)."""

    def __init__(self, epoll: Any, failures: int) -> None:
        self._epoll = epoll
        self.failures = failures

    def poll(self, timeout: float) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("injected fault in epoll_wait")
        return self._epoll.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._epoll, name)


def test_a_watcher_fault_is_logged_once_and_jobs_still_end(
    svc: WorkerService, caplog: pytest.LogCaptureFixture
) -> None:
    w = svc.start(SLEEPER)
    read_until(w, READY)
    faulty = _FailingPolls(svc.watcher._epoll, failures=5)
    svc.watcher._epoll = faulty
    with caplog.at_level(logging.ERROR, logger="jobmagic"):
        svc.watcher.call_later(0, lambda: None)  # wake it up into the faults
        assert svc.start("exit 3").wait(10) == 3
        w.stop(timeout=1)
    assert (w.state, w.exit_code) == (JobState.STOPPED, -signal.SIGTERM)
    assert faulty.failures == 0
    faults = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert len(faults) == 1, caplog.text
    assert svc.watcher.thread.is_alive()


def test_interpreter_exit_does_not_hang_on_an_endless_timeout(jobmagic_home: Path) -> None:
    code = (
        "from jobmagic import WorkerService\n"
        "svc = WorkerService(stop_timeout=0.5)\n"
        f"w = svc.start({STUBBORN!r}, timeout=float('inf'))\n"
        "for chunk in w.stream():\n"
        "    if b'ready' in chunk: break\n"
        "w.stop(timeout=float('inf'), wait=False)\n"
        "print(w.pid, flush=True)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=True, text=True
    )
    assert time.monotonic() - started < 20
    wrapper = int(done.stdout.split()[0])
    assert not alive(wrapper)


# -- 2. a store that cannot be written ---------------------------------------------------
def _fill(store: JobStore) -> None:
    """Let the store's file grow no more: the next write that needs a page fails (FULL)."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")


def test_a_full_store_fails_start_with_one_store_error(svc: WorkerService) -> None:
    _fill(svc.store)
    with pytest.raises(StoreError) as caught:
        svc.start("echo never", name="n" * 20_000)  # a row larger than the free space
    message = str(caught.value)
    assert "database or disk is full" in message
    assert "\n" not in message
    assert caught.value.__cause__ is not None
    # The store is left usable: the failed transaction was rolled back.
    assert svc.start("exit 0").wait(10) == 0


def test_a_job_that_ends_while_its_record_cannot_be_written_ends_and_is_recorded_later(
    svc: WorkerService, jobmagic_home: Path
) -> None:
    w = svc.start(SLEEPER)
    read_until(w, READY)
    svc.store._db.execute("PRAGMA query_only=1")  # every write now fails, as on a read-only disk
    w.stop(timeout=2)
    # In the kernel the job has ended, and says its record could not be saved.
    assert (w.state, w.exit_code) == (JobState.STOPPED, -signal.SIGTERM)
    assert w.error is not None
    assert "could not be recorded" in w.error
    reader = JobStore(jobmagic_home)
    record = reader.get(w.id or 0)
    assert record is not None
    assert record.state is JobState.RUNNING
    # Once writes work again, the end is written (on the service's retry timer).
    svc.store._db.execute("PRAGMA query_only=0")
    ended = wait_until(
        lambda: (r := reader.get(w.id or 0)) is not None and r.state.is_finished and r, 15
    )
    assert (ended.state, ended.exit_code) == (JobState.STOPPED, -signal.SIGTERM)
    assert svc.store.unsaved == 0


TICKER = python_cmd(
    "import itertools, time\n"
    "for i in itertools.count():\n"
    "    print('tick', i, flush=True); time.sleep(0.02)"
)


def test_a_locked_store_holds_up_no_other_jobs_output_while_an_end_waits_for_it(
    svc: WorkerService, jobmagic_home: Path, tmp_path: Path
) -> None:
    import sqlite3

    go = tmp_path / "go"
    os.mkfifo(go)
    ticker = svc.start(TICKER)
    ending = svc.start(f"echo ready 0; read line < {go}; exit 3")
    read_until(ending, READY)
    chunks = ticker.stream()
    try:
        next(chunks)
        # Another process holds the store's write lock (as a long transaction would).
        other = sqlite3.connect(jobmagic_home / DB_NAME, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with go.open("w") as f:
                f.write("go\n")  # the job ends now
            # Its end waits for the lock; the other job's output keeps coming meanwhile.
            seen = b""
            while seen.count(b"\n") < 10:
                seen += next(chunks)
            assert ending.state is JobState.RUNNING, "its end is not recorded yet"
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert ending.wait(30) == 3
        assert ending.state is JobState.FAILED
        record = svc.store.get(ending.id or 0)
        assert record is not None
        assert (record.state, record.exit_code) == (JobState.FAILED, 3)
    finally:
        chunks.close()
        ticker.stop()


def test_shutdown_completes_within_its_timeout_when_the_store_cannot_be_written(
    jobmagic_home: Path,
) -> None:
    service = WorkerService(logger=quiet_logger(), home=jobmagic_home)
    w = service.start(STUBBORN)
    match = read_until(w, READY)
    service.store._db.execute("PRAGMA query_only=1")
    started = time.monotonic()
    service.shutdown(timeout=0.5)
    assert time.monotonic() - started < 0.5 + 10
    assert (w.state, w.exit_code) == (JobState.STOPPED, -signal.SIGKILL)
    assert not alive(int(match.group(1)))


# -- 3. resetting and deleting the store -------------------------------------------------
def _move_store_aside(home: Path) -> None:
    aside = home / "old"
    aside.mkdir()
    for path in home.glob(f"{DB_NAME}*"):
        path.rename(aside / path.name)


def test_a_new_store_never_reads_or_appends_to_an_earlier_stores_files(
    jobmagic_home: Path,
) -> None:
    first = WorkerService(logger=quiet_logger(), home=jobmagic_home)
    old = first.start("echo old output; exit 7")
    assert old.wait(10) == 7
    old_log = old.log_path
    first.shutdown()
    _move_store_aside(jobmagic_home)  # what the StoreError message tells users to do

    second = WorkerService(logger=quiet_logger(), home=jobmagic_home)
    try:
        new = second.start("echo new output")
        assert new.id == old.id  # ids start again
        assert new.wait(10) == 0
        assert new.output() == b"new output\n"
        assert new.log_path != old_log
        assert old_log.read_bytes() == b"old output\n"
        # A new job whose wrapper dies before writing its status does not read the old
        # job's status (7): it reports how its own wrapper ended.
        killed = second.start(SLEEPER)
        read_until(killed, READY)
        os.kill(killed.pid or 0, signal.SIGKILL)
        assert killed.wait(10) == -signal.SIGKILL
    finally:
        second.shutdown()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_while_in_use_is_reported_by_every_process(
    svc: WorkerService, jobmagic_home: Path, how: str
) -> None:
    assert svc.start("true").wait(10) == 0
    reader = JobStore(jobmagic_home)  # another process's connection (the server's)
    assert len(reader.list()) == 1
    db = jobmagic_home / DB_NAME
    if how == "deleted":
        for path in jobmagic_home.glob(f"{DB_NAME}*"):
            path.unlink()
    else:
        shutil.copy(db, jobmagic_home / "copy")
        os.replace(jobmagic_home / "copy", db)
    for store in (reader, svc.store):
        with pytest.raises(StoreError, match=f"was {how} while this process used it"):
            store.list()
    with pytest.raises(StoreError, match=f"was {how}"):
        svc.start("echo never")


def test_a_truncated_store_is_refused_at_once(svc: WorkerService, jobmagic_home: Path) -> None:
    for _ in range(3):
        svc.start("true").wait(10)
    assert (jobmagic_home / f"{DB_NAME}-wal").stat().st_size > 0
    os.truncate(jobmagic_home / DB_NAME, 0)
    code = (
        "import sys\nfrom jobmagic.store.job_store import JobStore\n"
        "from jobmagic.errors import StoreError\n"
        f"try:\n    JobStore({str(jobmagic_home)!r})\n"
        "except StoreError as exc:\n    print(exc); sys.exit(3)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert time.monotonic() - started < 10  # not the store's 60 s lock wait
    assert done.returncode == 3, done.stderr
    assert "truncated" in done.stdout


# -- 4. a home someone else could write to -----------------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
@pytest.mark.parametrize("which", ["home", "logs", "status"])
def test_a_home_owned_by_another_user_is_refused(tmp_path: Path, which: str) -> None:
    home = tmp_path / "shared" / "jobmagic"
    home.mkdir(parents=True)
    target = home if which == "home" else home / which
    target.mkdir(exist_ok=True)
    os.chown(target, 65534, 65534)  # nobody
    refused = r"belongs to user nobody \(uid 65534\), not to you"
    if which != "status":
        with pytest.raises(StoreError, match=refused):
            WorkerService(logger=quiet_logger(), home=home)
        return
    service = WorkerService(logger=quiet_logger(), home=home)  # status/ is the backend's
    try:
        with pytest.raises(StoreError, match=refused):
            service.start("true")
        assert service.store.list() == []
    finally:
        service.shutdown()


@pytest.mark.parametrize(
    "planted", ["logs", "status", "jobs.changed", "store.lock", f"{DB_NAME}", f"{DB_NAME}-wal"]
)
def test_links_planted_in_a_home_are_never_followed(tmp_path: Path, planted: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.mkdir() if planted in ("logs", "status") else victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o644)
    (home / planted).symlink_to(victim)
    with pytest.raises(StoreError, match=r"symbolic link|Too many levels"):
        _start_in(home)
    assert oct(victim.stat().st_mode & 0o777) == oct(0o644)
    if victim.is_file():
        assert victim.read_bytes() == b"precious\n"
    else:
        assert list(victim.iterdir()) == []


def test_a_link_planted_at_a_jobs_log_is_set_aside_not_followed(
    svc: WorkerService, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o644)
    next_id = svc.start("true").id or 0
    planted = svc.store.log_path(next_id + 1)
    planted.symlink_to(victim)
    w = svc.start("echo job output")
    assert w.wait(10) == 0
    assert w.log_path == planted
    assert not w.log_path.is_symlink()
    assert w.output() == b"job output\n"
    assert victim.read_bytes() == b"precious\n"
    assert oct(victim.stat().st_mode & 0o777) == oct(0o644)


def test_a_home_may_be_your_link_to_your_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    home = tmp_path / "home"
    home.symlink_to(real)
    _start_in(home)
    assert len(list((real / "logs").iterdir())) == 1


def test_a_home_that_is_a_dangling_link_is_a_store_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.symlink_to(tmp_path / "gone")
    with pytest.raises(StoreError, match=r"^cannot use the job home"):
        JobStore(home)


def _start_in(home: Path) -> None:
    service = WorkerService(logger=quiet_logger(), home=home)
    try:
        service.start("true")  # status/ is made by the backend, at the first start
    finally:
        service.shutdown()


# -- 6. stopping jobs this kernel does not own --------------------------------------------
def _program_pid(svc: WorkerService, job_id: int) -> int:
    match = READY.search(svc.get(job_id).output())
    assert match is not None
    return int(match.group(1))


@pytest.mark.parametrize("started_by", ["spawner", "wrapper"])
@pytest.mark.parametrize("owner", ["live kernel", "dead kernel"])
def test_stopping_a_foreign_job_escalates_to_sigkill_and_waits(
    svc: WorkerService, jobmagic_home: Path, owner: str, started_by: str
) -> None:
    other = OtherKernel(
        jobmagic_home, STUBBORN, die=owner == "dead kernel", spawner=started_by == "spawner"
    )
    try:
        job = svc.get(other.job["id"])
        assert not job.owned
        assert job.orphaned is (owner == "dead kernel")
        program = _program_pid(svc, other.job["id"])
        started = time.monotonic()
        job.stop(timeout=0.5)  # wait=True
        assert time.monotonic() - started < 10
        assert not alive(program)
        # The owner's spawner, which outlives its kernel, records the status (-9); so
        # does a live owner that reaps its wrapper. An orphan's wrapper dies with its
        # group before it can write a status, so nobody knows the code.
        known = owner == "live kernel" or started_by == "spawner"
        code = -signal.SIGKILL if known else None
        assert (job.state, job.exit_code) == (JobState.STOPPED, code)
    finally:
        other.close()


def test_the_magic_says_a_dead_kernels_job_was_stopped(
    ipython_shell: Any, jobmagic_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = OtherKernel(jobmagic_home, SLEEPER, die=True)
    job_id = other.job["id"]
    ipython_shell.run_line_magic("job", f"stop {job_id}")
    said = capsys.readouterr().out
    assert "was started by a kernel that is gone; stopped it: stopped" in said, said
    assert "belongs to another kernel" not in said


# -- 7. two kernels adopting at once -------------------------------------------------------
def test_exactly_one_of_two_kernels_adopting_at_once_wins(jobmagic_home: Path) -> None:
    orphans = [OtherKernel(jobmagic_home, SLEEPER, die=True).job for _ in range(4)]
    services = [WorkerService(logger=quiet_logger(), home=jobmagic_home) for _ in range(2)]
    try:
        for job in orphans:
            results = _adopt_at_once(services, job["id"])
            won = [r for r in results if not isinstance(r, Exception)]
            lost = [r for r in results if isinstance(r, Exception)]
            assert len(won) == 1, results
            assert len(lost) == 1
            assert re.search(
                r"was just adopted by another kernel|is no longer running|"
                r"belongs to a live kernel",
                str(lost[0]),
            ), lost[0]
    finally:
        for service in services:
            service.stop_all(timeout=1)
            service.shutdown()


def _adopt_at_once(services: list[WorkerService], job_id: int) -> list[object]:
    """Each service adopts ``job_id`` on its own thread, released at the same moment."""
    barrier = threading.Barrier(len(services))
    results: list[object] = []

    def adopt(service: WorkerService) -> None:
        barrier.wait()
        try:
            results.append(service.adopt(job_id))
        except JobmagicError as exc:
            results.append(exc)

    threads = [threading.Thread(target=adopt, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# -- 8. bad input leaves nothing behind ----------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": "echo a\0b"}, "the command contains a NUL byte"),
        ({"env": {"X": "a\0b"}}, "environment variable 'X' contains a NUL byte"),
        ({"env": {"A=B": "1"}}, "environment variable name 'A=B' is not valid"),
        ({"env": {"": "1"}}, "environment variable name '' is not valid"),
        ({"cwd": "/tmp\0x"}, "the working directory contains a NUL byte"),
        ({"name": "2"}, "a job name cannot read as a job id"),
        ({"name": " #12 "}, "a job name cannot read as a job id"),
        ({"name": ""}, "a job name cannot be empty"),
    ],
)
def test_bad_input_is_refused_before_anything_is_recorded(
    svc: WorkerService, options: dict[str, Any], message: str
) -> None:
    command = options.pop("command", "echo fine")
    options.setdefault("name", "reusable")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        svc.start(command, **options)
    assert svc.store.list() == []
    assert list(svc.store.logs_dir.iterdir()) == []
    # The name was never taken.
    assert svc.start("true", name="reusable").wait(10) == 0


def test_names_with_digits_and_letters_are_fine(svc: WorkerService) -> None:
    w = svc.start("true", name="run2")
    assert svc.get("run2") is w


def test_ids_beyond_what_the_store_holds_name_no_job(svc: WorkerService) -> None:
    for job_id in (2**63, 2**64, 10**30, -1, 0):
        with pytest.raises(JobNotFound):
            svc.get(job_id)
    assert svc.store.get(2**63) is None


# -- 9. a wrapper killed while its job was orphaned ----------------------------------------
# (Jobs run under a wrapper where no spawner can; tests/test_spawner.py kills a spawner.)
def test_a_job_whose_wrapper_was_killed_while_orphaned_stays_running_and_stoppable(
    svc: WorkerService, jobmagic_home: Path
) -> None:
    other = OtherKernel(jobmagic_home, SLEEPER, die=True, spawner=False)
    job_id, wrapper = other.job["id"], other.job["pid"]
    program = _program_pid(svc, job_id)
    os.kill(wrapper, signal.SIGKILL)
    wait_until(lambda: not alive(wrapper), 10)
    job = svc.get(job_id)
    assert job.state is JobState.RUNNING
    assert job.orphaned
    assert [w.state for w in svc.list(all=True)] == [JobState.RUNNING]
    assert alive(program)
    job.stop(timeout=2)
    assert not alive(program)
    assert job.state is JobState.STOPPED
    # And one adopted instead of stopped ends when its program does.
    other = OtherKernel(jobmagic_home, SLEEPER, die=True, spawner=False)
    program = _program_pid(svc, other.job["id"])
    os.kill(other.job["pid"], signal.SIGKILL)
    wait_until(lambda: not alive(other.job["pid"]), 10)
    adopted = svc.adopt(other.job["id"])
    assert adopted.state is JobState.RUNNING
    os.kill(program, signal.SIGTERM)
    assert adopted.wait(10) is None
    assert (adopted.state, adopted.error) == (
        JobState.FAILED,
        "its jobmagic wrapper was killed, so its exit status is unknown",
    )


# -- 10. commands larger than the system runs ----------------------------------------------
@pytest.mark.parametrize("size", [MAX_ARG_STRLEN, 1 << 20])
def test_a_command_larger_than_the_system_runs_is_refused_at_once(
    svc: WorkerService, size: int
) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"^the command is [\d,]+ bytes; this system runs"):
        svc.start("echo " + "x" * size)
    assert time.monotonic() - started < 1.0
    assert svc.store.list() == []


def test_a_command_just_under_the_limit_runs(svc: WorkerService) -> None:
    word = "x" * (MAX_ARG_STRLEN - 200)
    w = svc.start(f": {word}; echo ran")
    assert w.wait(10) == 0
    assert w.output() == b"ran\n"


def test_an_environment_value_larger_than_the_system_passes_is_refused(
    svc: WorkerService,
) -> None:
    with pytest.raises(ValueError, match=r"^the environment variable BIG is [\d,]+ bytes"):
        svc.start("true", env={"BIG": "x" * MAX_ARG_STRLEN})
    assert svc.store.list() == []


def test_spec_itself_allows_what_the_backend_checks() -> None:
    # The size limit is the local backend's (a cluster runs the command elsewhere).
    JobSpec("echo " + "x" * (1 << 20))
