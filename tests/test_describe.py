"""How jobs read to people: the one formatter, and the cases it shares with the browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobmagic.core.state import JobState
from jobmagic.text.describe import (
    error_text,
    exit_column,
    exit_text,
    format_runtime,
    job_label,
    outcome_text,
    state_text,
)

pytestmark = pytest.mark.timeout(10)

RUNTIME_CASES = json.loads(
    (Path(__file__).parent / "cases" / "runtime.json").read_text(encoding="utf-8")
)["cases"]


@pytest.mark.parametrize("case", RUNTIME_CASES, ids=[str(c["seconds"]) for c in RUNTIME_CASES])
def test_runtime_reads_as_the_browser_shows_it(case: dict[str, Any]) -> None:
    assert format_runtime(case["seconds"]) == case["shown"]


def test_an_unknown_runtime_is_a_dash() -> None:
    assert format_runtime(None) == "-"


class Job:
    """Anything with a job's attributes describes (a Worker, a JobRecord)."""

    def __init__(self, **fields: Any) -> None:
        self.id = 3
        self.name: str | None = None
        self.command = "python train.py"
        self.state = JobState.RUNNING
        self.exit_code: int | None = None
        self.error: str | None = None
        self.orphaned = False
        self.detail: str | None = None
        vars(self).update(fields)


def test_labels_states_and_outcomes() -> None:
    assert job_label(Job()) == "job 3"
    assert job_label(Job(name="train")) == 'job 3 "train"'
    assert state_text(Job(orphaned=True)) == "running (orphaned)"
    waiting = "waiting for the Ray cluster"
    assert state_text(Job(detail=waiting)) == "running (waiting for the Ray cluster)"
    assert state_text(Job(detail=waiting, state=JobState.STOPPED)) == "stopped"
    failed = Job(state=JobState.FAILED, exit_code=127, error="command not found: pyhton")
    assert outcome_text(failed) == "failed (exit code 127): command not found: pyhton"
    plain = Job(state=JobState.FAILED, exit_code=1, error="exit code 1")
    assert error_text(plain) is None, "an error that only repeats the exit code is not shown"
    assert outcome_text(plain) == "failed (exit code 1)"


@pytest.mark.parametrize(
    ("code", "text", "column"),
    [
        (0, "exit code 0", "0"),
        (-15, "killed by SIGTERM", "SIGTERM"),
        (-99, "killed by signal 99", "-99"),
        (None, None, "-"),
    ],
)
def test_exit_codes(code: int | None, text: str | None, column: str) -> None:
    assert exit_text(code) == text
    assert exit_column(code) == column


def test_the_exit_field_of_details_says_the_code_or_the_signal() -> None:
    from jobmagic.text.describe import exit_field

    assert [exit_field(c) for c in (None, 0, 127, -9)] == ["-", "0", "127", "killed by SIGKILL"]
