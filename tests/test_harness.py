"""The test harness itself: the process-leak guard catches what tests leave behind."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import python_cmd, wait_until

HERE = Path(__file__).resolve().parent
SLEEPER = "import time; time.sleep(300)"


@pytest.fixture
def harness(pytester: pytest.Pytester) -> pytest.Pytester:
    """A scratch test directory with this suite's conftest.py and helpers.py."""
    pytester.makeconftest((HERE / "conftest.py").read_text())
    pytester.makepyfile(helpers=(HERE / "helpers.py").read_text())
    return pytester


def leaked_pids(output: str) -> list[int]:
    """The pids the guard reported (each is listed twice: in the error and the summary)."""
    return sorted({int(pid) for pid in re.findall(r"^\s*pid (\d+): ", output, re.MULTILINE)})


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.timeout(120)
def test_a_process_left_by_a_test_fails_that_test_and_is_killed(harness: pytest.Pytester) -> None:
    harness.makepyfile(
        test_leaky=f"""
        import subprocess
        import sys

        def test_leaks():
            # Its own session: a process-group kill would not reach it, the guard must.
            subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], start_new_session=True)

        def test_clean():
            subprocess.run({python_cmd("print('ok')")!r}, shell=True, check=True)
        """
    )
    result = harness.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    output = result.stdout.str()
    assert "test_leaky.py::test_leaks left 1 process(es) running" in output
    [pid] = leaked_pids(output)
    wait_until(lambda: gone(pid), timeout=10, message=f"leaked pid {pid} killed")


@pytest.mark.timeout(120)
def test_a_process_left_by_a_session_fixture_fails_the_run(harness: pytest.Pytester) -> None:
    harness.makepyfile(
        test_session_leak=f"""
        import subprocess
        import sys

        import pytest

        @pytest.fixture(scope="session")
        def server():
            yield subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], start_new_session=True)

        def test_uses_server(server):
            assert server.poll() is None
        """
    )
    result = harness.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str() + result.stderr.str()
    assert "left 1 process(es) running at the end of the session" in output
    [pid] = leaked_pids(output)
    wait_until(lambda: gone(pid), timeout=10, message=f"leaked pid {pid} killed")


def test_the_mark_reaches_child_processes(jobmagic_home: Path) -> None:
    child_env = subprocess.run(
        python_cmd(
            "import os; print(os.environ['JOBMAGIC_TEST_MARK'], os.environ['JOBMAGIC_HOME'])"
        ),
        shell=True,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert child_env == [os.environ["JOBMAGIC_TEST_MARK"], str(jobmagic_home)]
    assert not child_env[0].endswith("-session")
