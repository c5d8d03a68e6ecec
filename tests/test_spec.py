"""``JobSpec``: what to run, checked once, and the options every layer takes from it."""

from __future__ import annotations

import dataclasses

import pytest

from jobmagic.core.spec import JobOptions, JobSpec

pytestmark = pytest.mark.timeout(10)


def test_the_options_are_the_specs_fields_after_the_command() -> None:
    fields = [f.name for f in dataclasses.fields(JobSpec)]
    assert fields[0] == "command"
    assert list(JobOptions.__annotations__) == fields[1:]
    spec = JobSpec("make", name="build", env={"A": "1"}, timeout=3, detach=True)
    assert JobSpec.from_options(spec.command, spec.options()) == spec


def test_a_spec_is_checked_and_frozen() -> None:
    env = {"A": "1"}
    spec = JobSpec("echo $A", env=env, timeout=2)
    env["A"] = "changed"
    assert spec.env == {"A": "1"}, "the spec keeps its own copy"
    with pytest.raises(TypeError):
        spec.env["B"] = "2"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.command = "other"  # type: ignore[misc]
    assert spec.timeout == 2.0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timeout": -1}, ValueError, "timeout must be a number of seconds >= 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be"),
        ({"timeout": True}, ValueError, "timeout must be"),
        ({"timeout": "5"}, ValueError, "timeout must be"),
        ({"env": {"A": 1}}, TypeError, "'A' must map a str to a str"),
        ({"name": 3}, TypeError, "a job name is a str"),
        ({"backend": ""}, ValueError, "a backend is named by a str"),
        ({"nmae": "x"}, TypeError, "unknown job option"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        JobSpec.from_options("true", options)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["", "   ", None])
def test_an_empty_command_is_refused(command: object) -> None:
    with pytest.raises(ValueError, match="empty command"):
        JobSpec(command)  # type: ignore[arg-type]
