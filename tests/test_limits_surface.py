"""Resource limits and usage as people meet them: ``%job``, the panel, the command line.

Real kernels (fixture ``kernel``), real jobs, real cgroups (v1 as root on these machines):
an OOM kill is the kernel's, "no cgroup" is ``JOBMAGIC_CGROUPS=off`` in the kernel's
environment (a setting, not a mock). Waits are handshakes (``w.wait()``, a job's "ready"
line, a widget observer). After each test no cgroup of its jobs is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import read_until
from helpers import python_cmd
from test_magics_kernel import ok, result_data, stdout, value
from test_panel import wait_row, wait_state, wait_widget

from jobmagic import JobState, WorkerService
from jobmagic.backends.local.cgroup_layout import detect
from jobmagic.backends.local.cgroups import NAME_PREFIX
from jobmagic.core.limits import Limits, Usage
from jobmagic.core.spec import JobSpec
from jobmagic.notebook.panel import JobPanel
from jobmagic.text.describe import (
    best_effort_text,
    cpu_limit_warning,
    limit_fields,
    usage_details,
    usage_text,
)

pytestmark = pytest.mark.timeout(120)

LAYOUT, WHY_NONE = detect("auto")
needs_limits = pytest.mark.skipif(
    LAYOUT is None or LAYOUT.missing(JobSpec("x", memory="1G", cpus=1, pids=10).limits) != [],
    reason=f"this machine's cgroups do not enforce memory, cpu and pids limits ({WHY_NONE})",
)
JOBMAGIC = str(Path(sys.executable).with_name("jobmagic"))
# Touches 300 MiB (a bytes product writes every page): over a 100 MiB limit it is killed
# before it prints.
HOG = python_cmd("b = b'x' * (300 << 20); print('allocated')")
# Prints "ready", then keeps one CPU busy until stopped (int() is never 1), on one line:
# a line magic's command ends with its line.
BUSY = python_cmd("print('ready', flush=True); any(iter(int, 1))")
BEST_EFFORT = (
    "best effort, no cgroup: memory as a per-process address-space limit (ulimit -v), "
    "cpus dropped (needs the cpu controller)"
)
# "CPU 85% · 1.2 GiB": a percentage, then a size.
USAGE = r"CPU \d+% · \d+(\.\d)? (B|KiB|MiB|GiB)"


@pytest.fixture(autouse=True)
def _no_cgroup_left(jobmagic_home: Path) -> Iterator[None]:
    """After the test (its kernel shut down), none of its jobs' cgroups is left.

    A job's cgroup is ``jobmagic-<its log's name>`` in each hierarchy of the cgroup that
    started it: this process's, which its kernels and command lines inherit.
    """
    yield
    logs = jobmagic_home / "logs"
    names = {NAME_PREFIX + log.stem for log in logs.glob("*.log")} if logs.is_dir() else set()
    bases = LAYOUT.hierarchies if LAYOUT is not None else ()
    left = [os.path.join(base, name) for base in bases for name in names]
    assert [path for path in left if os.path.exists(path)] == []


@pytest.fixture
def kernel_without_cgroups(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """A kernel started with ``JOBMAGIC_CGROUPS=off`` in its environment."""
    monkeypatch.setenv("JOBMAGIC_CGROUPS", "off")
    return request.getfixturevalue("kernel")  # made now: its environment has the setting


def usage_error(kernel: Any, code: str) -> str:
    """Run ``code``; it must fail with a one-line UsageError (no traceback): that line."""
    reply, messages = kernel.execute(code)
    assert reply["status"] == "error", reply
    assert reply["ename"] == "UsageError", reply
    streams = [m["content"] for m in messages if m["msg_type"] == "stream"]
    assert [s["name"] for s in streams] == ["stderr"], messages
    text: str = streams[0]["text"]
    assert text.endswith("\n"), text
    assert text.count("\n") == 1, text
    return text.rstrip("\n")


def status_text(kernel: Any, job: str) -> str:
    """``%job status JOB`` as text/plain."""
    text: str = result_data(ok(kernel, f"%job status {job}"))["text/plain"]
    return text


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``jobmagic ARGS`` on the test's home, without a terminal."""
    return subprocess.run(
        [JOBMAGIC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


# -- the one formatter ----------------------------------------------------------------------
def test_usage_text_is_cpu_then_memory_now() -> None:
    running = Usage(memory=int(1.2 * (1 << 30)), peak_memory=3 << 29, cpu_seconds=12.34)
    assert usage_text(Usage(memory=512 << 20, cpu_percent=85.4)) == "CPU 85% · 512 MiB"
    assert usage_text(Usage(memory=int(1.2 * (1 << 30)), cpu_percent=180.0)) == (
        "CPU 180% · 1.2 GiB"
    )
    assert usage_text(running) == "1.2 GiB"  # no rate yet
    assert usage_text(Usage(cpu_percent=0.2)) == "CPU 0%"
    assert usage_text(Usage(peak_memory=1 << 30, cpu_seconds=1.0)) == ""  # an ended job's
    assert usage_text(None) == ""


def test_usage_details_say_now_and_in_all() -> None:
    running = Usage(
        memory=int(1.2 * (1 << 30)), peak_memory=3 << 29, cpu_seconds=12.34, cpu_percent=85
    )
    assert usage_details(running) == "CPU 85% · 1.2 GiB (peak 1.5 GiB, CPU time 12.3s)"
    ended = Usage(peak_memory=3 << 29, cpu_seconds=12.34)
    assert usage_details(ended) == "peak 1.5 GiB, CPU time 12.3s"
    assert usage_details(Usage(cpu_seconds=184.0)) == "CPU time 3m04s"
    assert usage_details(Usage(memory=900 << 10)) == "900 KiB"
    assert usage_details(Usage()) == "-"
    assert usage_details(None) == "-"


def test_best_effort_text_says_what_was_given_up() -> None:
    assert (
        best_effort_text(
            "none; best effort: memory as a per-process address-space limit (ulimit -v), "
            "cpus dropped (needs the cpu controller)"
        )
        == BEST_EFFORT
    )
    assert best_effort_text("cgroup v2; best effort: pids dropped (needs the pids controller)") == (
        "best effort, cgroup v2: pids dropped (needs the pids controller)"
    )
    assert best_effort_text("cgroup v1") is None
    assert best_effort_text("none") is None
    assert best_effort_text(None) is None


def test_limit_fields_follow_the_jobs_life() -> None:
    limits = Limits(memory=100 << 20, cpus=0.5)
    assert limit_fields(limits, None, None, finished=False) == [
        ("limits", "memory 100 MiB, cpus 0.5")
    ]
    running = Usage(memory=3 << 20, peak_memory=4 << 20, cpu_seconds=0.5, cpu_percent=50)
    assert limit_fields(limits, "cgroup v1", running, finished=False) == [
        ("limits", "memory 100 MiB, cpus 0.5"),
        ("held by", "cgroup v1"),
        ("usage", "CPU 50% · 3 MiB (peak 4 MiB, CPU time 0.5s)"),
    ]
    ended = Usage(peak_memory=4 << 20, cpu_seconds=0.5)
    assert limit_fields(limits, "cgroup v1", ended, finished=True) == [
        ("limits", "memory 100 MiB, cpus 0.5"),
        ("held by", "cgroup v1"),
        ("used", "peak 4 MiB, CPU time 0.5s"),
    ]
    # A job without limits shows only what it used.
    assert limit_fields(Limits(), "cgroup v1", ended, finished=True) == [
        ("used", "peak 4 MiB, CPU time 0.5s")
    ]
    assert limit_fields(Limits(), "none", None, finished=False) == []


def test_cpu_limit_warning_only_above_the_machine() -> None:
    cpus = os.cpu_count() or 1
    assert cpu_limit_warning(Limits(cpus=cpus)) is None
    assert cpu_limit_warning(Limits()) is None
    assert cpu_limit_warning(Limits(cpus=999)) == (
        f"warning: a limit of 999 cpus is more than the {cpus} this machine has; the job "
        "runs, but the limit never holds it back"
    )


# -- %job ----------------------------------------------------------------------------------
@pytest.mark.kernel
@needs_limits
def test_a_job_over_its_memory_limit_fails_and_status_says_out_of_memory(kernel: Any) -> None:
    printed = stdout(ok(kernel, f"j = %job start --memory 100M {HOG}"))
    assert printed == ""  # nothing to say of a limit that holds
    assert value(kernel, "j.wait(60), j.state.value, j.output()") == (
        f"({-signal.SIGKILL}, 'failed', b'')"
    )
    lines = status_text(kernel, "{j.id}").splitlines()
    assert "  error:   out of memory (limit 100 MiB)" in lines
    assert "  limits:  memory 100 MiB" in lines
    assert re.fullmatch(
        r"  held by: cgroup v[12]", lines[lines.index("  limits:  memory 100 MiB") + 1]
    )
    used = [line for line in lines if line.startswith("  used:")]
    assert len(used) == 1, lines
    assert re.fullmatch(r"  used:    peak \d+(\.\d)? MiB, CPU time \d+\.\ds", used[0]), used


@pytest.mark.kernel
@needs_limits
def test_status_of_a_running_job_shows_what_it_uses(kernel: Any) -> None:
    ok(kernel, f"j = %job start --cpus 0.5 --pids 20 {BUSY}")
    ok(kernel, "for chunk in j.stream():\n    if b'ready' in chunk:\n        break")
    try:
        lines = status_text(kernel, "{j.id}").splitlines()
        assert "  limits:  cpus 0.5, pids 20" in lines
        usage = [line for line in lines if line.startswith("  usage:")]
        assert len(usage) == 1, lines
        assert re.fullmatch(rf"  usage:   {USAGE} \(.*CPU time \d+\.\ds\)", usage[0]), usage
    finally:
        ok(kernel, "j.stop()")


@pytest.mark.kernel
def test_status_of_a_job_without_limits_shows_what_it_used(kernel: Any) -> None:
    ok(kernel, "j = %job start true")
    assert value(kernel, "j.wait(30)") == "0"
    lines = status_text(kernel, "{j.id}").splitlines()
    assert not [line for line in lines if line.startswith(("  limits:", "  held by:"))], lines
    used = [line for line in lines if line.startswith("  used:")]
    assert len(used) == 1, lines
    assert re.fullmatch(r"  used: +peak \d+(\.\d)? [KM]iB, CPU time \d+\.\ds", used[0]), used


@pytest.mark.kernel
def test_bad_limits_are_one_line_usage_errors_and_start_nothing(kernel: Any) -> None:
    cases = {
        "--memory 0": "a size must be more than 0 bytes, not '0'",
        "--memory abc": "cannot read 'abc' as a size",
        "--pids 1": "pids is a whole number of processes >= 2",
        "--cpus 0": "cpus is a number of CPUs > 0 such as 1.5, not '0'",
    }
    for options, message in cases.items():
        line = usage_error(kernel, f"%job start {options} true")
        assert line.startswith(f"UsageError: %job start: {message}"), (options, line)
        cell = usage_error(kernel, f"%%job {options}\ntrue")
        assert cell.startswith(f"UsageError: %%job: {message}"), (options, cell)
    ok(kernel, "from jobmagic import get_service")
    assert value(kernel, "len(get_service().list())") == "0"


@pytest.mark.kernel
def test_cpus_above_the_machine_warn_and_the_job_runs(kernel: Any) -> None:
    printed = stdout(ok(kernel, f"j = %job start --cpus 999 {python_cmd('print(42)')}"))
    assert printed == (
        f"warning: a limit of 999 cpus is more than the {os.cpu_count()} this machine has; "
        "the job runs, but the limit never holds it back\n"
    )
    assert value(kernel, "j.wait(30), j.output(), j.limits.cpus") == "(0, b'42\\n', 999.0)"


@pytest.mark.kernel
def test_without_cgroups_limits_are_refused_unless_best_effort(
    kernel_without_cgroups: Any,
) -> None:
    kernel = kernel_without_cgroups
    refused = usage_error(kernel, "%job start --memory 100M true")
    assert refused.startswith(
        "UsageError: %job start: memory limits need a cgroup, and cgroups are turned off "
        "(JOBMAGIC_CGROUPS=off): "
    ), refused
    assert "--best-effort" in refused
    printed = stdout(
        ok(kernel, f"j = %job start --memory 100M --cpus 1 --best-effort {python_cmd('print(42)')}")
    )
    assert printed == f"job 1 runs with {BEST_EFFORT}\n"
    assert value(kernel, "j.id, j.wait(30), j.output()") == "(1, 0, b'42\\n')"
    lines = status_text(kernel, "1").splitlines()
    assert "  limits:  memory 100 MiB, cpus 1" in lines
    assert (
        "  held by: none; best effort: memory as a per-process address-space limit "
        "(ulimit -v), cpus dropped (needs the cpu controller)"
    ) in lines
    # A job without limits needs no cgroup: it starts, and says nothing.
    assert stdout(ok(kernel, "k = %job start true\nk.wait(30)")) == ""


@pytest.mark.kernel
@needs_limits
def test_configured_default_limits_apply_unless_an_option_says_otherwise(kernel: Any) -> None:
    ok(kernel, '%config JobMagics.memory_limit = "100M"\n%config JobMagics.pids_limit = 50')
    ok(kernel, f"j = %job start {HOG}")
    assert value(kernel, "j.limits.describe()") == "'memory 100 MiB, pids 50'"
    assert value(kernel, "j.wait(60), j.error") == (
        f"({-signal.SIGKILL}, 'out of memory (limit 100 MiB)')"
    )
    ok(kernel, "k = %job start --memory 200M --pids none true\nk.wait(30)")
    assert value(kernel, "k.limits.describe()") == "'memory 200 MiB'"
    ok(kernel, "%%job --memory none\ntrue")
    assert value(kernel, "_.limits.describe(), _.wait(30)") == "('pids 50', 0)"
    # A default the engine would refuse is refused when it is set.
    _, messages = kernel.execute('%config JobMagics.memory_limit = "abc"')
    shown = "".join(str(m["content"]) for m in messages)
    assert "JobMagics.memory_limit: cannot read 'abc' as a size" in shown, messages
    assert value(kernel, "get_ipython().find_magic('job').__self__.memory_limit") == "'100M'"


# -- the panel ------------------------------------------------------------------------------
@needs_limits
def test_a_running_rows_panel_shows_its_usage_and_its_limits(jobmagic_home: Path) -> None:
    service = WorkerService(jobmagic_home, stop_timeout=5.0)
    panel = JobPanel(service)
    try:
        worker = service.start(BUSY, memory="200M", cpus=0.5)
        row = wait_row(panel, worker.id or 0)
        read_until(worker, re.compile(rb"ready\n"))
        assert row.summary.tooltip == f"{worker.command}\nlimits: memory 200 MiB, cpus 0.5"
        # The runtime tick (1 Hz) reads the usage of running rows.
        wait_widget(row.summary, lambda: "jobmagic-usage" in row.summary.value, names=["value"])
        shown = re.search(
            r'<span class="jobmagic-usage" title="limits: memory 200 MiB, cpus 0.5">([^<]*)</span>',
            row.summary.value,
        )
        assert shown is not None, row.summary.value
        assert re.fullmatch(USAGE, shown.group(1)), shown.group(1)
        worker.stop()
        wait_state(row, JobState.STOPPED)
        assert "jobmagic-usage" not in row.summary.value  # an ended job uses nothing now
    finally:
        panel.close()
        service.shutdown()


def test_a_row_without_limits_keeps_its_command_as_tooltip(jobmagic_home: Path) -> None:
    service = WorkerService(jobmagic_home)
    panel = JobPanel(service)
    try:
        worker = service.start("true")
        row = wait_row(panel, worker.id or 0)
        wait_state(row, JobState.SUCCEEDED)
        assert row.summary.tooltip == "true"
    finally:
        panel.close()
        service.shutdown()


# -- the command line -----------------------------------------------------------------------
@needs_limits
def test_cli_start_with_a_memory_limit_and_status_of_its_end(jobmagic_home: Path) -> None:
    done = cli("start", "--memory", "100M", "--", HOG)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    job_id = done.stdout.strip()
    assert cli("wait", job_id).returncode == 128 + signal.SIGKILL
    lines = cli("status", job_id).stdout.splitlines()
    assert "error:   out of memory (limit 100 MiB)" in lines
    assert "limits:  memory 100 MiB" in lines
    assert any(re.fullmatch(r"held by: cgroup v[12]", line) for line in lines), lines
    assert any(re.fullmatch(r"used:    peak \d+(\.\d)? MiB, CPU time \d+\.\ds", x) for x in lines)


@needs_limits
def test_cli_status_of_a_running_job_shows_its_usage(jobmagic_home: Path) -> None:
    done = cli("start", "--cpus", "0.5", "--pids", "20", "--", BUSY)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    try:
        lines = cli("status", job_id).stdout.splitlines()
        assert "limits:  cpus 0.5, pids 20" in lines
        usage = [line for line in lines if line.startswith("usage:")]
        assert len(usage) == 1, lines
        assert re.fullmatch(rf"usage:   {USAGE} \(.*CPU time \d+\.\ds\)", usage[0]), usage
        data = json.loads(cli("status", job_id, "--json").stdout)
        assert data["limits"] == {"memory": None, "cpus": 0.5, "pids": 20}
        assert re.fullmatch(r"cgroup v[12]", data["containment"]), data
        assert data["usage"]["running"] is True
        assert data["usage"]["memory"] > 0
        assert data["usage"]["cpu_percent"] >= 0
    finally:
        stopped = cli("stop", job_id)
    assert stopped.returncode == 0, stopped.stderr


def test_cli_limit_mistakes_are_one_line_and_exit_2(jobmagic_home: Path) -> None:
    for args, message in (
        (["--cpus", "0"], "jobmagic start: cpus is a number of CPUs > 0 such as 1.5, not '0'"),
        (["--memory", "abc"], "jobmagic start: cannot read 'abc' as a size"),
        (["--pids", "x"], "jobmagic start: argument --pids: invalid int value: 'x'"),
    ):
        done = cli("start", *args, "--", "true")
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(message), done.stderr


def test_cli_cpus_above_the_machine_warn_on_stderr(jobmagic_home: Path) -> None:
    done = cli("start", "--cpus", "999", "--", "true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()  # the answer stays the id alone
    assert done.stderr == f"jobmagic start: {cpu_limit_warning(Limits(cpus=999))}\n"
    assert cli("wait", done.stdout.strip()).returncode == 0


def test_cli_best_effort_says_what_was_dropped(
    jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMAGIC_CGROUPS", "off")
    refused = cli("start", "--memory", "100M", "--", "true")
    assert refused.returncode == 2
    assert refused.stderr.startswith("jobmagic start: memory limits need a cgroup"), refused
    done = cli("start", "--memory", "100M", "--cpus", "1", "--best-effort", "--", "true")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert done.stderr == f"jobmagic start: job {job_id} runs with {BEST_EFFORT}\n"
    assert cli("wait", job_id).returncode == 0
