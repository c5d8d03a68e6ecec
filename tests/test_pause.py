"""Pause and resume: a job's whole process group held still and let go, a group held back.

Real jobs in a service of this process; another process (the command line) pausing this
kernel's job; the magics' words and errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import alive, group_members, read_until
from helpers import python_cmd, wait_until

from jobmagic import JobState, WorkerService
from jobmagic.core.process_identity import stat_fields
from jobmagic.errors import JobmagicError
from jobmagic.text.describe import job_label

pytestmark = pytest.mark.timeout(60)

PROGRAMS = Path(__file__).parent / "programs"

# Prints "ready", starts a child in its process group, then counts, one line each 10 ms.
COUNTER = python_cmd(
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
    "print('ready', child.pid, flush=True)\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print('tick', i, flush=True)\n"
    "    time.sleep(0.01)\n"
)


@pytest.fixture
def svc(jobmagic_home: Path) -> Any:
    service = WorkerService(home=jobmagic_home)
    yield service
    service.shutdown()


def process_states(pgid: int) -> dict[int, str]:
    """The /proc state letter of every live process of process group ``pgid``."""
    states = {}
    for pid in group_members(pgid):
        fields = stat_fields(pid)
        if fields is not None:
            states[pid] = fields[0].decode()
    return states


def all_stopped(pgid: int) -> dict[int, str]:
    """Wait until every process of group ``pgid`` is stopped (state T); their states.

    SIGSTOP is delivered as the kernel schedules each process, a moment after it was sent,
    and a stop offers nothing to wait on: /proc is read until it shows.
    """
    return wait_until(
        lambda: (states := process_states(pgid)) and set(states.values()) == {"T"} and states,
        10,
        message=f"every process of group {pgid} to stop",
    )


def last_tick(worker: Any) -> int:
    ticks = re.findall(rb"tick (\d+)\r?\n", worker.output())
    return int(ticks[-1]) if ticks else 0


def state_changes(svc: WorkerService, worker: Any, wanted: JobState) -> threading.Event:
    """An Event set once ``worker`` (as this service holds it) is in state ``wanted``."""
    reached = threading.Event()

    def check(_event: object) -> None:
        if worker.state is wanted:
            reached.set()

    svc.subscribe(check)
    check(None)
    return reached


# -- one kernel's job -----------------------------------------------------------------------
def test_pause_stops_every_process_of_the_job_and_resume_lets_it_go_on(
    svc: WorkerService,
) -> None:
    w = svc.start(COUNTER)
    child = int(read_until(w, re.compile(rb"ready (\d+)\n")).group(1))
    read_until(w, re.compile(rb"tick 3\n"))
    assert w.pid is not None

    w.pause()

    assert w.state is JobState.PAUSED
    states = all_stopped(w.pid)
    assert child in states
    assert len(states) >= 2  # the counter (the job's leader) and its child
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert record.state is JobState.PAUSED
    assert record.paused_at
    # Held still: its output and its runtime stand where they were.
    size, runtime = len(w.output()), w.runtime
    assert set(process_states(w.pid).values()) == {"T"}
    assert (len(w.output()), w.runtime) == (size, runtime)
    stopped_at = last_tick(w)

    w.resume()

    assert w.state is JobState.RUNNING
    read_until(w, re.compile(rf"tick {stopped_at + 2}\n".encode()))
    assert "T" not in process_states(w.pid).values()
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert (record.state, record.paused_at) == (JobState.RUNNING, None)
    assert record.paused_for > 0
    w.stop()
    assert w.state is JobState.STOPPED
    assert group_members(w.pid) == []
    assert not alive(child)


def test_a_pty_job_pauses_with_its_relay_and_goes_on(svc: WorkerService) -> None:
    w = svc.start(COUNTER, pty=True)
    read_until(w, re.compile(rb"tick 2\r\n"))
    w.pause()
    states = all_stopped(w.pid or 0)
    assert len(states) >= 3  # the pty relay (the job's leader), the counter, its child
    stopped_at = last_tick(w)
    w.resume()
    read_until(w, re.compile(rf"tick {stopped_at + 2}\r\n".encode()))
    w.stop()
    assert w.state is JobState.STOPPED
    assert group_members(w.pid or 0) == []


def test_stopping_a_paused_job_lets_it_shut_down_gracefully(svc: WorkerService) -> None:
    w = svc.start(f"{sys.executable} {PROGRAMS / 'graceful.py'}")
    read_until(w, re.compile(rb"ready \d+\n"))
    w.pause()
    all_stopped(w.pid or 0)

    w.stop(timeout=10)

    # SIGCONT came with the SIGTERM: its handler ran ("bye") and it exited 0 in time.
    assert w.output().endswith(b"bye\n")
    assert (w.state, w.exit_code) == (JobState.STOPPED, 0)
    assert group_members(w.pid or 0) == []
    record = svc.store.get(w.id or 0)
    assert record is not None
    assert record.paused_at is None
    assert record.paused_for > 0


def test_a_timeout_counts_running_time_only(svc: WorkerService) -> None:
    w = svc.start(
        python_cmd("import signal; print('ready', flush=True); signal.pause()"), timeout=0.5
    )
    read_until(w, re.compile(rb"ready\n"))
    w.pause()

    assert w.wait(1.0) is None  # paused twice as long as its timeout: still there
    assert w.state is JobState.PAUSED
    w.resume()
    w.wait(10)

    assert w.state is JobState.STOPPED
    assert w.error == "timed out after 0.5 s"
    assert w.runtime is not None
    assert 0.5 <= w.runtime < 1.0


def test_pausing_a_queued_or_ended_job_says_what_to_do(svc: WorkerService) -> None:
    svc.set_group("one", 1)
    holder = svc.start(python_cmd("import signal; signal.pause()"), group="one")
    queued = svc.start("true", group="one")
    assert queued.state is JobState.QUEUED
    with pytest.raises(JobmagicError, match=r"has not started; .*%job pause --group one"):
        queued.pause()
    holder.stop()
    queued.wait(10)
    with pytest.raises(JobmagicError, match=rf"job {queued.id} has already ended \(succeeded\)"):
        queued.resume()
    with pytest.raises(ValueError, match="name a job or a group"):
        svc.pause()
    with pytest.raises(ValueError, match="name a job or a group"):
        svc.pause(queued.id, group="one")
    with pytest.raises(ValueError, match="group name"):
        svc.pause(group="a b; rm -rf /")


def test_resuming_a_running_job_changes_nothing(svc: WorkerService) -> None:
    w = svc.start(python_cmd("import signal; print('ready', flush=True); signal.pause()"))
    read_until(w, re.compile(rb"ready\n"))
    w.resume()
    w.pause()
    w.pause()  # twice: still one pause
    assert w.state is JobState.PAUSED
    w.resume()
    assert w.state is JobState.RUNNING
    assert "T" not in process_states(w.pid or 0).values()
    w.stop()


# -- groups -------------------------------------------------------------------------------
def test_a_paused_group_starts_nothing_until_it_is_resumed(svc: WorkerService) -> None:
    running = svc.start(COUNTER, group="batch")
    read_until(running, re.compile(rb"tick 1\n"))

    paused = svc.pause(group="batch")

    assert [w.id for w in paused] == [running.id]
    assert running.state is JobState.PAUSED
    all_stopped(running.pid or 0)
    waiting = svc.start("echo second", group="batch")  # no limit, but the group is paused
    assert waiting.state is JobState.QUEUED
    assert waiting.queue_reason == "group batch is paused"
    assert next(g for g in svc.groups() if g.name == "batch")[1:] == (0, 1, 1, True)

    resumed = svc.resume(group="batch")

    assert [w.id for w in resumed] == [running.id]
    assert running.state is JobState.RUNNING
    assert waiting.wait(10) == 0
    assert waiting.output() == b"second\n"
    assert next(g for g in svc.groups() if g.name == "batch").paused is False
    running.stop()


# -- another process ----------------------------------------------------------------------
def jobmagic(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("jobmagic")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_command_line_pauses_this_kernels_job_and_the_kernel_sees_it(
    svc: WorkerService,
) -> None:
    w = svc.start(COUNTER, name="counter")
    read_until(w, re.compile(rb"tick 1\n"))
    paused = state_changes(svc, w, JobState.PAUSED)

    done = jobmagic("pause", "counter")

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f'job {w.id} "counter" paused\n'
    assert paused.wait(10), "the kernel did not hear of the pause"
    all_stopped(w.pid or 0)
    runtime = w.runtime
    assert w.runtime == runtime  # frozen here too
    running = state_changes(svc, w, JobState.RUNNING)

    done = jobmagic("resume", str(w.id))

    assert done.returncode == 0, done.stderr
    assert running.wait(10)
    read_until(w, re.compile(rf"tick {last_tick(w) + 1}\n".encode()))
    w.stop()


def test_the_command_line_refuses_a_queued_job_with_exit_1(svc: WorkerService) -> None:
    svc.pause(group="held")
    w = svc.start("true", group="held")
    done = jobmagic("pause", str(w.id))
    assert done.returncode == 1
    assert "has not started" in done.stderr
    assert jobmagic("pause").returncode == 2
    assert jobmagic("pause", str(w.id), "--group", "held").returncode == 2
    svc.resume(group="held")
    assert w.wait(10) == 0


# -- the magics -----------------------------------------------------------------------------
def test_the_magics_pause_and_resume_jobs_and_groups(
    ipython_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.error import UsageError

    w = ipython_shell.run_line_magic("job", f"start --group sweep {COUNTER}")
    read_until(w, re.compile(rb"tick 1\n"))
    capsys.readouterr()

    ipython_shell.run_line_magic("job", f"pause {w.id}")
    assert capsys.readouterr().out == f"Paused {job_label(w)}.\n"
    assert w.state is JobState.PAUSED
    ipython_shell.run_line_magic("job", f"resume {w.id}")
    assert capsys.readouterr().out == f"Resumed {job_label(w)}.\n"
    assert w.state is JobState.RUNNING

    ipython_shell.run_line_magic("job", "pause --group sweep")
    assert capsys.readouterr().out == f"Paused group sweep (jobs paused: {w.id}).\n"
    ipython_shell.run_line_magic("job", "group sweep")
    assert capsys.readouterr().out.splitlines()[1].split() == ["sweep", "any", "1", "0", "yes"]
    ipython_shell.run_line_magic("job", "resume --group sweep")
    assert capsys.readouterr().out == f"Resumed group sweep (jobs resumed: {w.id}).\n"
    assert w.state is JobState.RUNNING

    for line, message in [
        ("pause", "give job ids or --group"),
        (f"pause {w.id} --group sweep", "give job ids or --group"),
        ("pause --group 'a b'", "group name"),
        ("resume 99999", "99999"),
    ]:
        with pytest.raises(UsageError, match=message):
            ipython_shell.run_line_magic("job", line)
    w.stop()
