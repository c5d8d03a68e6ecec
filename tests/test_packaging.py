"""The package installs as one piece: Python code, prebuilt JupyterLab extension and the
server extension's enabling config, with one version everywhere."""

from __future__ import annotations

import importlib.metadata
import json
import re
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from helpers import strip_ansi

REPO = Path(__file__).resolve().parent.parent
VERSION = runpy.run_path(str(REPO / "jobmagic" / "_version.py"))["__version__"]
SERVER_CONFIG = Path("etc/jupyter/jupyter_server_config.d/jobmagic.json")


def jupyter(*args: str) -> str:
    """Run ``python -m jupyter ARGS`` with this interpreter; its output without colors."""
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return strip_ansi(result.stdout + result.stderr)


def test_python_and_npm_versions_match() -> None:
    package_json = json.loads((REPO / "labextension" / "package.json").read_text())
    assert package_json["version"] == VERSION
    assert importlib.metadata.version("jobmagic") == VERSION


def test_built_labextension_has_the_same_version() -> None:
    built = json.loads((REPO / "jobmagic" / "labextension" / "package.json").read_text())
    assert built["name"] == "jobmagic"
    assert built["version"] == VERSION
    assert built["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")


def test_npm_lock_file_resolves_from_the_registry_only() -> None:
    lock = json.loads((REPO / "labextension" / "package-lock.json").read_text())
    assert lock["packages"][""]["version"] == VERSION
    foreign = {
        path: entry.get("resolved") or entry.get("version")
        for path, entry in lock["packages"].items()
        if re.search(
            r"github|gitlab|^git[+:]|^file:|^https?:(?!//registry\.npmjs\.org/)",
            str(entry.get("resolved") or entry.get("version") or ""),
        )
    }
    assert foreign == {}


def test_jupyterlab_lists_the_prebuilt_extension_enabled_and_ok() -> None:
    output = jupyter("labextension", "list")
    assert re.search(rf"^\s*jobmagic v{re.escape(VERSION)} enabled OK", output, re.MULTILINE), (
        output
    )


def test_jupyter_server_lists_the_server_extension_enabled_and_ok() -> None:
    output = jupyter("server", "extension", "list")
    assert re.search(r"^\s*jobmagic enabled\s*$", output, re.MULTILINE), output
    assert re.search(rf"^\s*jobmagic {re.escape(VERSION)} OK\s*$", output, re.MULTILINE), output


def test_server_extension_config_is_installed() -> None:
    installed = Path(sys.prefix) / SERVER_CONFIG
    assert json.loads(installed.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"jobmagic": True}}
    }


def test_extension_hooks_point_at_the_shipped_pieces() -> None:
    import jobmagic

    [server] = jobmagic._jupyter_server_extension_points()
    assert server == {"module": "jobmagic.server"}
    assert callable(importlib.import_module(server["module"])._load_jupyter_server_extension)
    [lab] = jobmagic._jupyter_labextension_paths()
    assert lab == {"src": "labextension", "dest": "jobmagic"}
    assert (Path(jobmagic.__file__).parent / lab["src"] / "package.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_ships_typing_marker_labextension_and_config(tmp_path: Path) -> None:
    # A real `pip wheel .` (the built extension exists, so the npm build is skipped).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=540,
    )
    [wheel] = tmp_path.glob("jobmagic-*.whl")
    assert wheel.name.startswith(f"jobmagic-{VERSION}-py3-none-any")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"jobmagic-{VERSION}.data/data"
    expected = {
        "jobmagic/py.typed",
        "jobmagic/_version.py",
        "jobmagic/backends/local/pty_relay.py",  # run by path: must be a file in the wheel
        "jobmagic/labextension/package.json",
        "jobmagic/labextension/static/style.js",
        f"{data}/share/jupyter/labextensions/jobmagic/package.json",
        f"{data}/share/jupyter/labextensions/jobmagic/static/style.js",
        f"{data}/{SERVER_CONFIG}",
    }
    assert expected <= names, sorted(expected - names)
    # No node_modules directory and no tests. (A development build names its chunks after
    # the modules in them: "static/vendors-node_modules_xterm_...js" is a built file.)
    assert not [n for n in names if "node_modules" in PurePosixPath(n).parts]
    assert not [n for n in names if n.startswith("tests/")]


def test_importing_the_server_extension_does_not_load_the_kernel_engine() -> None:
    # The Jupyter server imports jobmagic.server: it must not start the engine, its
    # watcher thread or its exit hook, nor pull in IPython or ipywidgets.
    code = (
        "import atexit, sys, threading\n"
        "hooks = []\n"
        "register = atexit.register\n"
        "def spy(fn, *args, **kwargs):\n"
        "    hooks.append(getattr(fn, '__module__', '?'))\n"
        "    return register(fn, *args, **kwargs)\n"
        "atexit.register = spy\n"
        "import jobmagic.server\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('jobmagic.engine', "
        "'jobmagic.notebook', 'IPython', 'ipywidgets', 'ipykernel')))\n"
        "assert not loaded, loaded\n"
        "ours = [m for m in hooks if m.startswith('jobmagic')]\n"
        "assert not ours, f'exit hooks registered by {ours}'\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_public_names_load_lazily_and_the_engine_never_needs_ipython() -> None:
    code = (
        "import sys\n"
        "import jobmagic\n"
        "assert not [m for m in sys.modules if m.startswith('jobmagic.engine')]\n"
        "from jobmagic import JobState, Worker, WorkerService, get_service\n"
        "assert get_service().start('exit 3').wait(10) == 3\n"
        "heavy = [m for m in ('IPython', 'ipywidgets', 'jupyter_server') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from jobmagic import JobPanel, OutputWidgetHandler\n"
        "assert JobPanel.__module__ == 'jobmagic.notebook.panel'\n"
        "assert sorted(jobmagic.__all__) == "
        "['JobState', 'Worker', 'WorkerService', '__version__', 'get_service']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.timeout(240)
def test_make_lab_serves_copies_of_the_notebooks_and_prints_the_quickstarts_url(
    tmp_path: Path,
) -> None:
    import os
    import select
    import signal
    import urllib.request

    from helpers import free_port, wait_until

    port = free_port()
    lab_dir = tmp_path / "lab"
    env = {
        **os.environ,
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "BROWSER": "true",  # "opens when possible": here, a browser that does nothing
    }
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"PORT={port}", f"LAB_DIR={lab_dir}"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        deadline = 200.0
        while not url:
            ready, _, _ = select.select([process.stdout], [], [], deadline)
            assert ready, "make lab printed no URL"
            line = process.stdout.readline().decode(errors="replace")
            assert line, "make lab ended before printing its URL"
            if line.startswith("== jobmagic: open "):
                url = line.removeprefix("== jobmagic: open ").strip()
        assert url.startswith(f"http://127.0.0.1:{port}/lab/tree/quickstart.ipynb?token=")
        # The copies, not the shipped notebooks, are what the server serves.
        assert sorted(p.name for p in lab_dir.glob("*.ipynb")) == sorted(
            p.name for p in (REPO / "notebooks").glob("*.ipynb")
        )
        running = False
        seen: list[str] = []
        while not running:  # the server says when it listens
            ready, _, _ = select.select([process.stdout], [], [], deadline)
            assert ready, "the lab server did not start"
            line = process.stdout.readline().decode(errors="replace")
            assert line, "make lab ended before its server started"
            seen.append(line)
            running = "is running at" in line
        token = url.rpartition("token=")[2]
        contents = f"http://127.0.0.1:{port}/api/contents/quickstart.ipynb?token={token}"
        # It listens a moment after saying so (once its loop runs): nothing to wait on.
        reply = wait_until(lambda: _answer(contents), 60, message=f"the server: {''.join(seen)}")
        assert reply == 200
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            assert b"JupyterLab" in page.read()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def _answer(url: str) -> int | None:
    """The HTTP status of a GET of ``url``; None while nothing listens there."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status)
    except ConnectionRefusedError:
        return None
    except OSError as exc:
        if isinstance(getattr(exc, "reason", None), ConnectionRefusedError):
            return None
        raise
