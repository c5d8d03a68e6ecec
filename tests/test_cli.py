"""The ``jobmagic`` command line, run as the installed console script, on a real store
that another Python process (a kernel's ``WorkerService``) shares.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import OtherKernel, alive
from helpers import python_cmd

from jobmagic import JobState, WorkerService
from jobmagic._version import __version__
from jobmagic.store.job_store import JobStore

pytestmark = pytest.mark.timeout(90)

JOBMAGIC = str(Path(sys.executable).with_name("jobmagic"))
READY = re.compile(rb"ready (\d+)\n")
# Prints its pid, then waits for a line on the FIFO named by $GO and exits with it.
ON_CUE = python_cmd(
    "import os, sys; print('ready', os.getpid(), flush=True);"
    " code = int(open(os.environ['GO']).read() or 0);"
    " sys.stdout.buffer.write(b'last words\\r\\n\\x00\\xff'); sys.exit(code)"
)
STUBBORN = python_cmd(
    "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', os.getpid(), flush=True); signal.pause()"
)


def cli(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """Run ``jobmagic ARGS`` (``JOBMAGIC_HOME`` is the test's home), without a terminal."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [JOBMAGIC, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
        **kwargs,
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "go"
    os.mkfifo(path)
    return path


def say_go(fifo: Path, code: int) -> None:
    with open(fifo, "w") as f:
        f.write(str(code))


def kernel_job(home: Path, fifo: Path) -> OtherKernel:
    """A job of another live process (a kernel) that ends on its cue."""
    return OtherKernel(home, f"GO={fifo} {ON_CUE}")


# -- looking --------------------------------------------------------------------------------
def test_list_shows_a_kernels_job_in_aligned_columns_without_colour(
    jobmagic_home: Path, fifo: Path
) -> None:
    other = kernel_job(jobmagic_home, fifo)
    try:
        done = cli("list")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode().splitlines()
        assert lines[0].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "STARTED", "COMMAND"]
        row = lines[1]
        assert row.split()[:4] == [str(other.job["id"]), "-", "running", "-"]
        assert lines[0].index("COMMAND") == row.index("GO=")  # aligned
        assert "\x1b[" not in done.stdout.decode()  # not a terminal: no colour
        assert re.search(r"\b\d+s ago\b", row)
    finally:
        say_go(fifo, 0)
        other.close()


def test_json_is_the_rest_apis_json(jobmagic_home: Path, lab_server: Any) -> None:
    import urllib.request

    svc = WorkerService(home=jobmagic_home)
    try:
        w = svc.start("echo done; exit 4", name="json-job")
        assert w.wait(10) == 4
    finally:
        svc.shutdown()
    # A job the command line started, which no kernel owns, is the server's to see too.
    started = json.loads(cli("start", "--json", "--", "echo from the cli").stdout)
    assert cli("wait", str(started["id"])).returncode == 0
    with urllib.request.urlopen(lab_server.api_url("jobmagic/api/jobs"), timeout=30) as answer:
        rest = json.load(answer)
    listing = json.loads(cli("list", "--json").stdout)
    assert listing["schema_version"] == rest["schema_version"]
    assert listing["jobs"] == rest["jobs"]
    assert [job["state"] for job in rest["jobs"]] == ["failed", "succeeded"]
    assert rest["jobs"][1]["command"] == "echo from the cli"
    status = json.loads(cli("status", "json-job", "--json").stdout)
    usage = status.pop("usage")  # the answer of GET jobs/{id}/usage, folded in
    assert status == rest["jobs"][0]
    assert usage == {
        "memory": None,
        "peak_memory": status["peak_memory"],
        "cpu_seconds": status["cpu_seconds"],
        "cpu_percent": None,
        "running": False,
    }
    assert status["state"] == "failed"
    assert status["exit_code"] == 4


def test_status_of_a_job(jobmagic_home: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        svc.start("exit 0", name="tiny").wait(10)
    finally:
        svc.shutdown()
    text = cli("status", "tiny").stdout.decode()
    assert re.search(r"^state: +succeeded$", text, re.MULTILINE), text
    assert re.search(r"^command: +exit 0$", text, re.MULTILINE)


def test_logs_follow_gives_the_exact_bytes_and_the_jobs_exit_code(
    jobmagic_home: Path, fifo: Path
) -> None:
    other = kernel_job(jobmagic_home, fifo)
    try:
        follower = subprocess.Popen(
            [JOBMAGIC, "logs", str(other.job["id"]), "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert follower.stdout is not None
        first = follower.stdout.read1(4096)  # what was written before the follow started
        assert READY.match(first), first
        say_go(fifo, 3)
        rest, errors = follower.communicate(timeout=30)
        assert follower.returncode == 3, errors
        log = Path(JobStore(jobmagic_home).get(other.job["id"]).log_path).read_bytes()  # type: ignore[union-attr]
        assert first + rest == log
        assert log.endswith(b"last words\r\n\x00\xff")
    finally:
        other.close()


def test_logs_tail_is_byte_exact(jobmagic_home: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        w = svc.start("printf 'a\\nb\\r\\nc\\n\\377 d'")
        assert w.wait(10) == 0
    finally:
        svc.shutdown()
    assert cli("logs", str(w.id)).stdout == b"a\nb\r\nc\n\xff d"
    assert cli("logs", str(w.id), "--tail", "2").stdout == b"c\n\xff d"
    assert cli("logs", str(w.id), "--tail", "10").stdout == b"a\nb\r\nc\n\xff d"
    assert cli("logs", str(w.id), "--tail", "0").stdout == b""


# -- acting ---------------------------------------------------------------------------------
def test_stop_escalates_records_cli_and_leaves_nothing(jobmagic_home: Path) -> None:
    other = OtherKernel(jobmagic_home, STUBBORN)
    try:
        job_id = other.job["id"]
        record = JobStore(jobmagic_home).get(job_id)
        assert record is not None
        program = int(READY.search(Path(record.log_path).read_bytes()).group(1))  # type: ignore[union-attr]
        done = cli("stop", str(job_id), "--timeout", "0.5")
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode() == f"job {job_id} stopped (killed by SIGKILL)\n"
        assert not alive(program)
        assert not alive(other.job["pid"])
        ended = JobStore(jobmagic_home).get(job_id)
        assert ended is not None
        assert (ended.state, ended.stop_requested_by) == (JobState.STOPPED, "cli")
    finally:
        other.close()


def test_wait_exit_statuses(jobmagic_home: Path, fifo: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        ok = svc.start("exit 0")
        bad = svc.start("exit 5")
        killed = svc.start(python_cmd("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
        for w in (ok, bad, killed):
            w.wait(10)
        assert cli("wait", str(ok.id)).returncode == 0
        assert cli("wait", str(ok.id), str(bad.id), str(killed.id)).returncode == 5
        assert cli("wait", str(killed.id), str(bad.id)).returncode == 128 + signal.SIGTERM
        slow = svc.start(f"GO={fifo} {ON_CUE}")
        started = time.monotonic()
        done = cli("wait", str(slow.id), "--timeout", "0.3")
        assert done.returncode == 124
        assert time.monotonic() - started < 20
        assert done.stderr == b"jobmagic wait: timed out after 0.3 s\n"
        # And a wait under way sees the job end (the writer of the FIFO blocks until the
        # job reads it, so the job is running while the waiter starts).
        waiter = subprocess.Popen([JOBMAGIC, "wait", "--all"], stderr=subprocess.PIPE)
        say_go(fifo, 0)
        assert waiter.wait(30) == 0
    finally:
        svc.shutdown()


def test_start_makes_a_job_that_outlives_the_command(jobmagic_home: Path, fifo: Path) -> None:
    started = time.monotonic()
    done = cli("start", "--name", "from-cli", "--env", f"GO={fifo}", "--", ON_CUE)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    job_id = int(done.stdout)
    svc = WorkerService(home=jobmagic_home)
    try:
        job = svc.get("from-cli")
        assert job.id == job_id
        assert job.state is JobState.RUNNING  # the command that started it has exited
        say_go(fifo, 0)
        assert cli("wait", "from-cli").returncode == 0
        assert svc.get(job_id).state is JobState.SUCCEEDED
        assert cli("logs", "from-cli").stdout.startswith(b"ready ")
    finally:
        svc.shutdown()


def test_rm_deletes_finished_jobs_only(jobmagic_home: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        done = svc.start("true")
        done.wait(10)
        running = svc.start(STUBBORN)
        refused = cli("rm", str(running.id))
        assert refused.returncode == 2
        assert b"is running; stop it first" in refused.stderr
        assert cli("rm", str(done.id)).returncode == 0
        assert [r.id for r in svc.store.list()] == [running.id]
        assert not done.log_path.exists()
        running.stop(timeout=0.5)
    finally:
        svc.shutdown()


# -- mistakes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logs", "99"], "jobmagic logs: no job '99'; no jobs yet"),
        (["status", "nosuch"], "jobmagic status: no job 'nosuch'; no jobs yet"),
        (["stop"], "jobmagic stop: which jobs? give their ids or names"),
        (["wait", "--timeout", "-1", "--all"], "jobmagic: --timeout must be a number"),
        (["list", "--state", "bogus"], "jobmagic list: argument --state: invalid choice"),
        (["frobnicate"], "jobmagic: argument COMMAND: invalid choice: 'frobnicate'"),
        (["start"], "jobmagic start: empty command"),
        (["start", "--name", "7", "--", "true"], "jobmagic start: a job name cannot read as"),
        (["start", "--env", "NOEQUALS", "--", "true"], "jobmagic start: --env takes KEY=VALUE"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = cli(*args)
    assert done.returncode == 2, done
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines[0]


def test_version_and_help() -> None:
    assert cli("--version").stdout.decode() == f"jobmagic {__version__}\n"
    text = cli("--help").stdout.decode()
    assert "examples:" in text
    assert "jobmagic logs 7 --follow" in text


def test_the_command_line_loads_neither_ipython_nor_jupyter_server(jobmagic_home: Path) -> None:
    code = (
        "import sys\nfrom jobmagic.cli.main import main\nmain(['list'])\n"
        "bad = [m for m in ('IPython', 'ipykernel', 'ipywidgets', 'jupyter_server', 'tornado')"
        " if m in sys.modules]\nprint(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert done.stdout.decode().splitlines()[-1] == "[]"


def test_completion_offers_ids_and_names(jobmagic_home: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        svc.start("true", name="trainer").wait(10)
    finally:
        svc.shutdown()
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": "jobmagic logs ",
        "COMP_POINT": str(len("jobmagic logs ")),
    }
    # argcomplete writes the completions to descriptor 8.
    done = subprocess.run(
        ["bash", "-c", f"{JOBMAGIC} 8>&1 9>/dev/null 1>/dev/null"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    offered = done.stdout.decode().split("\n")
    assert "1" in offered
    assert "trainer" in offered


@pytest.mark.parametrize("no_color", [False, True])
def test_colours_only_on_a_terminal_and_never_with_no_color(
    jobmagic_home: Path, no_color: bool
) -> None:
    import pty

    svc = WorkerService(home=jobmagic_home)
    try:
        svc.start("exit 2").wait(10)
    finally:
        svc.shutdown()
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    try:
        done = subprocess.run(
            [JOBMAGIC, "list"],
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=True,
        )
        os.close(slave)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once everything is read
            while chunk := os.read(master, 65536):
                shown += chunk
    finally:
        os.close(master)
    assert done.returncode == 0
    assert (b"\x1b[31mfailed\x1b[0m" in shown) is not no_color, shown
    assert b"failed" in shown
