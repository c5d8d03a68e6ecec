"""``WorkerService`` with real processes: finding jobs, names, the two-step flow, many jobs
at once, races between threads, how it spawns, events and shutdown.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import alive, flush_watcher, group_members, read_until, wait_exit
from helpers import python_cmd, wait_until

import jobmagic.backends.local.wrapper
from jobmagic import JobState, Worker, WorkerService, get_service
from jobmagic.backends.local.cgroups import JobCgroup
from jobmagic.core.events import JobEvent
from jobmagic.errors import JobmagicError, JobNameInUse, JobNotFound, UnknownBackend
from jobmagic.store.job_store import JobStore

pytestmark = pytest.mark.timeout(60)

PROGRAMS = Path(__file__).parent / "programs"
READY = re.compile(rb"ready (\d+)\n")
SLEEPER = python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()")
_LOGGER_NUMBERS = itertools.count()


def quiet_logger() -> logging.Logger:
    """A fresh service logger per test: handlers one test attaches never reach another's."""
    return logging.getLogger(f"jobmagic-tests.service.{next(_LOGGER_NUMBERS)}")


@pytest.fixture
def svc() -> Iterator[WorkerService]:
    service = WorkerService(logger=quiet_logger(), stop_timeout=5.0)
    yield service
    service.shutdown()


# -- finding jobs --------------------------------------------------------------------------
def test_get_by_id_and_by_name(svc: WorkerService) -> None:
    w = svc.start("true", name="train")
    w.wait()
    assert svc.get(w.id or 0) is w
    assert svc.get(str(w.id)) is w
    assert svc.get(f"#{w.id}") is w
    assert svc.get("train") is w


def test_unknown_name_lists_close_names(svc: WorkerService) -> None:
    for name in ("train", "trainer", "evaluate"):
        svc.start("true", name=name).wait()
    with pytest.raises(JobNotFound) as caught:
        svc.get("trian")
    message = str(caught.value)
    assert "'trian'" in message
    assert "train" in message
    assert "evaluate" not in message


def test_unknown_id_lists_known_jobs(svc: WorkerService) -> None:
    ids = [svc.start("true").id for _ in range(3)]
    for job_id in ids:
        svc.get(job_id or 0).wait()
    with pytest.raises(JobNotFound) as caught:
        svc.get(99)
    message = str(caught.value)
    assert "99" in message
    assert all(str(job_id) in message for job_id in ids), message


def test_unknown_job_in_an_empty_store(svc: WorkerService) -> None:
    with pytest.raises(JobNotFound, match="no jobs yet"):
        svc.get("anything")
    with pytest.raises(LookupError):  # JobNotFound is a LookupError too
        svc.get(1)


def test_running_name_cannot_be_reused_until_the_job_ends(svc: WorkerService) -> None:
    first = svc.start(SLEEPER, name="train")
    read_until(first, READY)
    with pytest.raises(JobNameInUse, match="train"):
        svc.start("true", name="train")
    with pytest.raises(ValueError, match="train"):  # JobNameInUse is a ValueError too
        svc.add(Worker("true", name="train"))
    first.stop(timeout=5)
    second = svc.start("echo again", name="train")
    assert second.wait() == 0
    assert svc.get("train") is second, "a name means its newest job"
    assert [w.id for w in svc.list()] == [first.id, second.id]


def test_names_of_ended_jobs_in_the_store_resolve(svc: WorkerService) -> None:
    w = svc.start("exit 2", name="old")
    w.wait()
    other = WorkerService(logger=quiet_logger())
    try:
        view = other.get("old")
        assert (view.id, view.state, view.exit_code) == (w.id, JobState.FAILED, 2)
        assert not view.owned
        assert view.output() == b""
    finally:
        other.shutdown()


# -- the seed's two-step flow --------------------------------------------------------------
def test_two_step_flow(svc: WorkerService) -> None:
    w = Worker("echo hi")
    assert w.id is None
    assert w.state is JobState.QUEUED
    assert svc.add(w) is w
    assert w.id is not None
    assert w.state is JobState.QUEUED
    assert w.start() is w
    assert w.wait() == 0
    assert w.output() == b"hi\n"
    assert svc.list() == [w]
    assert len(svc) == 1


def test_adding_a_worker_to_two_services_is_refused(svc: WorkerService) -> None:
    w = svc.add(Worker("true"))
    other = WorkerService(logger=quiet_logger())
    try:
        with pytest.raises(JobmagicError, match="already belongs"):
            other.add(w)
    finally:
        other.shutdown()
    w.start()
    w.wait()


def test_stream_of_a_job_added_but_not_started_waits_for_it(svc: WorkerService) -> None:
    w = svc.add(Worker("echo hi"))
    starter = threading.Timer(0.2, w.start)
    starter.start()
    try:
        assert b"".join(w.stream()) == b"hi\n"
    finally:
        starter.join()
        w.wait()


def test_stop_before_start_leaves_the_job_stopped(svc: WorkerService) -> None:
    # E.g. the panel's "stop all" sees the QUEUED job of a cell that is starting it.
    def stop_new_jobs(event: JobEvent) -> None:
        if event.kind == "added":
            event.worker.stop(timeout=1)

    unsubscribe = svc.subscribe(stop_new_jobs)
    try:
        w = svc.start("echo never")
    finally:
        unsubscribe()
    assert (w.state, w.pid) == (JobState.STOPPED, None)
    assert w.output() == b""


# -- many jobs -----------------------------------------------------------------------------
def test_thread_count_stays_flat_from_1_to_200_jobs(svc: WorkerService) -> None:
    first = svc.start("sleep 1000")
    threads_with_one = threading.active_count()
    others = [svc.start("sleep 1000") for _ in range(199)]
    assert all(w.state is JobState.RUNNING for w in [first, *others])
    assert threading.active_count() == threads_with_one
    svc.stop_all(timeout=5)
    assert all(w.state is JobState.STOPPED for w in [first, *others])
    assert threading.active_count() == threads_with_one


def _payload(i: int) -> bytes:
    return f"job {i}\n".encode() + b"".join(b"%d\n" % k for k in range(i, i + 51))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_500_jobs_at_once_keep_their_own_output_and_exit_code(svc: WorkerService) -> None:
    workers = [
        svc.start(f"printf 'job {i}\\n'; seq {i} {i + 50}; exit {i % 100}") for i in range(500)
    ]
    for i, w in enumerate(workers):
        assert w.wait() == i % 100
    for i, w in enumerate(workers):
        assert w.output() == _payload(i), f"job {i}"
        assert w.state is (JobState.SUCCEEDED if i % 100 == 0 else JobState.FAILED)
    records = {r.id: r for r in svc.store.list()}
    assert len({w.id for w in workers}) == 500
    for i, w in enumerate(workers):
        assert records[w.id or 0].exit_code == i % 100


@pytest.mark.timeout(90)
def test_stop_races_start_wait_and_stream(svc: WorkerService) -> None:
    errors: list[BaseException] = []
    started: list[Worker] = []
    threads: list[threading.Thread] = []
    lock = threading.Lock()  # guards errors, started and threads

    def guarded(target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            with lock:
                errors.append(exc)

    def spawn_thread(target: Any, *args: Any) -> None:
        thread = threading.Thread(target=guarded, args=(target, *args), daemon=True)
        with lock:
            threads.append(thread)
        thread.start()

    def on_event(event: JobEvent) -> None:
        if event.kind == "added":
            w = event.worker
            spawn_thread(w.stop, 2.0)
            spawn_thread(w.wait)
            spawn_thread(lambda: b"".join(w.stream()))

    def starter(n: int) -> None:
        for i in range(n):
            w = svc.start(SLEEPER if i % 2 else "echo quick")
            with lock:
                started.append(w)
            spawn_thread(w.stop, 2.0)

    svc.subscribe(on_event)
    starters = [threading.Thread(target=guarded, args=(starter, 15)) for _ in range(2)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join(60)
        assert not thread.is_alive(), "svc.start hung"
    with lock:
        pending = list(threads)
    for thread in pending:
        thread.join(30)
        assert not thread.is_alive(), "a stop, wait or stream hung"
    assert errors == []
    assert len(started) == 30
    for w in started:
        assert w.state.is_finished
        if w.pid is not None:
            assert group_members(w.pid) == []


# -- how jobs are spawned ------------------------------------------------------------------
def test_spawn_stays_on_the_vfork_path(svc: WorkerService, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(jobmagic.backends.local.wrapper.subprocess, "Popen", RecordingPopen)
    w = svc.start("echo spawned")
    assert w.wait() == 0
    assert w.output() == b"spawned\n"
    assert len(calls) == 1
    kwargs = calls[0]
    # CPython uses vfork only when no preexec_fn (nor user/group changes) is given.
    assert subprocess._USE_VFORK is True  # type: ignore[attr-defined]
    for disabling in ("preexec_fn", "user", "group", "extra_groups"):
        assert kwargs.get(disabling) is None, disabling
    assert kwargs.get("umask", -1) == -1
    assert kwargs.get("start_new_session") or kwargs.get("process_group") == 0


def test_each_job_is_its_own_session_and_process_group(svc: WorkerService) -> None:
    w = svc.start(SLEEPER)
    pid = int(read_until(w, READY).group(1))
    assert w.pid is not None
    assert os.getsid(w.pid) == w.pid
    assert os.getpgid(w.pid) == w.pid
    assert os.getpgid(pid) == w.pid, "the command runs in the job's group"
    assert os.getpgid(0) != w.pid
    w.stop(timeout=5)


# -- events --------------------------------------------------------------------------------
def test_subscribers_see_added_and_state_changes(svc: WorkerService) -> None:
    seen: list[tuple[str, JobState]] = []
    unsubscribe = svc.subscribe(lambda e: seen.append((e.kind, e.worker.state)))
    assert svc.listener_count == 1
    w = svc.start("exit 2")
    w.wait()
    flush_watcher(svc)
    assert seen == [
        ("added", JobState.QUEUED),
        ("state", JobState.RUNNING),
        ("state", JobState.FAILED),
    ]
    svc.remove(w.id or 0)
    assert seen[-1] == ("removed", JobState.FAILED)
    unsubscribe()
    assert svc.listener_count == 0
    svc.start("true").wait()
    flush_watcher(svc)
    assert len(seen) == 4


def test_a_failing_listener_does_not_break_the_service(svc: WorkerService) -> None:
    def broken(_event: JobEvent) -> None:
        raise RuntimeError("listener bug")

    svc.subscribe(broken)
    w = svc.start("echo still works")
    assert w.wait() == 0


# -- removing ------------------------------------------------------------------------------
def test_remove_deletes_a_finished_job_and_refuses_a_running_one(svc: WorkerService) -> None:
    running = svc.start(SLEEPER)
    read_until(running, READY)
    with pytest.raises(JobmagicError, match="stop it first"):
        svc.remove(running.id or 0)
    done = svc.start("echo x")
    done.wait()
    log = done.log_path
    assert log.exists()
    svc.remove(done.id or 0)
    assert not log.exists()
    with pytest.raises(JobNotFound):
        svc.get(done.id or 0)
    running.stop(timeout=5)
    assert svc.remove_finished() == 1
    assert svc.list(all=True) == []


# -- shutdown ------------------------------------------------------------------------------
def test_shutdown_stops_attached_jobs_and_leaves_detached_ones() -> None:
    svc = WorkerService(logger=quiet_logger(), stop_timeout=5.0)
    attached = svc.start(SLEEPER)
    detached = svc.start(SLEEPER, detach=True)
    attached_pid = int(read_until(attached, READY).group(1))
    detached_pid = int(read_until(detached, READY).group(1))
    leader = detached.pid
    assert leader is not None
    try:
        svc.shutdown()
        assert attached.state is JobState.STOPPED
        assert not alive(attached_pid)
        assert alive(detached_pid), "a detached job outlives its service"
        assert detached.state is JobState.RUNNING
        record = svc.store.get(detached.id or 0)
        assert record is not None
        assert record.state is JobState.RUNNING
        with pytest.raises(JobmagicError, match="shut down"):
            svc.start("true")
    finally:
        os.killpg(leader, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(leader, 0)  # the watcher that would reap it is gone
        # Its owner (this process) lives on, so nothing would reconcile it: the job's
        # cgroup, empty now, is removed here.
        stored = svc.store.get(detached.id or 0)
        ref = stored.backend_ref if stored is not None else None
        cgroup = JobCgroup.from_ref(ref.get("cgroup")) if ref else None
        if cgroup is not None:
            wait_until(lambda: not cgroup.members(), 10)
            cgroup.remove()


def test_shutdown_is_idempotent() -> None:
    svc = WorkerService(logger=quiet_logger())
    w = svc.start("true")
    w.wait()
    svc.shutdown()
    svc.shutdown()
    assert not svc.watcher.thread.is_alive()


def test_stop_all_stops_jobs_in_parallel(svc: WorkerService) -> None:
    workers = [
        svc.start(
            python_cmd(
                "import os, signal, sys\n"
                "signal.signal(signal.SIGTERM, lambda *a: None)\n"
                "print('ready', os.getpid())\n"
                "while True: signal.pause()"
            )
        )
        for _ in range(5)
    ]
    for w in workers:
        read_until(w, READY)
    started = time.monotonic()
    svc.stop_all(timeout=1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.5, "five 1-second grace periods run side by side, not in turn"
    assert all(w.state is JobState.STOPPED for w in workers)


def test_stop_all_of_many_jobs_records_every_request_and_end(svc: WorkerService) -> None:
    workers = [svc.start("sleep 60") for _ in range(200)]
    pids = [w.pid for w in workers]
    svc.stop_all(timeout=5)
    assert {(w.state, w.exit_code) for w in workers} == {(JobState.STOPPED, -signal.SIGTERM)}
    assert not [pid for pid in pids if pid is not None and alive(pid)]
    records = [svc.store.get(w.id or 0) for w in workers]
    assert {(r.state, r.stop_requested_by) for r in records if r is not None} == {
        (JobState.STOPPED, "kernel")
    }
    assert len(records) == 200


def test_ends_seen_together_are_written_in_one_transaction(
    svc: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[int]] = []
    write = svc.store.finish_many

    def counted(ends: Any) -> None:  # the real write, counted
        batches.append(sorted(ends))
        write(ends)

    monkeypatch.setattr(svc.store, "finish_many", counted)
    workers = [svc.start("sleep 60") for _ in range(50)]
    # The writer is kept busy while the jobs end (as a slow store would keep it), so the
    # ends pile up for it: how fast this machine is then cannot split them.
    held, release = threading.Event(), threading.Event()

    def busy() -> None:
        held.set()
        release.wait(30)

    assert svc._ends.call(busy)
    assert held.wait(30)
    stopper = threading.Thread(target=svc.stop_all, kwargs={"timeout": 5})
    stopper.start()
    for w in workers:
        wait_exit(w.pid or 0)
    flush_watcher(svc)  # (it has read the ends the spawner sent by then)
    release.set()
    stopper.join(60)
    assert not stopper.is_alive()
    assert sorted(i for batch in batches for i in batch) == sorted(w.id for w in workers)
    assert len(batches) < len(workers) / 2, f"{len(batches)} transactions for 50 ends"
    records = [svc.store.get(w.id or 0) for w in workers]
    assert {r.state for r in records if r is not None} == {JobState.STOPPED}


def test_ends_that_cannot_be_written_together_each_say_so_and_are_written_later(
    svc: WorkerService, jobmagic_home: Path
) -> None:
    workers = [svc.start("sleep 60") for _ in range(20)]
    svc.store._db.execute("PRAGMA query_only=1")  # every write now fails, as on a read-only disk
    svc.stop_all(timeout=5)
    for w in workers:
        assert (w.state, w.exit_code) == (JobState.STOPPED, -signal.SIGTERM)
        assert w.error is not None
        assert w.error.startswith("the job's end could not be recorded: "), w.error
    svc.store._db.execute("PRAGMA query_only=0")
    reader = JobStore(jobmagic_home)
    try:
        wait_until(
            lambda: all((r := reader.get(w.id or 0)) and r.state.is_finished for w in workers),
            15,
        )
    finally:
        reader.close()


@pytest.mark.timeout(30)
def test_listeners_on_the_watcher_thread_can_stop_but_not_wait(svc: WorkerService) -> None:
    # A listener sees a short job end (on the watcher thread) and stops a long one.
    errors: list[BaseException] = []
    long_job = svc.start(SLEEPER)
    read_until(long_job, re.compile(rb"ready \d+\n"))
    short_jobs: list[Worker] = []

    def on_event(event: JobEvent) -> None:
        if event.worker not in short_jobs or not event.worker.state.is_finished:
            return
        try:
            long_job.wait(timeout=0)
        except JobmagicError as exc:
            errors.append(exc)
        long_job.stop()  # would deadlock if it waited for the job to end on this thread

    unsubscribe = svc.subscribe(on_event)
    try:
        short_jobs.append(svc.add(Worker("exit 0")))
        short_jobs[0].start()
        assert long_job.wait(timeout=20) is not None, "the stop from the listener never landed"
    finally:
        unsubscribe()
    assert long_job.state is JobState.STOPPED
    assert errors, "wait() on the watcher thread should refuse instead of blocking"
    assert "add_done_callback" in str(errors[0])


# -- stops from another kernel, backends, the seed's one-step start ------------------------
def test_a_stop_from_another_kernel_escalates_to_sigkill(svc: WorkerService) -> None:
    # The same stop policy as the owner's: SIGTERM, the grace period, then SIGKILL.
    w = svc.start(shlex.join([sys.executable, str(PROGRAMS / "trap_term.py")]))
    read_until(w, READY)
    other = WorkerService(logger=quiet_logger())
    try:
        view = other.get(w.id or 0)
        assert not view.owned
        view.stop(timeout=0.5)  # returns at once: the job is another kernel's
        assert w.wait(20) == -signal.SIGKILL
        assert w.state is JobState.STOPPED
        assert b"got TERM\n" in w.output(), "SIGTERM came first"
        record = svc.store.get(w.id or 0)
        assert record is not None
        assert record.stop_requested_by == "kernel"
        assert group_members(w.pid or 0) == []
    finally:
        other.shutdown()


def test_an_unknown_backend_is_refused_before_anything_is_recorded(svc: WorkerService) -> None:
    with pytest.raises(UnknownBackend, match=r"unknown backend 'slurm'; jobmagic has: local"):
        svc.start("true", backend="slurm")
    with pytest.raises(ValueError, match="slurm"):  # UnknownBackend is a ValueError too
        svc.start("true", backend="slurm")
    assert svc.store.list() == []


def test_a_worker_started_on_its_own_joins_the_kernels_service() -> None:
    w = Worker("echo alone")
    assert w.start() is w
    assert w.wait(10) == 0
    assert get_service().get(w.id or 0) is w
    assert w.output() == b"alone\n"


def test_an_endless_timeout_leaves_the_watcher_working(svc: WorkerService) -> None:
    # A deadline beyond what epoll can sleep must not end the one thread that sees exits.
    w = svc.start(SLEEPER, timeout=float("inf"))
    read_until(w, READY)
    assert svc.start("exit 4", timeout=30 * 86400).wait(10) == 4
    w.stop(timeout=float("inf"))
    assert (w.state, w.exit_code) == (JobState.STOPPED, -signal.SIGTERM)
    assert svc.watcher.thread.is_alive()


def test_a_watcher_closes_cleanly_while_other_threads_set_timers() -> None:
    """close() and call_later() race the watcher thread, which closes its descriptors."""
    from jobmagic.engine.watcher import Watcher

    for _ in range(200):
        watcher = Watcher()
        go = threading.Event()
        errors: list[BaseException] = []

        def set_timers(
            watcher: Watcher = watcher,
            go: threading.Event = go,
            errors: list[BaseException] = errors,
        ) -> None:
            go.wait()
            try:
                for _ in range(50):
                    watcher.call_later(0, lambda: None)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        other = threading.Thread(target=set_timers)
        other.start()
        go.set()
        watcher.close()
        other.join(10)
        assert errors == []
        assert not watcher.thread.is_alive()
