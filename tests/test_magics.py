"""The %job / %%job magics through a real IPython shell (fixture ``ipython_shell``).

Jobs that must still be running when the test acts print "ready" and block; the test
reads their output until it sees "ready" (a handshake, never a sleep).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import python_cmd
from IPython.core.error import UsageError

from jobmagic import JobState, Worker, get_service
from jobmagic.notebook.arguments import SUBCOMMANDS, _parser, split_start_line
from jobmagic.notebook.follow import LivePrinter
from jobmagic.notebook.magics import JobMagics
from jobmagic.notebook.reprs import JobStatus, JobTable
from jobmagic.text.terminal import collapse_carriage_returns

pytestmark = pytest.mark.timeout(60)

# Prints "ready", then sleeps until stopped.
SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


def job(ip: Any, line: str) -> Any:
    """Run ``%job line`` and return its value."""
    return ip.run_line_magic("job", line)


def usage_error(ip: Any, line: str, cell: str | None = None) -> str:
    """The message of the UsageError that ``%job line`` (or ``%%job line``) raises."""
    if cell is None:
        with pytest.raises(UsageError) as caught:
            ip.run_line_magic("job", line)
    else:
        with pytest.raises(UsageError) as caught:
            ip.run_cell_magic("job", line, cell)
    return str(caught.value)


def wait_for_output(worker: Worker, text: bytes) -> None:
    """Block until the job has printed ``text``."""
    seen = b""
    for chunk in worker.stream():
        seen += chunk
        if text in seen:
            return
    raise AssertionError(f"job ended without printing {text!r}: {seen!r}")


def wait_ready(worker: Worker) -> None:
    """Block until the job has printed "ready"."""
    wait_for_output(worker, b"ready")


def group_gone(pgid: int) -> bool:
    """True when no live process (zombies aside) is left in the job's process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return False
    return True


@pytest.fixture
def sleeper(ipython_shell: Any) -> Iterator[Worker]:
    """A running job that printed "ready"; stopped at the end of the test."""
    worker = job(ipython_shell, f"start --name sleeper {python_cmd(SLEEPER)}")
    wait_ready(worker)
    yield worker
    worker.stop(timeout=1)


# -- loading, help -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_extension_registers_line_and_cell_magic(ipython_shell: Any) -> None:
    assert ipython_shell.find_line_magic("job") is not None
    assert ipython_shell.find_cell_magic("job") is not None
    assert any(isinstance(c, JobMagics) for c in ipython_shell.configurables)


@pytest.mark.timeout(30)
def test_magic_docstring_is_the_help_with_examples(ipython_shell: Any) -> None:
    doc = ipython_shell.find_line_magic("job").__doc__
    assert "Examples" in doc
    for subcommand in SUBCOMMANDS:
        assert f"%job {subcommand}" in doc
    # %job? reads as plain text: no reST literal markers or quotes.
    assert "``" not in doc
    assert "::" not in doc
    assert "%job start runs COMMAND through /bin/sh -c, like !cmd," in doc


@pytest.mark.timeout(30)
@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_subcommand_help(ipython_shell: Any, capsys: Any, subcommand: str) -> None:
    assert job(ipython_shell, f"{subcommand} --help") is None
    out = capsys.readouterr().out
    assert f"%job {subcommand} [-h]" in out
    assert "Examples" in out
    assert "``" not in out
    assert "::" not in out


@pytest.mark.timeout(60)
def test_terminal_ipython_with_extension_in_config(tmp_path: Path) -> None:
    code = (
        "j = %job start --name t echo hi\n"
        "j.wait()\n"
        "table = %job list\n"
        "print(table)\n"
        "from jobmagic import get_service\n"
        "print(get_service().stop_timeout)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--no-banner",
            f"--ipython-dir={tmp_path}",
            "--InteractiveShellApp.extensions=['jobmagic']",
            "--JobMagics.stop_timeout=7",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND"]
    assert lines[1].split()[:4] == ["1", "t", "succeeded", "0"]
    assert lines[2] == "7.0"


def test_terminal_ipython_panel_prints_the_list_instead(tmp_path: Path) -> None:
    code = "j = %job start --name t echo hi\nj.wait()\npanel = %job panel\nprint(repr(panel))\n"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "IPython", "--no-banner", f"--ipython-dir={tmp_path}"),
            *("--InteractiveShellApp.extensions=['jobmagic']", "-c", code),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "The panel needs a notebook frontend (JupyterLab, Notebook, VS Code); here is %job list:"
    )
    assert lines[1].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND"]
    assert lines[2].split()[:3] == ["1", "t", "succeeded"]
    assert "VBox" not in result.stdout


# -- start -----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_start_returns_worker_and_needs_no_double_dash(ipython_shell: Any) -> None:
    worker = job(ipython_shell, "start printf '%s|' one 'two  words' | tr a-z A-Z")
    assert isinstance(worker, Worker)
    assert worker.command == "printf '%s|' one 'two  words' | tr a-z A-Z"
    assert worker.wait() == 0
    assert worker.output() == b"ONE|TWO  WORDS|"


@pytest.mark.timeout(30)
def test_assignment_form_and_display(ipython_shell: Any) -> None:
    result = ipython_shell.run_cell("j = %job start --name hello echo hi")
    result.raise_error()
    worker = ipython_shell.user_ns["j"]
    assert isinstance(worker, Worker)
    assert worker.wait() == 0
    data, _ = ipython_shell.display_formatter.format(worker)
    assert data["text/plain"] == f'job {worker.id} "hello" succeeded (exit code 0) - echo hi'
    assert f'<span class="jobmagic-id">{worker.id}</span> "hello"' in data["text/html"]
    assert "<code>echo hi</code>" in data["text/html"]


@pytest.mark.timeout(30)
def test_variable_expansion_braces_and_dollar(ipython_shell: Any) -> None:
    ipython_shell.user_ns.update(word="two words", n=3)
    result = ipython_shell.run_cell(
        "a = %job start printf '<%s>' {word} {n * 2}\nb = %job start printf '<%s>' $word $$HOME"
    )
    result.raise_error()
    a, b = ipython_shell.user_ns["a"], ipython_shell.user_ns["b"]
    assert a.wait() == 0
    assert b.wait() == 0
    assert a.output() == b"<two><words><6>"
    assert b.output() == f"<two><words><{os.environ['HOME']}>".encode()


@pytest.mark.timeout(30)
def test_variable_expansion_sees_function_locals(ipython_shell: Any) -> None:
    result = ipython_shell.run_cell(
        "def run_local():\n"
        "    inner = 'from-function'\n"
        "    w = %job start echo {inner}\n"
        "    return w\n"
        "w = run_local()\n"
    )
    result.raise_error()
    worker = ipython_shell.user_ns["w"]
    assert worker.wait() == 0
    assert worker.output() == b"from-function\n"


@pytest.mark.timeout(30)
def test_start_options(ipython_shell: Any, tmp_path: Path) -> None:
    worker = job(
        ipython_shell,
        f"start --name opts --cwd {tmp_path} --env A=1 --env B='x y' --env C= "
        "sh -c 'pwd; echo \"$A|$B|$C\"; [ -t 1 ] && echo tty || echo notty'",
    )
    assert worker.wait() == 0
    assert worker.name == "opts"
    assert worker.output() == f"{tmp_path}\n1|x y|\nnotty\n".encode()
    pty_job = job(ipython_shell, "start --pty sh -c '[ -t 1 ] && echo tty || echo notty'")
    assert pty_job.wait() == 0
    assert pty_job.output().strip() == b"tty"


@pytest.mark.timeout(30)
def test_start_timeout_stops_the_job(ipython_shell: Any) -> None:
    worker = job(ipython_shell, f"start --timeout 0.5 {python_cmd(SLEEPER)}")
    worker.wait()
    assert worker.state is JobState.STOPPED
    assert worker.exit_code == -signal.SIGTERM
    assert worker.error == "timed out after 0.5 s"


@pytest.mark.timeout(30)
def test_start_detach(ipython_shell: Any) -> None:
    worker = job(ipython_shell, f"start --detach {python_cmd(SLEEPER)}")
    try:
        wait_ready(worker)
        assert worker.detach
    finally:
        worker.stop(timeout=1)


@pytest.mark.timeout(30)
def test_cell_magic_runs_body_in_bash_with_line_options(ipython_shell: Any) -> None:
    ipython_shell.user_ns["label"] = "cellname"
    result = ipython_shell.run_cell(
        "%%job --name {label} --env GREETING=hi\n"
        'if [[ -n "$BASH_VERSION" ]]; then echo "$GREETING from bash"; fi\n'
        "echo '{not expanded}'\n"
    )
    result.raise_error()
    worker = result.result
    assert isinstance(worker, Worker)
    assert worker.name == "cellname"
    assert worker.wait() == 0
    assert worker.output() == b"hi from bash\n{not expanded}\n"


@pytest.mark.timeout(30)
def test_split_start_line() -> None:
    start = _parser("start")
    assert split_start_line("sleep 10", start) == ([], "sleep 10")
    assert split_start_line("  --pty  sleep 10 ", start) == (["--pty"], "sleep 10")
    assert split_start_line('--name "a b" echo "x  y" | cat', start) == (
        ["--name", "a b"],
        'echo "x  y" | cat',
    )
    assert split_start_line("--name=a echo --name b", start) == (["--name=a"], "echo --name b")
    assert split_start_line("--name a -- --weird arg", start) == (["--name", "a"], "--weird arg")
    assert split_start_line("-- -x", start) == ([], "-x")
    assert split_start_line("--env A=1 --env B=2", start) == (["--env", "A=1", "--env", "B=2"], "")


# -- list, status, logs ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_list_text_and_html(ipython_shell: Any, sleeper: Worker) -> None:
    done = job(ipython_shell, "start --name done sh -c 'exit 3'")
    done.wait()
    table = job(ipython_shell, "list")
    assert isinstance(table, JobTable)
    data, _ = ipython_shell.display_formatter.format(table)
    lines = data["text/plain"].splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[str(sleeper.id)][1:3] == ["sleeper", "running"]
    assert rows[str(sleeper.id)][3] == "-"
    assert rows[str(done.id)][1:4] == ["done", "failed", "3"]
    assert lines[2].endswith("sh -c 'exit 3'")
    html = data["text/html"]
    assert html.startswith('<table class="jobmagic-jobs">')
    assert (
        f'<td class="jobmagic-id" style="text-align:left">{done.id}</td>'
        "<td style='text-align:left'>done</td>"
    ) in html
    assert "<code>sh -c &#x27;exit 3&#x27;</code>" in html


@pytest.mark.timeout(30)
def test_list_empty_and_all(ipython_shell: Any) -> None:
    assert repr(job(ipython_shell, "list")) == (
        "No jobs in this kernel. Start one with %job start COMMAND."
    )
    worker = job(ipython_shell, "start true")
    worker.wait()
    everything = job(ipython_shell, "list --all")
    assert [w.id for w in everything.workers] == [worker.id]


@pytest.mark.timeout(30)
def test_status_shows_state_exit_error_runtime_pid_log(ipython_shell: Any) -> None:
    worker = job(ipython_shell, "start --name missing definitely-not-a-command-xyz")
    worker.wait()
    status = job(ipython_shell, "status missing")
    assert isinstance(status, JobStatus)
    fields = dict(status.fields())
    assert fields["state"] == "failed"
    assert fields["exit"] == "127"
    assert fields["error"] == "command not found: definitely-not-a-command-xyz"
    assert fields["pid"] == str(worker.pid)
    assert fields["log"] == str(worker.log_path)
    assert fields["runtime"].endswith("s")
    text = repr(status)
    assert text.splitlines()[0] == f'job {worker.id} "missing"'
    assert "  error:   command not found: definitely-not-a-command-xyz" in text
    assert "<th style='text-align:left'>pid</th>" in status._repr_html_()


@pytest.mark.timeout(30)
def test_logs_tail_collapses_progress_bars(ipython_shell: Any, capsys: Any) -> None:
    worker = job(ipython_shell, r"start printf 'head\n10%%\r50%%\r100%%\nline2\nline3\n'")
    worker.wait()
    capsys.readouterr()
    job(ipython_shell, f"logs {worker.id} --tail 3")
    assert capsys.readouterr().out == "100%\nline2\nline3\n"
    job(ipython_shell, f"logs {worker.id}")
    assert capsys.readouterr().out == "head\n100%\nline2\nline3\n"
    job(ipython_shell, f"logs {worker.id} --tail 0")
    assert capsys.readouterr().out == ""


class ReleaseOn(io.StringIO):
    """A stdout that opens a FIFO for writing (releasing a job) once it has seen a text."""

    def __init__(self, text: str, fifo: Path) -> None:
        super().__init__()
        self.text, self.fifo, self.released = text, fifo, False

    def write(self, s: str) -> int:
        n = super().write(s)
        if not self.released and self.text in self.getvalue():
            self.released = True
            fd = os.open(self.fifo, os.O_WRONLY)
            os.write(fd, b"go\n")
            os.close(fd)
        return n


@pytest.mark.timeout(30)
def test_logs_follow_streams_until_the_job_ends(ipython_shell: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    worker = job(
        ipython_shell,
        f"start printf 'one\\ntwo\\n'; read x < {fifo}; printf '3%%\\r'; printf '9%%\\rthree\\n'",
    )
    wait_for_output(worker, b"two\n")
    out = ReleaseOn("two\n", fifo)
    with contextlib.redirect_stdout(out):
        job(ipython_shell, f"logs {worker.id} --tail 1 --follow")
    assert worker.state is JobState.SUCCEEDED
    assert out.getvalue().startswith("two\n")
    assert collapse_carriage_returns(out.getvalue()) == "two\nthree\n"


@pytest.mark.timeout(30)
def test_logs_follow_of_finished_job_prints_everything(ipython_shell: Any, capsys: Any) -> None:
    worker = job(ipython_shell, "start printf 'a\\nb'")
    worker.wait()
    capsys.readouterr()
    job(ipython_shell, f"logs {worker.id} --follow")
    assert capsys.readouterr().out == "a\nb\n"


def test_live_printer_collapses_within_what_it_prints() -> None:
    out = io.StringIO()
    printer = LivePrinter(out)
    printer.feed(b"start\n10%")
    printer.feed(b"\r20%\r30%")
    printer.feed(b"\r40%\r")
    printer.feed(b"\n\xe2\x9c")  # "\r\n" split across chunks, then half a character
    printer.feed(b"\x93 done")
    printer.finish()
    assert out.getvalue() == "start\n10%\r30%\r40%\n✓ done\n"


def test_live_printer_continues_a_shown_line() -> None:
    out = io.StringIO()
    printer = LivePrinter(out)
    printer.show("x\n50%")
    printer.feed(b" more\r")
    printer.feed(b"60%")
    printer.finish()
    assert out.getvalue() == "x\n50% more\r60% more\n"


# -- stop, wait, rm, adopt, panel --------------------------------------------------------------


@pytest.mark.timeout(30)
def test_stop_reports_and_kills_the_whole_job(
    ipython_shell: Any, sleeper: Worker, capsys: Any
) -> None:
    capsys.readouterr()
    job(ipython_shell, "stop sleeper")
    assert capsys.readouterr().out == f'job {sleeper.id} "sleeper" stopped (killed by SIGTERM)\n'
    assert sleeper.state is JobState.STOPPED
    assert sleeper.pid is not None
    assert group_gone(sleeper.pid)
    job(ipython_shell, f"stop {sleeper.id}")
    assert capsys.readouterr().out == (
        f'job {sleeper.id} "sleeper" had already ended: stopped (killed by SIGTERM)\n'
    )


@pytest.mark.timeout(30)
def test_stop_escalates_to_sigkill_for_a_job_ignoring_sigterm(
    ipython_shell: Any, capsys: Any
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SLEEPER
    worker = job(ipython_shell, f"start {python_cmd(stubborn)}")
    wait_ready(worker)
    capsys.readouterr()
    job(ipython_shell, f"stop {worker.id} --timeout 0.2")
    assert capsys.readouterr().out == f"job {worker.id} stopped (killed by SIGKILL)\n"


@pytest.mark.timeout(30)
def test_stop_all(ipython_shell: Any, capsys: Any) -> None:
    workers = [job(ipython_shell, f"start {python_cmd(SLEEPER)}") for _ in range(2)]
    for worker in workers:
        wait_ready(worker)
    finished = job(ipython_shell, "start true")
    finished.wait()
    capsys.readouterr()
    job(ipython_shell, "stop --all")
    assert capsys.readouterr().out == "".join(
        f"job {w.id} stopped (killed by SIGTERM)\n" for w in workers
    )
    job(ipython_shell, "stop --all")
    assert capsys.readouterr().out == "No running jobs to stop.\n"


@pytest.mark.timeout(30)
def test_wait_reports_exit_codes(ipython_shell: Any, capsys: Any) -> None:
    ok = job(ipython_shell, "start --name ok true")
    bad = job(ipython_shell, "start sh -c 'exit 3'")
    capsys.readouterr()
    job(ipython_shell, f"wait ok {bad.id}")
    assert capsys.readouterr().out == (
        f'job {ok.id} "ok" succeeded (exit code 0)\njob {bad.id} failed (exit code 3)\n'
    )


@pytest.mark.timeout(30)
def test_wait_with_timeout_and_all(ipython_shell: Any, sleeper: Worker, capsys: Any) -> None:
    capsys.readouterr()
    job(ipython_shell, "wait --all --timeout 0.1")
    assert (
        capsys.readouterr().out == f'job {sleeper.id} "sleeper" is still running (waited 0.1 s)\n'
    )


@pytest.mark.timeout(60)
def test_rm_finished_removes_this_kernels_jobs_unless_asked_for_all(
    ipython_shell: Any, capsys: Any, jobmagic_home: Path
) -> None:
    mine = job(ipython_shell, "start true")
    mine.wait()
    other = subprocess.run(  # another kernel's job, ended
        [
            sys.executable,
            "-c",
            "from jobmagic import WorkerService; WorkerService().start('true').wait()",
        ],
        env={**os.environ, "JOBMAGIC_HOME": str(jobmagic_home)},
        timeout=60,
        check=True,
    )
    assert other.returncode == 0
    capsys.readouterr()
    job(ipython_shell, "rm --finished")
    assert capsys.readouterr().out == (
        "Removed 1 finished job of this kernel; kept 1 finished job of other kernels"
        " (--all-kernels removes them too).\n"
    )
    job(ipython_shell, "rm --finished --all-kernels")
    assert capsys.readouterr().out == (
        "Removed 0 finished jobs of this kernel and 1 finished job of other kernels.\n"
    )
    assert job(ipython_shell, "list --all").workers == []
    assert usage_error(ipython_shell, "rm --all-kernels") == (
        "%job rm: --all-kernels goes with --finished: %job rm --finished --all-kernels"
    )


@pytest.mark.timeout(30)
def test_rm(ipython_shell: Any, sleeper: Worker, capsys: Any) -> None:
    done = [job(ipython_shell, "start true") for _ in range(3)]
    for worker in done:
        worker.wait()
    capsys.readouterr()
    job(ipython_shell, f"rm {done[0].id}")
    assert capsys.readouterr().out == f"Removed job {done[0].id}.\n"
    assert usage_error(ipython_shell, "rm sleeper") == (
        f"%job rm: job {sleeper.id} is running; stop it first"
    )
    job(ipython_shell, "rm --finished")
    assert capsys.readouterr().out == "Removed 2 finished jobs of this kernel.\n"
    assert [w.id for w in job(ipython_shell, "list --all").workers] == [sleeper.id]


@pytest.mark.timeout(30)
def test_adopt_a_job_whose_kernel_died(ipython_shell: Any) -> None:
    # Another "kernel": a Python process that starts a detached job, then exits.
    script = (
        "from jobmagic import get_service\n"
        f"w = get_service().start({python_cmd(SLEEPER)!r}, name='orphan', detach=True)\n"
        "print(w.id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=20
    )
    job_id = int(out.stdout)
    listed = {w.id: w for w in job(ipython_shell, "list --all").workers}
    assert listed[job_id].orphaned
    assert "running (orphaned)" in repr(job(ipython_shell, "list --all"))
    assert usage_error(ipython_shell, f"wait {job_id}") == (
        f"%job wait: job {job_id} was started by a kernel that is gone; adopt it first "
        f"(svc.adopt({job_id}) or %job adopt {job_id})"
    )
    adopted = job(ipython_shell, f"adopt {job_id}")
    try:
        assert isinstance(adopted, Worker)
        assert adopted.owned
        assert adopted.state is JobState.RUNNING
        wait_ready(adopted)
    finally:
        job(ipython_shell, f"stop {job_id}")
    assert adopted.state is JobState.STOPPED
    assert adopted.pid is not None
    assert group_gone(adopted.pid)


@pytest.mark.timeout(30)
def test_panel(ipython_shell: Any) -> None:
    from jobmagic.notebook.panel import JobPanel

    panel = job(ipython_shell, "panel")
    try:
        assert isinstance(panel, JobPanel)
        assert panel.tail_lines == 200
    finally:
        panel.close()


# -- mistakes: one line, never a traceback -----------------------------------------------------

ALL = ", ".join(SUBCOMMANDS)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", f"%job needs a subcommand: {ALL} (see %job?)"),
        ("frobnicate", f"unknown subcommand 'frobnicate'; use one of: {ALL}"),
        ("stat 1", f"unknown subcommand 'stat'; did you mean start or status? use one of: {ALL}"),
        ("start", "%job start: empty command; write it after the options: %job start sleep 10"),
        (
            "start --name x",
            "%job start: empty command; write it after the options: %job start sleep 10",
        ),
        ("start --env FOO ls", "%job start: argument --env: expected KEY=VALUE, got 'FOO'"),
        ("start --env =1 ls", "%job start: argument --env: expected KEY=VALUE, got '=1'"),
        (
            "start --timeout -1 ls",
            "%job start: argument --timeout: expected a number of seconds >= 0, got '-1'",
        ),
        (
            "start --timeout soon ls",
            "%job start: argument --timeout: expected a number of seconds >= 0, got 'soon'",
        ),
        ("start --cwd /no/such/dir ls", "%job start: --cwd: no such directory: /no/such/dir"),
        (
            "start --bogus ls",
            "%job start: unknown option --bogus; put -- before a command that starts with a dash",
        ),
        ("start --name", "%job start: argument --name: expected one argument"),
        ("start --name 'x sleep 1", '%job start: No closing quotation in "\'x sleep 1"'),
        ("status", "%job status: which job? give its id or name: %job status 3"),
        ("status 99", "%job status: no job '99'; no jobs yet"),
        (
            "logs 1 --tail -3",
            "%job logs: argument --tail: expected a number of lines >= 0, got '-3'",
        ),
        ("stop", "%job stop: which jobs? give job ids or names, or --all to stop all"),
        ("stop 1 --all", "%job stop: give job ids or --all, not both"),
        (
            "stop --all --timeout x",
            "%job stop: argument --timeout: expected a number of seconds >= 0, got 'x'",
        ),
        ("wait", "%job wait: which jobs? give job ids or names, or --all to wait for all"),
        ("rm", "%job rm: which jobs? give job ids or names, or --finished"),
        ("adopt", "%job adopt: which job? give its id: %job adopt 7"),
        ("list --bogus", "%job list: unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors(ipython_shell: Any, line: str, message: str) -> None:
    assert usage_error(ipython_shell, line) == message


@pytest.mark.timeout(30)
def test_unknown_job_lists_close_ones(ipython_shell: Any) -> None:
    worker = job(ipython_shell, "start --name train true")
    worker.wait()
    assert (
        usage_error(ipython_shell, "status trian")
        == "%job status: no job 'trian'; did you mean train?"
    )
    assert (
        usage_error(ipython_shell, "logs 42")
        == f"%job logs: no job '42'; ids: {worker.id}; names: train"
    )
    other = job(ipython_shell, "start true")
    other.wait()
    assert usage_error(ipython_shell, "status nosuch") == (
        f"%job status: no job 'nosuch'; ids: {worker.id}, {other.id}; names: train"
    )


@pytest.mark.timeout(30)
def test_name_in_use(ipython_shell: Any, sleeper: Worker) -> None:
    assert usage_error(ipython_shell, "start --name sleeper true") == (
        "%job start: a running job is already named 'sleeper'; choose another name "
        "or stop that job first"
    )
    assert sleeper.state is JobState.RUNNING


@pytest.mark.timeout(30)
def test_cell_magic_mistakes(ipython_shell: Any) -> None:
    assert usage_error(ipython_shell, "--name x", cell="  \n") == (
        "%%job: empty cell; write the bash script in the cell body"
    )
    assert usage_error(ipython_shell, "--name x echo hi", cell="true\n") == (
        "%%job: only options go on the %%job line, found 'echo hi'; the cell body is the script"
    )
    assert usage_error(ipython_shell, "--env X", cell="true\n") == (
        "%%job: argument --env: expected KEY=VALUE, got 'X'"
    )


@pytest.mark.timeout(30)
def test_mistake_shows_one_line_and_no_traceback(ipython_shell: Any, capsys: Any) -> None:
    capsys.readouterr()
    result = ipython_shell.run_cell("%job start --env FOO ls")
    assert isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "UsageError: %job start: argument --env: expected KEY=VALUE, got 'FOO'\n"


# -- configuration, unloading ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_configuration_reaches_the_service(ipython_shell: Any) -> None:
    ipython_shell.config.JobMagics.stop_timeout = 7.5
    ipython_shell.config.JobMagics.keep_finished = 12
    ipython_shell.config.JobMagics.max_log_bytes = 1 << 20
    ipython_shell.config.JobMagics.panel_tail_lines = 50
    try:
        ipython_shell.run_line_magic("reload_ext", "jobmagic")
        magics = next(c for c in ipython_shell.configurables if isinstance(c, JobMagics))
        assert magics.stop_timeout == 7.5
        job(ipython_shell, "list")
        service = get_service()
        assert (service.stop_timeout, service.keep_finished, service.max_log_bytes) == (
            7.5,
            12,
            1 << 20,
        )
        panel = job(ipython_shell, "panel")
        assert panel.tail_lines == 50
        panel.close()
        ipython_shell.run_line_magic("config", "JobMagics.stop_timeout = 2.0")
        assert service.stop_timeout == 2.0
    finally:
        del ipython_shell.config["JobMagics"]
        ipython_shell.run_line_magic("reload_ext", "jobmagic")


@pytest.mark.timeout(30)
def test_unload_stops_owned_jobs_not_detached_ones_and_reload_works(ipython_shell: Any) -> None:
    owned = job(ipython_shell, f"start {python_cmd(SLEEPER)}")
    detached = job(ipython_shell, f"start --detach {python_cmd(SLEEPER)}")
    wait_ready(owned)
    wait_ready(detached)
    try:
        ipython_shell.run_line_magic("unload_ext", "jobmagic")
        assert ipython_shell.find_line_magic("job") is None
        assert ipython_shell.find_cell_magic("job") is None
        assert not any(isinstance(c, JobMagics) for c in ipython_shell.configurables)
        plain = ipython_shell.display_formatter.formatters["text/plain"]
        with pytest.raises(KeyError):
            plain.lookup_by_type(Worker)
        assert owned.state is JobState.STOPPED
        assert owned.pid is not None
        assert group_gone(owned.pid)
        assert detached.state is JobState.RUNNING
    finally:
        detached.stop(timeout=1)
        ipython_shell.run_line_magic("load_ext", "jobmagic")
    assert detached.pid is not None
    assert group_gone(detached.pid)
    worker = job(ipython_shell, "start true")
    assert worker.wait() == 0
    assert worker.id in [w.id for w in job(ipython_shell, "list").workers]


def test_a_state_displays_as_its_word(ipython_shell: Any) -> None:
    from jobmagic import JobState

    formatted, _ = ipython_shell.display_formatter.format(("server", JobState.RUNNING))
    assert formatted["text/plain"] == "('server', running)"
    assert repr(JobState.PAUSED) == "<JobState.PAUSED: 'paused'>"  # Python's own repr stays


@pytest.mark.timeout(30)
def test_a_job_whose_python_is_not_the_kernels_gets_one_hint(
    ipython_shell: Any, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "bin"
    other.mkdir()
    (other / "python").symlink_to("/bin/true")  # another "python", first on PATH
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
    capsys.readouterr()
    first = job(ipython_shell, "start python train.py")
    assert capsys.readouterr().out == (
        f"note: 'python' in this job is {other / 'python'}, not this kernel's Python "
        f"({sys.executable}); write {{sys.executable}} in the command to run the kernel's\n"
    )
    second = job(ipython_shell, "start python train.py --lr 2")
    assert capsys.readouterr().out == ""  # said once
    kernels = Path(sys.executable).parent
    job(ipython_shell, f"start --env PATH={kernels} python -c pass").wait()
    job(ipython_shell, "start echo python").wait()
    assert capsys.readouterr().out == ""  # the kernel's own, or not the first word
    first.wait()
    second.wait()


@pytest.mark.timeout(30)
def test_a_job_that_fails_at_once_shows_failed_in_its_output(ipython_shell: Any) -> None:
    worker = job(ipython_shell, "start pyhton train.py")
    formatted, _ = ipython_shell.display_formatter.format(worker)
    assert formatted["text/plain"] == (
        f"job {worker.id} failed (exit code 127): command not found: pyhton - pyhton train.py"
    )
    assert "failed" in formatted["text/html"]


@pytest.mark.timeout(30)
def test_a_running_job_shows_running_after_its_first_moment(ipython_shell: Any) -> None:
    from jobmagic.notebook.reprs import FIRST_MOMENT

    worker = job(ipython_shell, "start sleep 30")
    started = time.monotonic()
    formatted, _ = ipython_shell.display_formatter.format(worker)
    assert time.monotonic() - started < FIRST_MOMENT + 1.0
    assert formatted["text/plain"] == f"job {worker.id} running - sleep 30"
    worker.stop()


@pytest.mark.timeout(30)
def test_a_long_script_takes_one_line_of_the_html_table(ipython_shell: Any) -> None:
    from jobmagic.notebook.reprs import JobTable

    script = "\n".join(f"echo step {i}" for i in range(25))
    worker = ipython_shell.run_cell_magic("job", "--name steps", script)
    worker.wait()
    table = JobTable([worker])._repr_html_()
    assert "<code>echo step 0 …</code>" in table
    assert "echo step 24" in table  # in the cell's title, shown on hover
    assert table.count("<code>") == 1
