"""``JobSpec``: what a job runs and how, checked once when it is made."""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .limits import Limits

#: The group a job waits in unless it names one.
DEFAULT_GROUP = "default"
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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
    group: str
    priority: int
    after: tuple[int, ...] | list[int] | None
    gpus: int
    resources: Mapping[str, int] | None
    memory: int | str | None
    cpus: float | None
    pids: int | None
    best_effort: bool
    address: str | None
    ship_cwd: bool


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
        What runs it: ``"local"`` (a process group on this machine) or ``"ray"`` (a job
        on a Ray cluster, with ``jobmagic[ray]``). On Ray, ``gpus``, ``cpus`` and
        ``memory`` are requests Ray reserves, not limits, and ``env`` is all the job
        gets of this kernel's environment.
    group:
        The queue group it waits in (``"default"``): a group may limit how many of its
        jobs run at once (``WorkerService.set_group``). Letters, digits, ``_.-``.
    priority:
        Within its group, higher starts first (then submission order); default 0.
    after:
        Ids of jobs that must all have SUCCEEDED before this one starts; if one fails
        or is stopped, this one ends FAILED without running.
    gpus:
        Devices it takes from the GPU pool while it runs; it finds them in
        ``CUDA_VISIBLE_DEVICES`` (and ``JOBMAGIC_GPUS``).
    resources:
        Units it takes from named pools while it runs (``{"license": 1}``).
    memory:
        Memory its processes may use together: bytes, or text such as ``"512M"``,
        ``"4G"`` (powers of 1024). Over it, the job is killed and ends FAILED "out of
        memory". None: no limit. (See :class:`~jobmagic.core.limits.Limits`.)
    cpus:
        CPUs' worth of time it may use (``1.5``); None: no limit.
    pids:
        Processes (and threads) it may have at once; None: no limit.
    best_effort:
        Where the machine cannot enforce a limit, run the job with the limits that can
        be had, and say which were dropped, instead of refusing to start it.
    address:
        The cluster a remote backend submits to (Ray: its dashboard's
        ``http://HOST:8265``); None: the backend's default (``RAY_ADDRESS``, else
        ``http://127.0.0.1:8265``), made explicit when the job is recorded.
    ship_cwd:
        Ray: upload the working directory with the job (Ray's ``working_dir``) instead
        of running it in the same directory path on a shared filesystem.

    Raises
    ------
    ValueError
        An empty command or backend name, a timeout that is not a number >= 0, a NUL
        byte in any string, an empty ``env`` key or one with ``=`` in it, or a name that
        reads as a job id ("7", "#7": ids and names share one lookup), or a limit
        that is not one (see :class:`~jobmagic.core.limits.Limits`).
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
    group: str = DEFAULT_GROUP
    priority: int = 0
    after: tuple[int, ...] = ()
    gpus: int = 0
    resources: Mapping[str, int] = dataclasses.field(default_factory=dict)
    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None
    best_effort: bool = False
    address: str | None = None
    ship_cwd: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip():  # type: ignore[redundant-expr]
            raise ValueError("empty command")
        _no_nul("the command", self.command)
        if self.name is not None:
            _check_name(self.name)
        env = _checked_env(self.env)
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
        check_group_name(self.group)
        if not _is_int(self.priority):
            raise ValueError(f"priority must be an integer, not {self.priority!r}")
        # Frozen: the checked values are set once, here.
        object.__setattr__(self, "env", types.MappingProxyType(env))
        object.__setattr__(self, "after", _checked_after(self.after))
        if not _is_int(self.gpus) or self.gpus < 0:
            raise ValueError(f"gpus must be a whole number >= 0, not {self.gpus!r}")
        object.__setattr__(
            self, "resources", types.MappingProxyType(_checked_resources(self.resources))
        )
        if self.cwd is not None:
            object.__setattr__(self, "cwd", os.fspath(self.cwd))
        if timeout is not None:
            object.__setattr__(self, "timeout", float(timeout))
        limits = Limits(self.memory, self.cpus, self.pids)
        object.__setattr__(self, "memory", limits.memory)
        object.__setattr__(self, "cpus", limits.cpus)
        object.__setattr__(self, "best_effort", bool(self.best_effort))
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():  # type: ignore[redundant-expr]
                raise ValueError(
                    f"an address is a str such as 'http://HOST:8265', not {self.address!r}"
                )
            _no_nul("the address", self.address)
        object.__setattr__(self, "ship_cwd", bool(self.ship_cwd))

    @property
    def limits(self) -> Limits:
        """The resource limits it runs under (empty: none)."""
        return Limits(self.memory, self.cpus, self.pids)

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
            "group": self.group,
            "priority": self.priority,
            "after": self.after,
            "gpus": self.gpus,
            "resources": dict(self.resources),
            "memory": self.memory,
            "cpus": self.cpus,
            "pids": self.pids,
            "best_effort": self.best_effort,
            "address": self.address,
            "ship_cwd": self.ship_cwd,
        }


def _checked_env(env: Mapping[str, str] | None) -> dict[str, str]:
    checked = dict(env or {})
    for key, value in checked.items():
        if not isinstance(key, str) or not isinstance(value, str):  # type: ignore[redundant-expr]
            raise TypeError(f"environment variable {key!r} must map a str to a str")
        if not key or "=" in key:
            raise ValueError(
                f"environment variable name {key!r} is not valid: it must be non-empty "
                "and have no '='"
            )
        _no_nul(f"environment variable {key!r}", key + value)
    return checked


def _checked_after(after: Iterable[int] | None) -> tuple[int, ...]:
    ids = tuple(after or ())
    for job_id in ids:
        if not _is_int(job_id) or job_id <= 0:
            raise ValueError(f"after takes job ids (integers > 0), not {job_id!r}")
    return tuple(dict.fromkeys(ids))


def _checked_resources(resources: Mapping[str, int] | None) -> dict[str, int]:
    checked = dict(resources or {})
    for name, count in checked.items():
        check_group_name(name)  # pool names follow the same rule as group names
        if not _is_int(count) or count < 1:
            raise ValueError(f"resource {name} needs a whole number >= 1, not {count!r}")
    return checked


def check_group_name(name: object) -> str:
    """``name`` if it can name a group (letters, digits, ``_.-``; at most 64), else ValueError."""
    if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
        raise ValueError(f"a group name is 1-64 letters, digits, '_', '.' or '-', not {name!r}")
    return name


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
