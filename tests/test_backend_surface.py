"""Choosing a job's backend, and seeing where each job runs: ``%job``, the panel, the CLI.

No Ray cluster: a Ray job is sent to ``http://127.0.0.1:1``, where nothing listens, so it
fails at once with an error that names the address, and its spec and record (what a
cluster would have been given) are what the tests read. ``RAY_ADDRESS`` is always set to
that address too, so a Ray head that happens to run on the default port gets nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from test_cli import cli
from test_magics import job, usage_error
from traitlets import TraitError

from jobmagic import JobState, WorkerService
from jobmagic.backends.registry import BACKENDS
from jobmagic.engine.worker import Worker
from jobmagic.notebook.magics import JobMagics
from jobmagic.notebook.reprs import JobStatus, JobTable
from jobmagic.notebook.row_summary import render_summary, row_tooltip
from jobmagic.store.job_store import JobStore
from jobmagic.text.describe import runs_elsewhere, where_text

pytestmark = pytest.mark.timeout(60)

NOWHERE = "http://127.0.0.1:1"  # a port nothing listens on: a Ray start fails at once
UNREACHABLE = f"cannot reach the Ray cluster at {NOWHERE}: "
LOCAL_ONLY = "%job start: an address and --ship-cwd are for jobs on a cluster: add --on ray"


@pytest.fixture(autouse=True)
def _ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's default Ray address (``RAY_ADDRESS``) is one where nothing listens."""
    monkeypatch.setenv("RAY_ADDRESS", NOWHERE)


@pytest.fixture
def magics(ipython_shell: Any) -> JobMagics:
    """The shell's ``JobMagics`` (its traits are set on it; the next load makes a new one)."""
    return next(c for c in ipython_shell.configurables if isinstance(c, JobMagics))


def failed_on_ray(worker: Worker, address: str = NOWHERE) -> None:
    """The start reached the engine as a Ray job for ``address``, which is not there."""
    assert worker.state is JobState.FAILED
    assert worker.spec.backend == "ray"
    assert worker.spec.address == address
    assert (worker.error or "").startswith(f"cannot reach the Ray cluster at {address}: ")


# -- the one formatter -----------------------------------------------------------------------
def test_where_text_names_the_backend_and_its_cluster() -> None:
    assert where_text("local", None) == "local"
    assert where_text("ray", "http://10.0.0.5:8265") == "ray http://10.0.0.5:8265"
    assert not runs_elsewhere("local")
    assert runs_elsewhere("ray")


# -- %job start and %%job: the options -----------------------------------------------------------
def test_start_on_ray_gives_the_spec_every_option(ipython_shell: Any) -> None:
    worker = job(
        ipython_shell,
        f"start --on ray --address {NOWHERE} --ship-cwd --gpus 1 --cpus 2 --memory 4G "
        "--name remote echo hi",
    )
    failed_on_ray(worker)
    spec = worker.spec
    assert (spec.ship_cwd, spec.gpus, spec.cpus, spec.memory) == (True, 1, 2.0, 4 << 30)
    assert (spec.name, spec.command) == ("remote", "echo hi")


def test_cell_magic_takes_the_same_backend_options(ipython_shell: Any) -> None:
    worker = ipython_shell.run_cell_magic(
        "job", f"--on ray --address {NOWHERE} --ship-cwd --gpus 2 --memory 1G", "echo hi\n"
    )
    failed_on_ray(worker)
    assert (worker.spec.ship_cwd, worker.spec.gpus, worker.spec.memory) == (True, 2, 1 << 30)
    assert worker.spec.shell == "/bin/bash"
    again = ipython_shell.run_cell_magic("job", f"start --on ray --address {NOWHERE}", "true\n")
    failed_on_ray(again)


def test_a_start_without_on_is_local_with_no_address(ipython_shell: Any) -> None:
    worker = job(ipython_shell, "start true")
    assert worker.wait(10) == 0
    assert (worker.spec.backend, worker.spec.address, worker.spec.ship_cwd) == (
        "local",
        None,
        False,
    )
    assert job(ipython_shell, "start --on local true").wait(10) == 0


def test_start_on_ray_without_address_lets_the_engine_resolve_it(ipython_shell: Any) -> None:
    failed_on_ray(job(ipython_shell, "start --on ray echo hi"))  # RAY_ADDRESS, made explicit


def test_an_unknown_backend_is_one_line_that_lists_the_backends(
    ipython_shell: Any, capsys: Any
) -> None:
    message = usage_error(ipython_shell, "start --on nowhere true")
    assert message.startswith("%job start: argument --on: invalid choice: 'nowhere' (choose from")
    assert all(f"'{backend}'" in message for backend in BACKENDS), message
    cell = usage_error(ipython_shell, "--on nowhere", cell="true\n")
    assert cell == "%%job" + message.removeprefix("%job start")
    capsys.readouterr()
    result = ipython_shell.run_cell("%job start --on nowhere true")
    assert isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"UsageError: {message}\n")


def test_an_address_or_ship_cwd_without_ray_is_refused(ipython_shell: Any) -> None:
    assert usage_error(ipython_shell, f"start --address {NOWHERE} true") == LOCAL_ONLY
    assert usage_error(ipython_shell, "start --on local --ship-cwd true") == LOCAL_ONLY
    assert usage_error(ipython_shell, "--ship-cwd", cell="true\n") == (
        "%%job: " + LOCAL_ONLY.removeprefix("%job start: ")
    )


def test_start_help_lists_the_backend_options(ipython_shell: Any, capsys: Any) -> None:
    assert job(ipython_shell, "start --help") is None
    out = capsys.readouterr().out
    assert "[--on BACKEND] [--address URL] [--ship-cwd]" in out
    assert "What runs it: local or ray" in out
    assert "%job start --on ray" in out
    assert "[--on BACKEND] [--address URL] [--ship-cwd]" in JobMagics.job.__doc__


# -- c.JobMagics.backend and ray_address ---------------------------------------------------------
def test_backend_and_ray_address_default_to_local_and_the_engines_default(
    magics: JobMagics,
) -> None:
    assert magics.backend == "local"
    assert magics.ray_address is None


def test_configured_backend_and_ray_address_reach_a_start(ipython_shell: Any) -> None:
    ipython_shell.config.JobMagics.backend = "ray"
    ipython_shell.config.JobMagics.ray_address = "http://127.0.0.1:2"
    try:
        ipython_shell.run_line_magic("reload_ext", "jobmagic")
        failed_on_ray(job(ipython_shell, "start echo hi"), "http://127.0.0.1:2")
        failed_on_ray(ipython_shell.run_cell_magic("job", "", "echo hi\n"), "http://127.0.0.1:2")
        # --address wins over the configured one.
        failed_on_ray(job(ipython_shell, f"start --address {NOWHERE} echo hi"))
        # A local job never gets the Ray address (the local executor refuses any).
        local = job(ipython_shell, "start --on local true")
        assert local.wait(10) == 0
        assert (local.spec.backend, local.spec.address) == ("local", None)
    finally:
        del ipython_shell.config["JobMagics"]
        ipython_shell.run_line_magic("reload_ext", "jobmagic")


def test_configured_ray_backend_without_address_uses_ray_address_env(magics: JobMagics) -> None:
    magics.backend = "ray"  # ray_address stays None: the engine resolves RAY_ADDRESS
    failed_on_ray(magics.job("start echo hi"))


def test_an_unknown_configured_backend_is_refused_when_set(magics: JobMagics) -> None:
    with pytest.raises(TraitError, match=r"^JobMagics.backend: unknown backend 'nowhere'; "):
        magics.backend = "nowhere"
    assert magics.backend == "local"


# -- where each job runs: %job status, %job list, the panel --------------------------------------
def test_status_says_where_a_ray_job_runs_and_nothing_new_for_a_local_one(
    ipython_shell: Any,
) -> None:
    remote = job(ipython_shell, f"start --on ray --address {NOWHERE} --name remote echo hi")
    local = job(ipython_shell, "start --name here true")
    local.wait(10)
    status = job(ipython_shell, "status remote")
    assert isinstance(status, JobStatus)
    labels = [label for label, _ in status.fields()]
    assert labels[:3] == ["command", "state", "runs on"]
    assert dict(status.fields())["runs on"] == f"ray {NOWHERE}"
    assert dict(status.fields())["error"].startswith(UNREACHABLE)
    assert f"\n  runs on: ray {NOWHERE}\n" in repr(status)
    cells = "<th style='text-align:left'>runs on</th><td style='text-align:left'>"
    assert f"{cells}ray {NOWHERE}<" in status._repr_html_()
    here = job(ipython_shell, "status here")
    assert "runs on" not in dict(here.fields())
    assert "runs on" not in repr(here)
    assert remote.id != local.id


def test_list_has_a_where_column_only_when_a_job_does_not_run_here(ipython_shell: Any) -> None:
    local = job(ipython_shell, "start true")
    local.wait(10)
    alone = job(ipython_shell, "list")
    assert isinstance(alone, JobTable)
    assert alone.columns == ("ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND")
    assert "WHERE" not in repr(alone)
    remote = job(ipython_shell, f"start --on ray --address {NOWHERE} echo hi")
    table = job(ipython_shell, "list")
    assert table.columns == ("ID", "NAME", "STATE", "EXIT", "RUNTIME", "WHERE", "COMMAND")
    assert [row[-2:] for row in table.rows()] == [("local", "true"), (f"ray {NOWHERE}", "echo hi")]
    text = repr(table).splitlines()
    assert text[0].split() == list(table.columns)
    assert text[2].index(f"ray {NOWHERE}") == text[0].index("WHERE")  # aligned
    assert "<th style='text-align:left'>where</th>" in table._repr_html_()
    assert f"<td style='text-align:left'>ray {NOWHERE}</td>" in table._repr_html_()
    assert remote.state is JobState.FAILED


def test_panel_row_says_where_a_ray_job_runs(ipython_shell: Any) -> None:
    remote = job(ipython_shell, f"start --on ray --address {NOWHERE} --memory 1G echo hi")
    assert row_tooltip(remote) == f"echo hi\nlimits: memory 1 GiB\nruns on: ray {NOWHERE}"
    local = job(ipython_shell, "start true")
    local.wait(10)
    assert row_tooltip(local) == "true"
    assert "jobmagic-where" not in render_summary(local)[1]
    # A running Ray job's line: tests/test_ray.py, on a real Ray head.


# -- the command line ---------------------------------------------------------------------------
def test_cli_start_on_ray_records_every_option(jobmagic_home: Path) -> None:
    done = cli(
        "start",
        *("--on", "ray", "--address", NOWHERE, "--ship-cwd"),
        *("--gpus", "1", "--cpus", "2", "--memory", "4G", "--name", "remote"),
        *("--", "echo", "hi"),
    )
    assert done.returncode == 1, done
    job_id = int(done.stdout)
    stderr = done.stderr.decode()
    assert stderr.startswith(f'jobmagic start: job {job_id} "remote" failed: {UNREACHABLE}')
    assert stderr.count("\n") == 1
    record = JobStore(jobmagic_home).get(job_id)
    assert record is not None
    assert (record.backend, record.address, record.ship_cwd) == ("ray", NOWHERE, True)
    assert (record.gpus, record.cpu_limit, record.memory_limit) == (1, 2.0, 4 << 30)


def test_cli_start_without_on_is_local(jobmagic_home: Path) -> None:
    done = cli("start", "--", "true")
    assert done.returncode == 0, done
    assert cli("wait", done.stdout.decode().strip()).returncode == 0  # it ends, and is reaped
    record = JobStore(jobmagic_home).get(int(done.stdout))
    assert record is not None
    assert (record.backend, record.address, record.ship_cwd) == ("local", None, False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on", "nowhere"], "jobmagic start: argument --on: invalid choice: 'nowhere'"),
        (["--address", NOWHERE], LOCAL_ONLY.replace("%job start", "jobmagic start")),
        (["--ship-cwd"], LOCAL_ONLY.replace("%job start", "jobmagic start")),
    ],
)
def test_cli_backend_mistakes_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = cli("start", *args, "--", "true")
    assert done.returncode == 2, done
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines[0]
    if "--on" in args:
        assert all(f"'{backend}'" in lines[0] for backend in BACKENDS), lines[0]


def test_cli_list_and_status_say_where_each_job_runs(jobmagic_home: Path) -> None:
    svc = WorkerService(home=jobmagic_home)
    try:
        local = svc.start("true", name="here")
        local.wait(10)
        alone = cli("list").stdout.decode().splitlines()
        assert alone[0].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "STARTED", "COMMAND"]
        remote = svc.start("echo hi", name="remote", backend="ray", address=NOWHERE)
        assert remote.state is JobState.FAILED
    finally:
        svc.shutdown()
    lines = cli("list").stdout.decode().splitlines()
    assert lines[0].split() == [
        *("ID", "NAME", "STATE", "EXIT", "RUNTIME", "STARTED", "WHERE", "COMMAND")
    ]
    assert lines[1].index("local") == lines[0].index("WHERE") == lines[2].index("ray ")
    assert f"ray {NOWHERE}  echo hi" in lines[2]
    status = cli("status", "remote").stdout.decode()
    assert re.search(rf"^runs on: +ray {re.escape(NOWHERE)}$", status, re.MULTILINE), status
    assert re.search(r"^runs on: +local$", cli("status", "here").stdout.decode(), re.MULTILINE)
