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
        An empty command or backend name, a timeout that is not a number >= 0, a NUL
        byte in any string, an empty ``env`` key or one with ``=`` in it, or a name that
        reads as a job id ("7", "#7": ids and names share one lookup).
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
        _no_nul("the command", self.command)
        if self.name is not None:
            _check_name(self.name)
        env = dict(self.env or {})
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str):  # type: ignore[redundant-expr]
                raise TypeError(f"environment variable {key!r} must map a str to a str")
            if not key or "=" in key:
                raise ValueError(
                    f"environment variable name {key!r} is not valid: it must be non-empty "
                    "and have no '='"
                )
            _no_nul(f"environment variable {key!r}", key + value)
        if self.cwd is not None:
            _no_nul("the working directory", os.fspath(self.cwd))
        if not isinstance(self.shell, str) or not self.shell:  # type: ignore[redundant-expr]
            raise ValueError(f"a shell is a path such as '/bin/sh', not {self.shell!r}")
        _no_nul("the shell", self.shell)
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


def _no_nul(what: str, text: str) -> None:
    if "\0" in text:
        raise ValueError(f"{what} contains a NUL byte, which no program can be given")


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a job name is a str, not {name!r}")
    _no_nul("the job name", name)
    if not name.strip():
        raise ValueError("a job name cannot be empty; leave it out for no name")
    if looks_like_id(name):
        raise ValueError(
            f"a job name cannot read as a job id ({name!r}); ids and names are looked up "
            "alike: use a name with a letter in it"
        )


def looks_like_id(text: str) -> bool:
    """True for text that a lookup takes as a job id: "7", " #7 "."""
    digits = text.strip().lstrip("#")
    return digits.isascii() and digits.isdigit()


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
