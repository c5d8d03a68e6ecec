"""The job store: a real SQLite file in a private directory, shared by processes.

Permissions, secrets, ids allocated by two processes at once, retention, damaged and
foreign files, schema versions, reconciling jobs nobody watched, and pid reuse.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from engine_helpers import alive, flush_writer, is_zombie, read_until
from helpers import python_cmd

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.process import LocalExecutor
from jobmagic.backends.local.procinfo import signal_job
from jobmagic.backends.registry import Executors
from jobmagic.core.process_identity import process_start_time
from jobmagic.core.spec import JobSpec
from jobmagic.errors import JobNotFound, StoreError
from jobmagic.store.job_store import JobStore
from jobmagic.store.opening import APPLICATION_ID, DB_NAME, move_aside_command
from jobmagic.store.reconcile import reconcile
from jobmagic.store.records import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.timeout(60)

PROGRAMS = Path(__file__).parent / "programs"
REPO = Path(__file__).parent.parent
READY = re.compile(rb"ready (\d+)\n")
SLEEPER = python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()")
_LOGGER_NUMBERS = itertools.count()


def quiet_logger() -> logging.Logger:
    """A fresh service logger per test: handlers one test attaches never reach another's."""
    return logging.getLogger(f"jobmagic-tests.store.{next(_LOGGER_NUMBERS)}")


@pytest.fixture
def svc() -> Iterator[WorkerService]:
    service = WorkerService(logger=quiet_logger(), stop_timeout=5.0)
    yield service
    service.shutdown()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def dead_pid() -> tuple[int, int]:
    """The pid and start time of a process that has exited (and was reaped)."""
    child = subprocess.Popen(["true"])
    start = process_start_time(child.pid)
    child.wait()
    assert start is not None
    return child.pid, start


# -- files and permissions -----------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_home_is_private_and_files_are_owner_only(tmp_path: Path, mask: int) -> None:
    home = tmp_path / "new" / "home"
    with umask(mask):
        service = WorkerService(logger=quiet_logger(), home=home)
        try:
            w = service.start("echo to the log")
            assert w.wait() == 0
            files = {
                "db": home / DB_NAME,
                "wal": home / f"{DB_NAME}-wal",
                "shm": home / f"{DB_NAME}-shm",
                "log": w.log_path,
                "status": home / "status" / f"{w.log_path.stem}.status",
            }
            dirs = {"home": home, "logs": home / "logs", "status dir": home / "status"}
            modes = {name: oct(mode(p)) for name, p in {**files, **dirs}.items()}
            expected = {name: oct(0o600) for name in files} | {name: oct(0o700) for name in dirs}
            assert modes == expected
        finally:
            service.shutdown()


def test_an_existing_home_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    store = JobStore(home)
    try:
        assert mode(home) == 0o700
    finally:
        store.close()


def test_env_values_are_never_stored(svc: WorkerService) -> None:
    secret = "s3cr3t-Token-9f8e7d6c5b4a"  # noqa: S105 - a made-up value to look for
    w = svc.start('printf "%s" "${#API_TOKEN}"', env={"API_TOKEN": secret})
    assert w.wait() == 0
    assert w.output() == str(len(secret)).encode(), "the job got the value"
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert record.env_keys == ["API_TOKEN"]
    assert (svc.store.home / f"{DB_NAME}-wal").exists(), "the WAL is read too"
    for path in sorted(svc.store.home.rglob("*")):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the secret"


def test_schema_version_and_application_id_are_recorded(svc: WorkerService) -> None:
    db = sqlite3.connect(svc.store.path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_schema_1_store_is_migrated_and_its_running_job_stays_reachable(
    tmp_path: Path,
) -> None:
    # A store written by jobmagic 0.1 (schema 1), with a job still running: after the
    # upgrade its record names the local backend and keeps pid, start time, group and
    # status file in the backend's reference, so it can still be stopped and reconciled.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db = sqlite3.connect(home / DB_NAME)
    try:
        db.executescript(MIGRATIONS[0])
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO jobs (command, state, created_at, pid, pid_start, pgid, status_path,"
            " log_path) VALUES ('sleep 60', 'running', 1.0, 4321, 99, 4321, '/s/1.status',"
            " '/l/1.log')"
        )
        db.execute("INSERT INTO jobs (command, state, created_at) VALUES ('true', 'queued', 2.0)")
        db.commit()
    finally:
        db.close()
    store = JobStore(home)
    try:
        running, queued = store.list()
        assert (running.backend, running.pid, running.shell) == ("local", 4321, "/bin/sh")
        assert running.backend_ref == {
            "pid": 4321,
            "start": 99,
            "pgid": 4321,
            "status": "/s/1.status",
        }
        assert (queued.backend, queued.backend_ref) == ("local", None)
        columns = {
            row[1] for row in sqlite3.connect(home / DB_NAME).execute("PRAGMA table_info(jobs)")
        }
        assert not columns & {"pid_start", "pgid", "status_path"}
    finally:
        store.close()


# -- two processes at once -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_processes_allocate_distinct_ids_at_the_same_moment(jobmagic_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBMAGIC_HOME": str(jobmagic_home)}
    children = [
        subprocess.Popen(
            [sys.executable, str(PROGRAMS / "start_many.py"), "200"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
        for child in children:  # both are waiting: release them together
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=150)
            assert child.returncode == 0, err.decode()
            results.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    ids = [job_id for result in results for job_id in result["ids"]]
    assert len(ids) == 400
    assert len(set(ids)) == 400
    assert all(code == 0 for result in results for code in result["codes"])
    store = JobStore(jobmagic_home)
    try:
        records = store.list()
        assert sorted(r.id for r in records) == sorted(ids)
        assert {r.state for r in records} == {JobState.SUCCEEDED}
        assert len({r.owner for r in records}) == 2
    finally:
        store.close()


# -- retention -----------------------------------------------------------------------------
def test_retention_keeps_the_newest_finished_jobs_and_every_running_one(tmp_path: Path) -> None:
    svc = WorkerService(logger=quiet_logger(), keep_finished=3)
    try:
        running = svc.start(SLEEPER)
        read_until(running, READY)
        done = []
        for i in range(5):
            w = svc.start(f"echo {i}")
            w.wait()
            done.append(w)
        flush_writer(svc)  # pruning runs on the end writer's thread after each job's end
        kept = [r.id for r in svc.store.list()]
        assert kept == [running.id] + [w.id for w in done[2:]]
        for pruned in done[:2]:
            assert not pruned.log_path.exists()
            assert not (svc.store.home / "status" / f"{pruned.log_path.stem}.status").exists()
            with pytest.raises(JobNotFound):
                svc.get(pruned.id or 0)
        assert [w.id for w in svc.list()] == kept
        assert running.state is JobState.RUNNING
    finally:
        svc.shutdown()


def test_a_waiter_hears_of_the_end_while_old_jobs_are_still_being_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pruning deletes files and rows of other jobs: whoever waits for this job's end must
    # not wait for that too (a store at its limit prunes after every end).
    svc = WorkerService(logger=quiet_logger(), keep_finished=1)
    pruning, go_on = threading.Event(), threading.Event()
    prune_after = svc._prune_after

    def held_prune(job_ids: Sequence[int]) -> None:
        pruning.set()
        assert go_on.wait(20), "the test never let the prune go on"
        prune_after(job_ids)

    try:
        first = svc.start("echo first")
        assert first.wait(10) == 0
        flush_writer(svc)
        monkeypatch.setattr(svc, "_prune_after", held_prune)
        second = svc.start("echo second")
        assert second.wait(10) == 0, "the waiter waited for the prune"
        assert second.state is JobState.SUCCEEDED
        assert pruning.wait(10)
        assert svc.store.get(first.id or 0) is not None  # not pruned yet: the prune is held
        go_on.set()
        flush_writer(svc)
        assert [r.id for r in svc.store.list()] == [second.id]
        assert not first.log_path.exists()
    finally:
        go_on.set()
        svc.shutdown()


def test_a_lower_limit_set_while_the_service_runs_holds_from_the_next_end(
    tmp_path: Path,
) -> None:
    # (As `%config JobMagics.keep_finished = 2` does in a kernel.)
    svc = WorkerService(logger=quiet_logger(), keep_finished=100)
    try:
        done = [svc.start(f"echo {i}") for i in range(4)]
        for w in done:
            w.wait()
        flush_writer(svc)
        assert len(svc.store.list()) == 4
        svc.keep_finished = 2
        last = svc.start("echo last")
        last.wait()
        flush_writer(svc)
        assert [r.id for r in svc.store.list()] == [done[3].id, last.id]
    finally:
        svc.shutdown()


def test_retention_by_log_bytes_keeps_what_fits(tmp_path: Path) -> None:
    svc = WorkerService(logger=quiet_logger(), max_log_bytes=2500)
    try:
        big_running = svc.start("head -c 5000 /dev/zero; " + SLEEPER)
        read_until(big_running, READY)
        done = []
        for _ in range(4):
            w = svc.start("head -c 1000 /dev/zero")
            w.wait()
            done.append(w)
        flush_writer(svc)
        assert [r.id for r in svc.store.list()] == [big_running.id] + [w.id for w in done[2:]]
        assert sum(r.log_size for r in svc.store.list() if r.state.is_finished) == 2000
    finally:
        svc.shutdown()


def test_prune_at_the_limit_removes_nothing(svc: WorkerService) -> None:
    for _ in range(3):
        svc.start("echo x").wait()
    flush_writer(svc)
    assert svc.store.prune(keep_finished=3, max_log_bytes=6) == []
    assert len(svc.store.list()) == 3
    queued = svc.store.create(JobSpec("never started"))
    assert [r.id for r in svc.store.prune(keep_finished=0, max_log_bytes=0)] == [1, 2, 3]
    assert [r.id for r in svc.store.list()] == [queued.id]


def test_prune_of_many_jobs_removes_the_oldest_in_batches_with_their_logs(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "home")
    try:
        ids = [store.create(JobSpec(f"echo {i}")).id for i in range(1203)]
        store.finish_many(dict.fromkeys(ids, (JobState.SUCCEEDED, 0, None, 1.0, None)))
        for i in ids:
            store.log_path(i).write_bytes(b"x")
        queued = store.create(JobSpec("never started"))
        removed = store.prune(keep_finished=2, max_log_bytes=1 << 30)
        assert [r.id for r in removed] == ids[:-2]
        assert [r.id for r in store.list()] == [*ids[-2:], queued.id]
        assert sorted(p.name for p in store.log_path(ids[0]).parent.iterdir()) == sorted(
            store.log_path(i).name for i in ids[-2:]
        )
        # Just past the limit: only the oldest goes.
        store.finish(queued.id, JobState.FAILED, 1, None)
        assert [r.id for r in store.prune(keep_finished=2, max_log_bytes=1 << 30)] == [ids[-2]]
    finally:
        store.close()


# -- damaged, foreign and newer files ------------------------------------------------------
def test_damaged_file_gives_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / DB_NAME
    db.write_bytes(b"this is not a database, it was overwritten\n" * 200)
    with pytest.raises(StoreError) as caught:
        JobStore(home)
    message = str(caught.value)
    assert str(db) in message
    assert move_aside_command(home) in message
    with pytest.raises(StoreError):
        WorkerService(home=home)
    # What the message says to do works: the files move aside and a new store starts.
    subprocess.run(["bash", "-c", move_aside_command(home)], check=True)
    assert not db.exists()
    (moved,) = home.glob(f"old-*/{DB_NAME}")
    assert moved.read_bytes().startswith(b"this is not a database")
    assert JobStore(home).list() == []


def test_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db_path = home / DB_NAME
    foreign = sqlite3.connect(db_path)
    foreign.execute("CREATE TABLE notes (body TEXT)")
    foreign.execute("INSERT INTO notes VALUES ('mine')")
    foreign.commit()
    foreign.close()
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="not a jobmagic job store") as caught:
        JobStore(home)
    assert str(db_path) in str(caught.value)
    assert "mv " in str(caught.value)
    assert db_path.read_bytes() == before, "a foreign database must not be written to"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    JobStore(home).close()
    db = sqlite3.connect(home / DB_NAME)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer") as caught:
        JobStore(home)
    assert str(home / DB_NAME) in str(caught.value)


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / DB_NAME).touch()
    store = JobStore(home)
    try:
        assert store.create(JobSpec("true")).id == 1
    finally:
        store.close()


# -- records -------------------------------------------------------------------------------
def test_records_are_shared_between_store_connections(svc: WorkerService) -> None:
    reader = JobStore(svc.store.home)
    try:
        version = reader.data_version()
        w = svc.start("exit 5", name="five")
        w.wait()
        assert reader.data_version() != version
        record = reader.get(w.id or 0)
        assert record is not None
        assert (record.name, record.command, record.state, record.exit_code) == (
            "five",
            "exit 5",
            JobState.FAILED,
            5,
        )
        assert record.pid == w.pid
        assert record.backend == "local"
        assert record.backend_ref is not None
        assert record.backend_ref["pid"] == record.backend_ref["pgid"] == w.pid
        assert record.backend_ref["start"] is not None
        assert record.log_path == str(w.log_path)
        assert json.loads(json.dumps(record.backend_ref)) == record.backend_ref
        assert reader.list(states=[JobState.RUNNING]) == []
        assert [r.id for r in reader.list(states=[JobState.FAILED])] == [w.id]
    finally:
        reader.close()


def test_every_change_of_a_job_moves_the_store_revision_whoever_writes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store, other = JobStore(home), JobStore(home)
    try:

        def revision() -> int:
            return int(store.read("SELECT value FROM store_info WHERE key = 'rev'")[0][0])

        def rev_of(job_id: int) -> int:
            record = store.get(job_id)
            assert record is not None
            return record.rev

        assert revision() == 0
        first = store.create(JobSpec("true"))
        second = other.create(JobSpec("false"))
        assert rev_of(first.id) < rev_of(second.id) == revision()
        before = revision()
        other.update(first.id, pid=7)  # another connection's write, by the store's triggers
        assert rev_of(first.id) == revision() == before + 1
        store.read("SELECT 1")  # a read moves nothing
        assert revision() == before + 1
        other.delete(second.id)
        assert store.read("SELECT id, rev FROM removed_jobs") == [(second.id, revision())]
        assert revision() == before + 2
        assert [r.id for r in store.list()] == [first.id]
    finally:
        store.close()
        other.close()


def test_update_refuses_unknown_fields(svc: WorkerService) -> None:
    record = svc.store.create(JobSpec("true"))
    with pytest.raises(ValueError, match="bogus"):
        svc.store.update(record.id, bogus=1)


# -- reconciling jobs nobody watched -------------------------------------------------------
def _orphan(store: JobStore, status: bytes | None, stop_requested_by: str | None = None) -> int:
    """A RUNNING record whose owner and process are both gone, with ``status`` on disk."""
    record = store.create(JobSpec("a job whose kernel died"))
    owner_pid, owner_start = dead_pid()
    job_pid, job_start = dead_pid()
    status_path = LocalExecutor(store.home).status_path(store.log_path(record.id))
    store.update(
        record.id,
        state=JobState.RUNNING,
        pid=job_pid,
        backend_ref=local_ref(job_pid, job_start, status_path),
        owner_pid=owner_pid,
        owner_start=owner_start,
        started_at=1.0,
        stop_requested_by=stop_requested_by,
    )
    if status is not None:
        status_path.write_bytes(status)
    return record.id


def test_an_orphans_end_is_never_before_its_start(jobmagic_home: Path) -> None:
    # A status file's mtime is coarser than time.time(): a job that ran for a moment
    # could read as ending before it started (a negative runtime).
    store = JobStore(jobmagic_home)
    try:
        job_id = _orphan(store, b"0\n")
        status = LocalExecutor(store.home).status_path(store.log_path(job_id))
        written = status.stat().st_mtime
        store.update(job_id, started_at=written + 0.003)
        reconcile_store(store)
        record = store.get(job_id)
        assert record is not None
        assert record.ended_at == record.started_at
        assert record.runtime == 0
    finally:
        store.close()


def local_ref(pid: int, start: int | None, status_path: Path) -> dict[str, object]:
    """The local backend's reference to the job led by ``pid``."""
    return {"pid": pid, "start": start, "pgid": pid, "status": str(status_path)}


def reconcile_store(store: JobStore) -> list[int]:
    """Reconcile ``store`` with the backends a kernel has."""
    return reconcile(store, Executors(store.home))


UNKNOWN = "ended while no kernel was watching it; its exit status is unknown"


@pytest.mark.parametrize(
    ("status", "stop_by", "expected"),
    [
        (b"7\n", None, (JobState.FAILED, 7, "exit code 7")),
        (b"0\n", None, (JobState.SUCCEEDED, 0, None)),
        (b"137\n", None, (JobState.FAILED, -9, "killed by SIGKILL")),
        (b"143\n", "ui", (JobState.STOPPED, -15, None)),
        (None, None, (JobState.FAILED, None, UNKNOWN)),
        (b"7", None, (JobState.FAILED, None, UNKNOWN)),  # half-written: no newline yet
    ],
    ids=["exit-7", "exit-0", "killed", "stopped-by-ui", "no-status", "partial-status"],
)
def test_reconcile_records_the_true_end_of_an_orphan(
    jobmagic_home: Path,
    status: bytes | None,
    stop_by: str | None,
    expected: tuple[JobState, int | None, str | None],
) -> None:
    store = JobStore(jobmagic_home)
    try:
        job_id = _orphan(store, status, stop_by)
        assert reconcile_store(store) == [job_id]
        record = store.get(job_id)
        assert record is not None
        assert (record.state, record.exit_code, record.error) == expected
        assert record.ended_at is not None
        assert reconcile_store(store) == [], "a finished record is left alone"
    finally:
        store.close()


@contextlib.contextmanager
def zombie() -> Iterator[tuple[int, int]]:
    """A child that has exited but is not reaped yet (as under a slow or absent init)."""
    child = subprocess.Popen(["true"])
    start = process_start_time(child.pid)
    assert start is not None
    fd = os.pidfd_open(child.pid)
    try:
        assert select.select([fd], [], [], 10)[0], "the child did not exit"
    finally:
        os.close(fd)
    assert is_zombie(child.pid)
    try:
        yield child.pid, start
    finally:
        child.wait()


@pytest.mark.parametrize("who", ["job", "owner"])
def test_reconcile_treats_an_unreaped_process_as_ended(jobmagic_home: Path, who: str) -> None:
    # An orphaned job's wrapper is reaped by init, a crashed kernel by its server: until
    # then it is a zombie, which has ended all the same.
    store = JobStore(jobmagic_home)
    try:
        job_id = _orphan(store, b"7\n")
        with zombie() as (pid, start):
            if who == "job":
                record = store.get(job_id)
                assert record is not None
                assert record.backend_ref is not None
                status_path = Path(str(record.backend_ref["status"]))
                store.update(job_id, pid=pid, backend_ref=local_ref(pid, start, status_path))
            else:
                store.update(job_id, owner_pid=pid, owner_start=start)
            record = store.get(job_id)
            assert record is not None
            assert not record.owner_alive
            assert reconcile_store(store) == [job_id]
        record = store.get(job_id)
        assert record is not None
        assert (record.state, record.exit_code) == (JobState.FAILED, 7)
    finally:
        store.close()


def test_reconcile_leaves_a_queued_job_whose_kernel_died_queued_and_orphaned(
    jobmagic_home: Path,
) -> None:
    store = JobStore(jobmagic_home)
    try:
        record = store.create(JobSpec("never started"))
        owner_pid, owner_start = dead_pid()
        store.update(record.id, owner_pid=owner_pid, owner_start=owner_start)
        assert reconcile_store(store) == []
        after = store.get(record.id)
        assert after is not None
        assert (after.state, after.orphaned) == (JobState.QUEUED, True)
    finally:
        store.close()


def test_reconcile_leaves_jobs_of_live_owners_alone(svc: WorkerService) -> None:
    w = svc.start(SLEEPER)
    read_until(w, READY)
    assert svc.reconcile() == []
    w.stop(timeout=5)


# -- pid reuse -----------------------------------------------------------------------------
def test_a_reused_pid_is_never_signalled(svc: WorkerService) -> None:
    w = svc.start(SLEEPER)
    child = int(read_until(w, READY).group(1))
    assert w.pid is not None
    assert w.id is not None
    real_start = process_start_time(w.pid)
    assert real_start is not None
    # As if the job ended and an unrelated process got its pid: the start time differs.
    svc.store.update(w.id, backend_ref=local_ref(w.pid, real_start - 1, Path("/nonexistent")))
    assert signal_job(w.pid, real_start - 1, w.pid, signal.SIGTERM) is False
    assert alive(w.pid)
    assert alive(child)
    # The server's and other kernels' stop goes through the record: it sends nothing.
    other = WorkerService(logger=quiet_logger())
    try:
        view = other.get(w.id)
        assert not view.owned
        view.stop()
        assert alive(w.pid)
        assert alive(child)
        assert other.reconcile() == [], "the owner (this process) is alive"
    finally:
        other.shutdown()
    assert w.state is JobState.RUNNING
    w.stop(timeout=5)  # the owner still holds the process itself and can stop it
    assert not alive(child)
    assert signal_job(w.pid, real_start, w.pid, signal.SIGTERM) is False, "gone is gone"


def test_a_commit_is_visible_when_the_changed_file_says_so(jobmagic_home: Path) -> None:
    # Watchers (the server's change feed) wake on this file: when it changes, the commit
    # must be visible to other connections, unlike at the WAL write that precedes it.
    from inotify_simple import INotify, flags

    writer, reader = JobStore(jobmagic_home), JobStore(jobmagic_home)
    inotify = INotify()
    try:
        inotify.add_watch(writer.changed_path, flags.CLOSE_WRITE)
        assert mode(writer.changed_path) == 0o600
        for _ in range(20):
            version = reader.data_version()
            writer.create(JobSpec("true"))
            assert inotify.read(timeout=10_000), "no change signalled"
            assert reader.data_version() != version
        assert [r.id for r in reader.list()] == list(range(1, 21))
    finally:
        inotify.close()
        writer.close()
        reader.close()
