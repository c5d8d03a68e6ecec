"""Shared fixtures: an isolated job home, a process-leak guard, real shells, kernels,
JupyterLab and Notebook 7 servers and a headless Chromium page.

Fixture names are part of the test suite's contract; other test modules use them as is:
``jobmagic_home`` (autouse), ``ipython_shell``, ``kernel``, ``lab_server``,
``notebook_server``, ``browser_page``, ``ray_address``. Helpers live in ``tests/helpers.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import free_port, stop_server, wait_until

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell
    from jupyter_client import BlockingKernelClient, KernelManager
    from playwright.sync_api import Page

    from jobmagic.engine.service import WorkerService

# pytester runs the harness's own tests (tests/test_harness.py) in a child pytest.
pytest_plugins = ["pytester"]

#: Environment variable that tags every process a test starts (children inherit it).
MARK_VAR = "JOBMAGIC_TEST_MARK"
#: Prefix shared by all marks of this pytest session; the session-end check looks for it.
#: Processes started outside a test (by session or module fixtures) get "<tag>-session".
SESSION_TAG = f"s{os.getpid()}-{secrets.token_hex(3)}"
#: How long processes get to finish exiting after a test before they count as leaked.
LEAK_GRACE = 5.0  # seconds

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- leak guard


def _marked_processes(wanted: Callable[[str], bool]) -> list[tuple[int, str]]:
    """Live processes (not zombies, not us) whose environment carries a wanted mark."""
    prefix = MARK_VAR.encode() + b"="
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()  # empty for a zombie
        except OSError:  # exited meanwhile, or not ours to read
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                if wanted(item[len(prefix) :].decode(errors="replace")):
                    found.append((int(entry.name), _cmdline(int(entry.name))))
                break
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _wait_for_exit(pids: list[int], timeout: float) -> None:
    """Wait (on pidfds, not by polling) until every pid has exited or ``timeout`` passed."""
    pidfds = []
    for pid in pids:
        try:
            pidfds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    try:
        poller = select.poll()
        for fd in pidfds:
            poller.register(fd, select.POLLIN)  # readable once the process has exited
        waiting = set(pidfds)
        deadline = time.monotonic() + timeout
        while waiting and (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining * 1000):
                waiting.discard(fd)
                poller.unregister(fd)
    finally:
        for fd in pidfds:
            os.close(fd)


def _reap_leaks(wanted: Callable[[str], bool]) -> list[tuple[int, str]]:
    """Give marked processes ``LEAK_GRACE`` to exit; SIGKILL and return the ones that don't."""
    leaked = _marked_processes(wanted)
    if leaked:
        _wait_for_exit([pid for pid, _ in leaked], LEAK_GRACE)
        leaked = _marked_processes(wanted)
    for pid, _ in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # so that one leak does not spill into other tests
    return leaked


def _describe(leaked: list[tuple[int, str]]) -> str:
    return "\n".join(f"  pid {pid}: {cmdline}" for pid, cmdline in leaked)


@pytest.fixture(autouse=True)
def _process_leak_guard(request: pytest.FixtureRequest) -> Iterator[str]:
    """Fail the test if a process it started (or a child of one) outlives it.

    Every fixture that starts processes depends on ``jobmagic_home``, which depends on
    this fixture, so their teardown (kernel shutdown, server stop) runs before this check.
    """
    mark = f"{SESSION_TAG}-{secrets.token_hex(4)}"
    # Not monkeypatch: its teardown order relative to this fixture is not ours to choose.
    previous = os.environ.get(MARK_VAR)
    os.environ[MARK_VAR] = mark
    try:
        yield mark
    finally:
        if previous is None:
            os.environ.pop(MARK_VAR, None)
        else:
            os.environ[MARK_VAR] = previous
    leaked = _reap_leaks(lambda m: m == mark)
    if leaked:
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} process(es) running "
            f"(killed now):\n{_describe(leaked)}",
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    """Mark processes started outside any test (session and module fixtures) too."""
    os.environ[MARK_VAR] = f"{SESSION_TAG}-session"
    _CGROUPS_BEFORE.update(_job_cgroups())


#: The job cgroups that were there before this session (another run's are not ours).
_CGROUPS_BEFORE: set[str] = set()


def _job_cgroups() -> set[str]:
    """Every job cgroup (``jobmagic-*``) under this process's own cgroups."""
    from jobmagic.backends.local.cgroup_layout import detect

    found: set[str] = set()
    for mode in ("v1", "v2"):
        layout, _ = detect(mode)
        for base in layout.hierarchies if layout is not None else ():
            with contextlib.suppress(OSError):
                found.update(
                    entry.path for entry in os.scandir(base) if entry.name.startswith("jobmagic-")
                )
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process started by this session (tests or fixtures) is still alive.

    Runs after every fixture, session-scoped ones included, has been torn down.
    """
    leaked = _reap_leaks(lambda m: m.startswith(f"{SESSION_TAG}-"))
    if leaked:
        sys.stderr.write(
            f"\njobmagic tests left {len(leaked)} process(es) running "
            f"at the end of the session (killed now):\n{_describe(leaked)}\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # Not removed here: a pytest session running beside this one (a developer's) may
    # have just made one for a job that is about to join it.
    cgroups = sorted(_job_cgroups() - _CGROUPS_BEFORE)
    if cgroups:
        sys.stderr.write(
            f"\njobmagic tests left {len(cgroups)} job cgroup(s) under /sys/fs/cgroup:\n"
            + "\n".join(cgroups)
            + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- job home


@pytest.fixture(autouse=True)
def jobmagic_home(
    _process_leak_guard: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private, empty job home for this test, set as ``$JOBMAGIC_HOME``.

    Afterwards the kernel-wide service (if the test created one) is shut down and
    forgotten, so the next test starts from a fresh ``get_service()``.
    """
    home = tmp_path / "jobmagic-home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("JOBMAGIC_HOME", str(home))
    yield home
    # Only when the test imported it: a test that never touched the engine has no service.
    service_module = sys.modules.get("jobmagic.engine.default")
    reset = getattr(service_module, "_reset_service_for_tests", None)
    if reset is not None:
        reset()


@pytest.fixture
def service(jobmagic_home: Path) -> Iterator[WorkerService]:
    """A WorkerService of this test process on the test's job home: the home a lab or
    notebook server of the test serves. (Modules that need another kind override it.)"""
    from jobmagic.engine.service import WorkerService

    svc = WorkerService(home=jobmagic_home)
    try:
        yield svc
    finally:
        svc.shutdown()


@pytest.fixture(scope="session")
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per-session IPython / Jupyter directories so tests never read the user's own."""
    base = tmp_path_factory.mktemp("jupyter-dirs")
    dirs = {name: base / name for name in ("ipython", "config", "runtime", "kernels")}
    for path in dirs.values():
        path.mkdir()
    # The kernel always runs this interpreter, whatever kernelspecs the machine has.
    spec_dir = dirs["kernels"] / "python3"
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (jobmagic tests)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return dirs


# --------------------------------------------------------------------------- IPython


@pytest.fixture(scope="session")
def _interactive_shell(_private_dirs: dict[str, Path]) -> InteractiveShell:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    # The singleton, because IPython's get_ipython() (which magics may use) returns it.
    return InteractiveShell.instance(config=config, ipython_dir=str(_private_dirs["ipython"]))


@pytest.fixture
def ipython_shell(
    _interactive_shell: InteractiveShell, jobmagic_home: Path
) -> Iterator[InteractiveShell]:
    """IPython's real ``InteractiveShell`` with ``%load_ext jobmagic`` done."""
    shell = _interactive_shell
    # The extension manager raises on import errors, where %load_ext would only print.
    result = shell.extension_manager.load_extension("jobmagic")
    assert result is None, f"%load_ext jobmagic: {result}"
    try:
        yield shell
    finally:
        shell.extension_manager.unload_extension("jobmagic")
        shell.reset(new_session=False)


# --------------------------------------------------------------------------- kernel


@dataclass
class KernelHandle:
    """A running kernel: ``km`` and ``kc`` from jupyter_client, and ``execute``."""

    km: KernelManager
    kc: BlockingKernelClient

    def execute(
        self, code: str, timeout: float = 30.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run ``code``; return the execute_reply's content and the iopub messages it caused.

        Collects iopub messages whose parent is this execution until the kernel reports
        idle for it. Messages caused by earlier executions (background output) are skipped.
        Raises ``TimeoutError`` when the execution does not finish within ``timeout`` s.
        """
        msg_id = self.kc.execute(code, allow_stdin=False)
        deadline = time.monotonic() + timeout
        messages = []
        while True:
            msg = self._next(self.kc.get_iopub_msg, deadline, code)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            messages.append(msg)
        while True:
            reply = self._next(self.kc.get_shell_msg, deadline, code)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], messages

    @staticmethod
    def _next(get: Callable[..., dict[str, Any]], deadline: float, code: str) -> dict[str, Any]:
        try:
            return get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            msg = f"kernel did not finish executing {code!r} in time"
            raise TimeoutError(msg) from None


@pytest.fixture
def kernel(
    jobmagic_home: Path, _private_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[KernelHandle]:
    """A real IPython kernel (this interpreter) with ``%load_ext jobmagic`` done.

    Its environment is this test's: ``JOBMAGIC_HOME`` and the leak-guard mark included.
    """
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager(kernel_dirs=[str(_private_dirs["kernels"])])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    env = {**os.environ, "IPYTHONDIR": str(_private_dirs["ipython"])}
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        handle = KernelHandle(km=km, kc=kc)
        reply, messages = handle.execute("%load_ext jobmagic", timeout=60)
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert reply["status"] == "ok", f"%load_ext jobmagic failed: {reply}"
        assert not errors, f"%load_ext jobmagic failed: {errors}"
        yield handle
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


# --------------------------------------------------------------------------- JupyterLab


@dataclass
class LabServer:
    """A running ``jupyter lab``: ``url`` ends with ``/``, requests need ``token``."""

    url: str
    token: str
    root_dir: Path
    base_url: str
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    def api_url(self, path: str) -> str:
        """``url`` + ``path`` with the token as a query parameter."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path.lstrip('/')}{sep}token={self.token}"


def _drain(stream: Any, lines: list[str], running: threading.Event, done: threading.Event) -> None:
    """Keep reading the server's output (a full pipe would block it); flag readiness."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if "is running at" in line:
            running.set()
            done.set()
    done.set()  # end of output: the server exited before it was ready


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (False while the server is not listening yet)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except ConnectionRefusedError:
        return False
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            return False
        raise


@contextlib.contextmanager
def _jupyter_server(
    app: str, options: list[str], tmp_path: Path, private_dirs: dict[str, Path]
) -> Iterator[LabServer]:
    """Run ``jupyter <app>`` on a free 127.0.0.1 port, serving an empty temporary dir.

    ``options`` are the app's own (its workspaces and settings dirs under ``<tmp>/lab-state``
    are the caller's to pass, since each app names them on its own config class).
    """
    root_dir = tmp_path / "lab-root"
    root_dir.mkdir()
    token = secrets.token_hex(16)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        *options,
    ]
    if IS_ROOT:
        cmd.append("--allow-root")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(private_dirs["config"]),
        "JUPYTER_RUNTIME_DIR": str(private_dirs["runtime"]),
        "IPYTHONDIR": str(private_dirs["ipython"]),
    }
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    assert process.stdout is not None
    output: list[str] = []
    running, done = threading.Event(), threading.Event()
    drainer = threading.Thread(
        target=_drain,
        args=(process.stdout, output, running, done),
        name=f"{app}-output",
        daemon=True,
    )
    drainer.start()
    server = LabServer(
        url=f"http://127.0.0.1:{port}/",
        token=token,
        root_dir=root_dir,
        base_url="/",
        process=process,
        output=output,
    )
    try:
        done.wait(120)
        assert running.is_set(), f"jupyter {app} did not start:\n" + "\n".join(output[-60:])
        # The log line comes just before the server binds its port (a callback on its
        # event loop), so the status request is retried until then, within a deadline.
        wait_until(
            lambda: _answers(server.api_url("api/status")) or process.poll() is not None,
            timeout=30,
        )
        assert process.poll() is None, f"jupyter {app} exited:\n" + "\n".join(output[-60:])
        yield server
    finally:
        stop_server(process, drainer)


@pytest.fixture
def lab_server(
    jobmagic_home: Path, _private_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[LabServer]:
    """A real ``jupyter lab`` on a free 127.0.0.1 port, serving an empty temporary dir."""
    lab_dirs = tmp_path / "lab-state"
    options = [
        # Makes window.jupyterapp available, so tests can ask which plugins are active.
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.workspaces_dir={lab_dirs / 'workspaces'}",
        f"--LabApp.user_settings_dir={lab_dirs / 'settings'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with _jupyter_server("lab", options, tmp_path, _private_dirs) as server:
        yield server


@pytest.fixture
def notebook_server(
    jobmagic_home: Path, _private_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[LabServer]:
    """A real Jupyter Notebook 7 (``jupyter notebook``), set up as ``lab_server`` is.

    Its pages are ``tree``, ``notebooks/<path>`` and so on, where JupyterLab has ``lab``.
    """
    lab_dirs = tmp_path / "lab-state"
    # Notebook 7's options live on JupyterNotebookApp (NotebookApp is the shim for the
    # classic server's options).
    options = [
        "--JupyterNotebookApp.expose_app_in_browser=True",
        f"--JupyterNotebookApp.workspaces_dir={lab_dirs / 'workspaces'}",
        f"--JupyterNotebookApp.user_settings_dir={lab_dirs / 'settings'}",
    ]
    with _jupyter_server("notebook", options, tmp_path, _private_dirs) as server:
        yield server


# --------------------------------------------------------------------------- browser


@pytest.fixture
def browser_page(jobmagic_home: Path) -> Iterator[Page]:
    """A Playwright page in headless Debian Chromium (Playwright downloads no browser)."""
    if not CHROMIUM.exists():
        if not IS_ROOT:
            pytest.skip(
                f"browser tests need {CHROMIUM} (Debian: apt-get install chromium); "
                "`make test` installs it when run as root"
            )
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context()
            yield context.new_page()
            context.close()
        finally:
            browser.close()


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The Jobs API address of a real local Ray head, started once for the session.

    Only sessions with a test that asks for it start one (about 12 s and 1.75 GB).
    """
    from ray_head import ray_head

    with ray_head() as address:
        yield address
