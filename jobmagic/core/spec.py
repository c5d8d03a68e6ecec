"""``JobSpec``: what a job runs and how, checked once when it is made."""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from typing import Any, TypedDict


class JobOptions(TypedDict, total=False):
    """The keyword arguments of ``WorkerService.start`` and ``Worker``.

    They are a :class:`JobSpec`'s fields after ``command``; see it for what each means.
    """

    name: str | None
    cwd: str | os.PathLike[str] | None
    env: Mapping[str, str] | None
    timeout: float | None
    pty: bool
    detach: bool
    shell: str
    backend: str


@dataclasses.dataclass(frozen=True)
class JobSpec:
    r"""What to run: a shell command and the options it runs with.

    Every layer takes its parameters from here (the worker, the store's record, the
    backends); it is validated once, when made. Callers may be untyped notebook code, so
    the annotations are checked too.

    Parameters
    ----------
    command:
        A shell command line, run as ``shell -c command``.
    name:
        An alias for the job id; unique among queued and running jobs. ``None``: no alias.
    cwd:
        Working directory; ``None`` means the kernel's.
    env:
        Variables added to the kernel's environment (``PYTHONUNBUFFERED=1`` is set unless
        given). The store keeps only their names, never their values.
    timeout:
        Seconds after which the job is stopped and marked "timed out"; ``None``: no limit.
    pty:
        Run under a pseudo-terminal, for programs that only show progress bars or colours
        on a terminal (lines then end in ``\r\n``).
    detach:
        Keep the job running when its kernel shuts down or restarts.
    shell:
        The shell that runs ``command``.
    backend:
        What runs it: ``"local"`` (a process group on this machine).

    Raises
    ------
    ValueError
        An empty command or backend name, or a timeout that is not a number >= 0.
    TypeError
        An ``env`` key or value that is not a str, or a name that is not a str.
    """

    command: str
    name: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout: float | None = None
    pty: bool = False
    detach: bool = False
    shell: str = "/bin/sh"
    backend: str = "local"

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip():  # type: ignore[redundant-expr]
            raise ValueError("empty command")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"a job name is a str, not {self.name!r}")
        env = dict(self.env or {})
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str):  # type: ignore[redundant-expr]
                raise TypeError(f"environment variable {key!r} must map a str to a str")
        timeout = self.timeout
        if timeout is not None and not _is_seconds(timeout):
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        if not isinstance(self.backend, str) or not self.backend:  # type: ignore[redundant-expr]
            raise ValueError(f"a backend is named by a str such as 'local', not {self.backend!r}")
        # Frozen: the checked values are set once, here.
        object.__setattr__(self, "env", types.MappingProxyType(env))
        if self.cwd is not None:
            object.__setattr__(self, "cwd", os.fspath(self.cwd))
        if timeout is not None:
            object.__setattr__(self, "timeout", float(timeout))

    @classmethod
    def from_options(cls, command: str, options: JobOptions) -> JobSpec:
        """Make a spec from ``command`` and the keyword arguments of ``start``."""
        return cls(command, **_checked(options))

    def options(self) -> JobOptions:
        """The fields after ``command``, as keyword arguments (``from_options`` undone)."""
        return {
            "name": self.name,
            "cwd": self.cwd,
            "env": dict(self.env),
            "timeout": self.timeout,
            "pty": self.pty,
            "detach": self.detach,
            "shell": self.shell,
            "backend": self.backend,
        }


def _is_seconds(value: Any) -> bool:
    """A number of seconds >= 0 (``inf`` included; NaN, bools and strings are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _checked(options: JobOptions) -> dict[str, Any]:
    unknown = set(options) - set(JobOptions.__annotations__)
    if unknown:
        known = ", ".join(JobOptions.__annotations__)
        raise TypeError(f"unknown job option(s) {', '.join(sorted(unknown))}; known: {known}")
    values: dict[str, Any] = dict(options)
    if values.get("env") is None:
        values.pop("env", None)
    return values
