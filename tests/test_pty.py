"""``pty=True`` jobs with real processes: a stop reaches the program and ends it like any
job's (SIGTERM, grace period, SIGKILL), its last output and exit status are kept, nothing
is left running, output is byte-exact, and the terminal looks like one.

Most stop tests run with and without a pty: the two must end the same way. Programs that
must be running when the test acts print a line once ready; the test reads the log until
it sees that line (a handshake, never a sleep).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import select
import time
from collections.abc import Iterator

import pytest
from engine_helpers import alive, group_members, read_until
from helpers import python_cmd

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.shell import SIMPLE_COMMAND_CHARS, run_mode

pytestmark = pytest.mark.timeout(60)

READY = re.compile(rb"ready (\d+)\r?\n")
PTY = pytest.mark.parametrize("pty", [True, False], ids=["pty", "no-pty"])
_LOGGER_NUMBERS = itertools.count()


@pytest.fixture
def svc() -> Iterator[WorkerService]:
    logger = logging.getLogger(f"jobmagic-tests.pty.{next(_LOGGER_NUMBERS)}")
    service = WorkerService(logger=logger, stop_timeout=5.0)
    yield service
    service.shutdown()


def ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` has ended (a zombie has) or ends within ``seconds``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)


def newlines(pty: bool, data: bytes) -> bytes:
    r"""``data`` as the log holds it: a terminal writes ``\n`` as ``\r\n``."""
    return data.replace(b"\n", b"\r\n") if pty else data


def ready_program(on_term: str | None, setup: str = "") -> str:
    """A Python program that runs ``setup``, prints "ready <pid>", then waits for signals.

    ``on_term`` is the body of its SIGTERM handler (None: SIGTERM's default action).
    """
    lines = ["import os, select, signal, sys", setup]
    if on_term is not None:
        lines += ["def on_term(signum, frame):", *(f"    {line}" for line in on_term.split("\n"))]
        lines += ["signal.signal(signal.SIGTERM, on_term)"]
    lines += ["print('ready', os.getpid(), flush=True)", "while True:", "    signal.pause()"]
    return python_cmd("\n".join(lines))


# -- a stop reaches the program ------------------------------------------------------------
@PTY
def test_stop_sends_sigterm_and_keeps_the_programs_shutdown_output(
    svc: WorkerService, pty: bool
) -> None:
    w = svc.start(ready_program("print('got TERM', flush=True)\nsys.exit(3)"), pty=pty)
    pid = int(read_until(w, READY).group(1))
    w.stop(timeout=30)
    assert w.output() == newlines(pty, b"ready %d\ngot TERM\n" % pid)
    assert (w.state, w.exit_code) == (JobState.STOPPED, 3)
    assert not alive(pid)


@PTY
def test_a_program_killed_by_sigterm_is_recorded_as_such(svc: WorkerService, pty: bool) -> None:
    w = svc.start(ready_program(None), pty=pty)
    pid = int(read_until(w, READY).group(1))
    started = time.monotonic()
    w.stop(timeout=30)
    assert time.monotonic() - started < 1.5, "the program dies of SIGTERM at once"
    assert (w.state, w.exit_code) == (JobState.STOPPED, -15)
    assert not alive(pid)


@pytest.mark.parametrize(
    ("pty", "timeout"),
    [(True, 0.2), (False, 0.2), (True, 2.5)],
    ids=["pty-0.2s", "no-pty-0.2s", "pty-2.5s"],
)
def test_stop_kills_a_program_that_ignores_sigterm_when_the_timeout_is_over(
    svc: WorkerService, pty: bool, timeout: float
) -> None:
    w = svc.start(ready_program("print('got TERM', flush=True)"), pty=pty)
    pid = int(read_until(w, READY).group(1))
    started = time.monotonic()
    w.stop(timeout=timeout)
    elapsed = time.monotonic() - started
    assert elapsed >= timeout, "SIGKILL came before the grace period was over"
    assert elapsed < timeout + 1.3, "the job was not killed when the grace period was over"
    assert newlines(pty, b"got TERM\n") in w.output(), "the program saw SIGTERM and lived on"
    assert (w.state, w.exit_code) == (JobState.STOPPED, -9)
    assert not alive(pid)


@PTY
def test_shutdown_output_written_after_the_commands_shell_ended_is_kept(
    svc: WorkerService, pty: bool
) -> None:
    # A compound command: the program's parent is a shell, which dies of SIGTERM at once.
    # The program waits for that (a pidfd on its parent) before it writes its last words.
    on_term = "\n".join(
        [
            "select.select([shell], [], [])",
            "print('got TERM after the shell', flush=True)",
            "sys.exit(3)",
        ]
    )
    program = ready_program(on_term, setup="shell = os.pidfd_open(os.getppid())")
    w = svc.start(f"{program}; echo not reached", pty=pty)
    pid = int(read_until(w, READY).group(1))
    w.stop(timeout=30)
    assert w.output().endswith(newlines(pty, b"got TERM after the shell\n"))
    assert (w.state, w.exit_code) == (JobState.STOPPED, -15), "the shell's status"
    assert not alive(pid)


def test_stop_right_after_start_delivers_sigterm(svc: WorkerService) -> None:
    # A SIGTERM that lands while the job script or the relay starts up must not be lost.
    for attempt in range(20):
        w = svc.start("sleep 100", pty=True)
        started = time.monotonic()
        w.stop(timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"attempt {attempt}: SIGTERM was lost, SIGKILL after {elapsed:.1f} s"
        assert (w.state, w.exit_code) == (JobState.STOPPED, -15)


# -- nothing is left running -----------------------------------------------------------------
# A child of the program that ignores SIGHUP and SIGTERM; it prints its pid once it does.
STUBBORN_CHILD = """sh -c 'trap "" HUP TERM; echo child $$; exec sleep 1000'"""
CHILD = re.compile(rb"child (\d+)\r?\n")


@PTY
def test_stop_leaves_nothing_running(svc: WorkerService, pty: bool) -> None:
    w = svc.start(f"{STUBBORN_CHILD} & wait", pty=pty)
    child = int(read_until(w, CHILD).group(1))
    assert w.pid is not None
    assert child in group_members(w.pid), "the program's child is in the job's process group"
    started = time.monotonic()
    w.stop(timeout=0.5)
    assert time.monotonic() - started >= 0.5, "the child had its grace period"
    assert (w.state, w.exit_code) == (JobState.STOPPED, -15), "the shell's status"
    assert not alive(child)
    assert group_members(w.pid) == []


@PTY
def test_a_job_that_ends_leaves_nothing_running(svc: WorkerService, pty: bool) -> None:
    # The job ends once the child has said it ignores the signals (`head` passes that on);
    # the child keeps the pty open on its stderr.
    w = svc.start(f"{{ {STUBBORN_CHILD} & }} | head -n 1", pty=pty)
    assert w.wait() == 0
    said = CHILD.fullmatch(w.output())
    assert said is not None
    child = int(said.group(1))
    # Killed as the job ended, not waited for: it may take a moment to die.
    assert ends_within(child, 10)
    assert w.pid is not None
    assert group_members(w.pid) == []


def test_the_program_runs_in_the_jobs_process_group_and_session(svc: WorkerService) -> None:
    w = svc.start(python_cmd("import os; print(os.getpgrp(), os.getsid(0))"), pty=True)
    assert w.wait() == 0
    assert w.pid is not None
    assert w.output() == b"%d %d\r\n" % (w.pid, w.pid)


# -- output and the terminal -----------------------------------------------------------------
@pytest.mark.parametrize("size", [256, 1 << 20], ids=["all-bytes", "1MiB"])
@pytest.mark.parametrize("prefix", ["", "true; "], ids=["simple", "compound"])
def test_pty_output_is_byte_exact(svc: WorkerService, size: int, prefix: str) -> None:
    data = bytes(range(256)) * (size // 256)
    code = f"import sys; sys.stdout.buffer.write(bytes(range(256)) * {size // 256})"
    w = svc.start(prefix + python_cmd(code), pty=True)
    assert w.wait() == 0
    assert w.output() == data.replace(b"\n", b"\r\n")


def test_the_terminal_is_24_by_80_and_stdin_reads_eof(svc: WorkerService) -> None:
    w = svc.start(
        "stty size; [ -t 0 ] && [ -t 2 ] && echo ttys; cat; echo eof $?; "
        + python_cmd("import os; print(tuple(os.get_terminal_size()))"),
        pty=True,
    )
    assert w.wait() == 0
    assert w.output() == b"24 80\r\nttys\r\neof 0\r\n(80, 24)\r\n"


@PTY
def test_a_missing_shell_is_reported(svc: WorkerService, pty: bool) -> None:
    w = svc.start("true", pty=pty, shell="/nonexistent/sh")
    assert w.wait() == 127
    assert w.error == "command not found: /nonexistent/sh"


# -- how the job script runs a command ---------------------------------------------------------
@pytest.mark.parametrize("command", ["x" * (1 << 20), "echo " + "'a b' " * (1 << 18)])
@pytest.mark.parametrize("pty", [True, False], ids=["pty", "no-pty"])
def test_run_mode_is_fast_for_a_huge_command(command: str, pty: bool) -> None:
    started = time.monotonic()
    mode = run_mode(command, "/bin/sh", pty)
    assert time.monotonic() - started < 1
    assert mode == ("pty" if pty else "eval")


def test_run_mode() -> None:
    longest_simple = "x" * SIMPLE_COMMAND_CHARS
    assert run_mode(longest_simple, "/bin/sh", False) == "exec"
    assert run_mode(longest_simple + "x", "/bin/sh", False) == "eval"
    assert run_mode("sleep 1", "/bin/sh", False) == "exec"
    assert run_mode("sleep 1; true", "/bin/sh", False) == "eval"
    assert run_mode("sleep 1", "/bin/sh", True) == "pty-exec"
    assert run_mode("sleep 1 | cat", "/bin/sh", True) == "pty"
    assert run_mode("sleep 1", "/bin/bash", True) == "pty"
    assert run_mode("sleep 1", "/bin/bash", False) == "shell"
