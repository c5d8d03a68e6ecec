"""``Worker`` with real processes: exit codes, stopping whole jobs, timeouts, start failures,
input checks, the child's environment, logging handlers and ``await``.

Jobs that must be running when the test acts print a line and block; the test reads their
output until it sees that line (a handshake, never a sleep).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import re
import shlex
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import alive, flush_watcher, group_members, read_until
from helpers import python_cmd

from jobmagic import JobState, Worker, WorkerService
from jobmagic.engine.output_feed import EMIT_INTERVAL
from jobmagic.errors import JobmagicError

pytestmark = pytest.mark.timeout(60)

PROGRAMS = Path(__file__).parent / "programs"
READY = re.compile(rb"ready (\d+)\n")


def program(name: str, *args: str) -> str:
    """The command line that runs ``tests/programs/<name>`` with this interpreter."""
    return shlex.join([sys.executable, str(PROGRAMS / name), *args])


def watching(worker: Worker) -> bool:
    """Whether the engine watches the job's log (someone waits for its output)."""
    assert worker.binding is not None
    return worker.binding.feed.watching


def quiet_logger() -> logging.Logger:
    """A fresh service logger per test: handlers one test attaches never reach another's."""
    return logging.getLogger(f"jobmagic-tests.{next(_LOGGER_NUMBERS)}")


_LOGGER_NUMBERS = itertools.count()


@pytest.fixture
def svc() -> Iterator[WorkerService]:
    service = WorkerService(logger=quiet_logger(), stop_timeout=5.0)
    yield service
    service.shutdown()


# -- exit codes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "exit_code", "state", "error"),
    [
        ("true", 0, JobState.SUCCEEDED, None),
        ("exit 3", 3, JobState.FAILED, "exit code 3"),
        (
            python_cmd("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
            -9,
            JobState.FAILED,
            "killed by SIGKILL",
        ),
        ("sh -c 'kill -9 $$'", -9, JobState.FAILED, "killed by SIGKILL"),
        (
            python_cmd("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"),
            -11,
            JobState.FAILED,
            "killed by SIGSEGV",
        ),
    ],
    ids=["exit-0", "exit-3", "python-sigkill", "sh-sigkill", "sigsegv"],
)
def test_exit_code_is_exact(
    svc: WorkerService, command: str, exit_code: int, state: JobState, error: str | None
) -> None:
    w = svc.start(command)
    assert w.wait() == exit_code
    assert (w.exit_code, w.state, w.error) == (exit_code, state, error)
    assert w.started_at is not None
    assert w.ended_at is not None
    assert w.ended_at >= w.started_at
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert (record.state, record.exit_code, record.error) == (state, exit_code, error)


def test_wait_with_timeout_returns_none_while_running(svc: WorkerService) -> None:
    w = svc.start(python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()"))
    read_until(w, READY)
    assert w.wait(timeout=0.05) is None
    assert w.state is JobState.RUNNING
    w.stop(timeout=5)
    assert w.wait(timeout=0) == -15


# -- stop ----------------------------------------------------------------------------------
def test_stop_ends_every_process_of_the_job(svc: WorkerService) -> None:
    w = svc.start("sh -c 'sleep 1000 & echo $!; sleep 1000 & echo $!; echo $$; wait'")
    match = read_until(w, re.compile(rb"^(\d+)\n(\d+)\n(\d+)\n"))
    pids = [int(p) for p in match.groups()]
    assert w.pid is not None
    members = set(group_members(w.pid))
    assert set(pids) <= members, "the job's processes are in its own process group"
    started = time.monotonic()
    w.stop(timeout=30)
    assert time.monotonic() - started < 20, "sleep and sh end on SIGTERM, no SIGKILL needed"
    assert w.state is JobState.STOPPED
    assert [p for p in members if alive(p)] == []
    assert group_members(w.pid) == []


def test_job_that_traps_sigterm_is_killed_after_the_grace_period(svc: WorkerService) -> None:
    w = svc.start(program("trap_term.py"))
    pid = int(read_until(w, READY).group(1))
    started = time.monotonic()
    w.stop(timeout=1)
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, "SIGKILL came before the grace period was over"
    assert elapsed < 20
    assert b"got TERM\n" in w.output(), "the program saw SIGTERM and lived on"
    assert not alive(pid)
    assert w.state is JobState.STOPPED
    assert w.error is None


@pytest.mark.timeout(30)
def test_a_second_stop_may_shorten_the_grace_period(svc: WorkerService) -> None:
    w = svc.start(program("trap_term.py"))
    pid = int(read_until(w, READY).group(1))
    w.stop(timeout=600, wait=False)
    started = time.monotonic()
    w.stop(timeout=0.2)
    assert time.monotonic() - started < 10, "the second, shorter timeout was ignored"
    assert not alive(pid)
    assert w.state is JobState.STOPPED
    assert w.exit_code == -9


@pytest.mark.parametrize("suffix", ["", "; echo after"], ids=["alone", "shell-stays"])
def test_graceful_program_gets_to_finish_within_the_grace_period(
    svc: WorkerService, suffix: str
) -> None:
    w = svc.start(program("graceful.py") + suffix)
    pid = int(read_until(w, READY).group(1))
    started = time.monotonic()
    w.stop(timeout=30)
    assert time.monotonic() - started < 20, "it exits on its own half a second after SIGTERM"
    assert w.output().endswith(b"bye\n")
    assert not alive(pid)
    assert w.state is JobState.STOPPED


@pytest.mark.parametrize(
    ("prog", "exit_code"),
    [("graceful.py", 0), ("trap_term.py", -9)],
    ids=["exits-0-on-term", "killed-after-grace"],
)
def test_stopped_job_reports_its_programs_own_exit(
    svc: WorkerService, prog: str, exit_code: int
) -> None:
    # The user ran the program, not the shell around it: a program that exits 0 on SIGTERM
    # reads as exit code 0, one that needed SIGKILL as -9 (as Popen(...).returncode would).
    w = svc.start(program(prog))
    read_until(w, READY)
    # graceful.py needs 0.5 s after SIGTERM: leave a loaded machine room for it.
    w.stop(timeout=3)
    assert w.state is JobState.STOPPED
    assert w.exit_code == exit_code


def test_stop_right_after_start_delivers_sigterm(svc: WorkerService) -> None:
    # A SIGTERM that reaches the job while it starts up (its script, before the command) must
    # not be lost:
    # `sleep` dies of SIGTERM at once, it is not left for SIGKILL after the grace period.
    for attempt in range(20):
        w = svc.start("sleep 100")
        started = time.monotonic()
        w.stop(timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"attempt {attempt}: SIGTERM was lost, SIGKILL after {elapsed:.1f} s"
        assert w.state is JobState.STOPPED
        assert w.exit_code == -15


def test_stop_is_idempotent_and_leaves_ended_jobs_alone(svc: WorkerService) -> None:
    w = svc.start(python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()"))
    read_until(w, READY)
    w.stop(timeout=5)
    w.stop(timeout=5)
    assert (w.state, w.exit_code) == (JobState.STOPPED, -15)
    done = svc.start("exit 4")
    done.wait()
    done.stop()
    assert (done.state, done.exit_code, done.error) == (JobState.FAILED, 4, "exit code 4")
    record = svc.store.get(done.id or 0)
    assert record is not None
    assert record.state is JobState.FAILED


def test_stop_without_waiting_returns_at_once(svc: WorkerService) -> None:
    w = svc.start(program("trap_term.py"))
    read_until(w, READY)
    w.stop(timeout=3, wait=False)
    assert w.state is JobState.RUNNING, "returned within the grace period"
    assert w.wait() == -9
    assert w.state is JobState.STOPPED


def test_negative_stop_timeout_is_refused(svc: WorkerService) -> None:
    w = svc.start("true")
    with pytest.raises(ValueError, match="timeout"):
        w.stop(timeout=-1)
    w.wait()


def test_timeout_stops_the_job(svc: WorkerService) -> None:
    started = time.monotonic()
    w = svc.start("sleep 100", timeout=0.5)
    w.wait()
    assert time.monotonic() - started >= 0.5
    assert (w.state, w.error) == (JobState.STOPPED, "timed out after 0.5 s")
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert (record.state, record.error, record.stop_requested_by) == (
        JobState.STOPPED,
        "timed out after 0.5 s",
        "timeout",
    )


def test_job_that_ends_before_its_timeout_succeeds(svc: WorkerService) -> None:
    w = svc.start("echo fast", timeout=30)
    assert w.wait() == 0
    assert (w.state, w.error) == (JobState.SUCCEEDED, None)


# -- commands that cannot start ------------------------------------------------------------
def test_command_not_found(svc: WorkerService) -> None:
    w = svc.start("pyhton x")
    w.wait()
    assert (w.state, w.exit_code, w.error) == (JobState.FAILED, 127, "command not found: pyhton")


def test_not_executable(svc: WorkerService, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    w = svc.start(str(script))
    w.wait()
    assert (w.state, w.exit_code, w.error) == (JobState.FAILED, 126, f"not executable: {script}")


def test_missing_working_directory(svc: WorkerService, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    w = svc.start("true", cwd=missing)
    assert w.wait() is None
    assert (w.state, w.error) == (JobState.FAILED, f"working directory not found: {missing}")
    assert w.pid is None
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert (record.state, record.error) == (JobState.FAILED, w.error)


def test_working_directory_is_used(svc: WorkerService, tmp_path: Path) -> None:
    w = svc.start("pwd", cwd=tmp_path)
    assert w.wait() == 0
    assert w.output() == f"{tmp_path}\n".encode()


def test_starting_twice_is_refused(svc: WorkerService) -> None:
    w = svc.start("true")
    w.wait()
    with pytest.raises(JobmagicError, match="already started"):
        w.start()


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["", "   ", "\n\t"])
def test_empty_command_is_refused(svc: WorkerService, command: str) -> None:
    with pytest.raises(ValueError, match=r"^empty command$"):
        svc.start(command)
    with pytest.raises(ValueError, match=r"^empty command$"):
        Worker(command)
    assert svc.store.list() == [], "nothing was recorded"


def test_non_str_env_value_is_refused_naming_the_key(svc: WorkerService) -> None:
    with pytest.raises(TypeError, match="LEARNING_RATE"):
        svc.start("true", env={"OK": "1", "LEARNING_RATE": 3e-4})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        svc.start("true", env={1: "x"})  # type: ignore[dict-item]
    assert svc.store.list() == []


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan")])
def test_bad_timeout_is_refused(svc: WorkerService, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        svc.start("true", timeout=timeout)
    assert svc.store.list() == []


# -- the child's environment ---------------------------------------------------------------
PRINT_UNBUFFERED = python_cmd("import os; print(repr(os.environ.get('PYTHONUNBUFFERED')))")


def test_python_output_is_unbuffered_by_default(svc: WorkerService) -> None:
    w = svc.start(PRINT_UNBUFFERED)
    w.wait()
    assert w.output() == b"'1'\n"
    # What that means to a user: print() without flush reaches the log while the job runs.
    w = svc.start(python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()"))
    read_until(w, READY)
    w.stop(timeout=5)


def test_pythonunbuffered_given_by_the_caller_wins(svc: WorkerService) -> None:
    w = svc.start(PRINT_UNBUFFERED, env={"PYTHONUNBUFFERED": ""})
    w.wait()
    assert w.output() == b"''\n"


def test_pythonunbuffered_of_the_kernel_is_kept(
    svc: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONUNBUFFERED", "kernel")
    w = svc.start(PRINT_UNBUFFERED)
    w.wait()
    assert w.output() == b"'kernel'\n"


def test_env_adds_to_the_kernels_environment(
    svc: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMAGIC_TEST_FROM_KERNEL", "inherited")
    w = svc.start(
        'printf "%s %s\\n" "$JOBMAGIC_TEST_FROM_KERNEL" "$JOBMAGIC_TEST_ADDED"',
        env={"JOBMAGIC_TEST_ADDED": "added value"},
    )
    assert w.wait() == 0
    assert w.output() == b"inherited added value\n"
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert record.env_keys == ["JOBMAGIC_TEST_ADDED"]


@pytest.mark.parametrize(("pty", "shown"), [(True, b"True\r\n"), (False, b"False\n")])
def test_pty_makes_stdout_a_terminal(svc: WorkerService, pty: bool, shown: bytes) -> None:
    w = svc.start(python_cmd("import sys; print(sys.stdout.isatty())"), pty=pty)
    assert w.wait() == 0
    assert w.output() == shown


def test_pty_job_keeps_its_exit_code(svc: WorkerService) -> None:
    w = svc.start("echo out; exit 5", pty=True)
    assert w.wait() == 5
    assert w.output() == b"out\r\n"


# -- logging -------------------------------------------------------------------------------
class Collect(logging.Handler):
    """A handler that keeps every record it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# Waits for "go" on the FIFO in argv[1], then writes text, a split UTF-8 character,
# invalid UTF-8 and a NUL byte.
WRITE_AFTER_GO = (
    "import sys\n"
    "open(sys.argv[1]).readline()\n"
    "out = sys.stdout.buffer\n"
    "out.write(b'h\\xc3'); out.flush()\n"
    "out.write(b'\\xa9llo\\n\\xff\\x00end\\n'); out.flush()\n"
)
EXPECTED = b"h\xc3\xa9llo\n\xff\x00end\n"


def test_handler_receives_output_as_records(svc: WorkerService, tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    w = svc.start(f"{python_cmd(WRITE_AFTER_GO)} {shlex.quote(str(fifo))}")
    assert not watching(w), "nobody listens: the log is not watched"
    handler = Collect()
    w.add_handler(handler)
    assert watching(w)
    fd = os.open(fifo, os.O_WRONLY)  # blocks until the job opened its end
    os.write(fd, b"go\n")
    os.close(fd)
    assert w.wait() == 0
    assert w.output() == EXPECTED
    assert b"".join(r.data for r in handler.records) == EXPECTED  # type: ignore[attr-defined]
    assert "".join(r.getMessage() for r in handler.records) == "h\u00e9llo\n\ufffd\x00end\n"
    assert {r.job_id for r in handler.records} == {w.id}  # type: ignore[attr-defined]
    assert {r.levelno for r in handler.records} == {logging.INFO}
    assert not watching(w), "the watch ends with the job"
    w.remove_handler(handler)
    assert handler not in w.logger.handlers


def test_log_is_not_read_while_nobody_listens(svc: WorkerService) -> None:
    w = svc.start(
        python_cmd(
            "import os, signal\n"
            "print('ready', os.getpid())\n"
            "os.write(1, b'x' * (1 << 20))\n"
            "print('\\nwritten')\n"
            "signal.pause()"
        )
    )
    read_until(w, re.compile(rb"\nwritten\n"))  # streaming watches the log ...
    assert not watching(w), "... and stops watching when the reader is done"
    # The one file watched is the store's change file (pauses by other processes).
    store_watch_only = [svc._store_watch]
    assert [w for ws in svc.watcher._files.values() for w in ws] == store_watch_only
    handler = Collect()
    w.add_handler(handler)
    assert watching(w)
    w.remove_handler(handler)
    assert not watching(w)
    assert [w for ws in svc.watcher._files.values() for w in ws] == store_watch_only
    assert handler.records == [], "a handler added late gets only output written from then on"
    w.stop(timeout=5)


def test_a_service_handler_gets_every_job_from_byte_zero(tmp_path: Path) -> None:
    logger = logging.getLogger(f"jobmagic-test.{tmp_path.name}")
    logger.propagate = False
    handler = Collect()
    service = WorkerService(logger=logger)
    try:
        service.add_handler(handler)
        assert handler in logger.handlers
        w = service.start("printf 'one\\ntwo\\n'; printf 'three'")
        assert w.wait() == 0
        assert w.logger.name == f"{logger.name}.{w.id}"
        assert b"".join(r.data for r in handler.records) == b"one\ntwo\nthree"  # type: ignore[attr-defined]
        service.remove_handler(handler)
        assert handler not in logger.handlers
        again = service.start("echo unheard")
        assert again.wait() == 0
        assert not any(r.job_id == again.id for r in handler.records)  # type: ignore[attr-defined]
    finally:
        service.shutdown()


def test_a_handler_put_on_a_logger_by_hand_does_not_make_jobs_read(tmp_path: Path) -> None:
    # Only add_handler (or the panel) asks for output: a handler that logging setup (or
    # pytest's log capture) put on the service logger costs the jobs nothing.
    logger = logging.getLogger(f"jobmagic-test.{tmp_path.name}")
    logger.propagate = False
    handler = Collect()
    logger.addHandler(handler)
    service = WorkerService(logger=logger)
    try:
        w = service.start(
            python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()")
        )
        read_until(w, READY)
        assert not watching(w)
        w.stop(timeout=5)
        assert handler.records == []
    finally:
        service.shutdown()
        logger.removeHandler(handler)


def test_a_removed_jobs_logger_is_released(svc: WorkerService) -> None:
    w = svc.start("echo bye")
    assert w.wait() == 0
    logger = weakref.ref(w.logger)
    name = w.logger.name
    svc.remove(w.id or 0)
    del w
    # wait() returns once the job is ENDED; the watcher thread may still be telling its
    # listeners (holding the job) for a moment.
    flush_watcher(svc)
    gc.collect()
    assert logger() is None, "the job's logger outlived the job"
    assert name not in logging.Logger.manager.loggerDict


@pytest.mark.timeout(60)
def test_a_tail_only_handler_is_spared_output_it_would_throw_away(tmp_path: Path) -> None:
    logger = logging.getLogger(f"jobmagic-test.{tmp_path.name}")
    logger.propagate = False
    tail, full = Collect(), Collect()
    service = WorkerService(logger=logger)
    try:
        w = service.add(
            Worker(
                python_cmd(
                    "import sys\n"
                    "for i in range(200_000):\n"
                    "    sys.stdout.write(f'line {i:06d} ' + 'x' * 90 + '\\n')\n"
                )
            )
        )
        w.add_handler(tail, tail_bytes=64 << 10)
        w.start()
        assert w.wait() == 0
        log = w.output()
        received = b"".join(r.data for r in tail.records)  # type: ignore[attr-defined]
        assert len(log) == 200_000 * 103
        assert len(received) < len(log) // 10, "the tail-only handler was fed everything"
        assert any(getattr(r, "skipped_bytes", 0) > 0 for r in tail.records)
        assert log.endswith(received[-(64 << 10) :]), "the end of the output was not kept"
        # With a handler that wants everything, nothing is skipped.
        w2 = service.add(Worker("head -c 3000000 /dev/zero"))
        w2.add_handler(tail, tail_bytes=64 << 10)
        w2.add_handler(full)
        w2.start()
        assert w2.wait() == 0
        assert b"".join(r.data for r in full.records) == bytes(3000000)  # type: ignore[attr-defined]
    finally:
        service.shutdown()


class Timed(Collect):
    """Keeps every record with the time.monotonic() it arrived, and wakes a waiter."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        self.arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.arrived:
            self.arrivals.append(time.monotonic())
            super().emit(record)
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list[float]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.arrivals) >= count, timeout=30)
            return self.arrivals[:count]


@pytest.mark.timeout(60)
def test_a_handler_that_asks_for_an_interval_gets_no_more_batches(svc: WorkerService) -> None:
    writer = python_cmd(
        "import itertools, sys, time\n"
        "for i in itertools.count():\n"
        "    sys.stdout.write(f'line {i}\\n'); sys.stdout.flush(); time.sleep(0.001)\n"
    )
    w = svc.start(writer)
    throttled = Timed()
    w.add_handler(throttled, tail_bytes=64 << 10, interval=0.3)
    arrivals = throttled.wait_for(5)
    # A lower bound only: a busy machine makes the gaps longer, never shorter.
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.3 * 0.9, gaps
    feed = w.binding.feed if w.binding is not None else None
    assert feed is not None
    eager = Timed()
    w.add_handler(eager)  # asks for nothing: the job's batches follow it
    assert feed._emit_interval() == EMIT_INTERVAL
    w.remove_handler(eager)
    assert feed._emit_interval() == 0.3
    w.stop(timeout=5)
    w.remove_handler(throttled)
    lines = b"".join(r.data for r in throttled.records)  # type: ignore[attr-defined]
    assert w.output().endswith(lines[-100:]), "the end of the output was not kept"


# -- asyncio -------------------------------------------------------------------------------
def test_await_worker_and_wait_async(svc: WorkerService) -> None:
    async def main() -> tuple[int | None, int | None]:
        first = svc.start("exit 3")
        second = svc.start("echo hi")
        return await first.wait_async(), await second

    assert asyncio.run(main()) == (3, 0)


def test_wait_async_on_a_finished_job_returns_at_once(svc: WorkerService) -> None:
    w = svc.start("exit 6")
    w.wait()

    async def main() -> int | None:
        return await w

    assert asyncio.run(main()) == 6


def test_wait_async_timeout_leaves_nothing_behind(
    svc: WorkerService, caplog: pytest.LogCaptureFixture
) -> None:
    w = svc.start(python_cmd("import os, signal; print('ready', os.getpid()); signal.pause()"))
    read_until(w, READY)

    async def main() -> int | None:
        return await w.wait_async(timeout=0.05)

    assert asyncio.run(main()) is None  # the loop is closed now
    with caplog.at_level(logging.ERROR, logger="jobmagic"):
        w.stop(timeout=5)
        flush_watcher(svc)  # done callbacks run on the watcher thread after stop() returns
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
