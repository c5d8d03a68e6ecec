"""Where this machine lets jobmagic put each job in a cgroup of its own, if anywhere.

A job's cgroup is made inside the cgroup of the process that starts it (the kernel, the
server, the command line), never beside it at a hierarchy's root, so the limits the
machine puts on that process (a container, a JupyterHub spawner, a systemd slice) keep
applying to its jobs. In the order tried:

1. cgroup v2 with the ``memory``, ``cpu`` and ``pids`` controllers delegated to our own
   cgroup (``systemd-run --user --scope -p Delegate=yes``, or a container's own tree);
2. cgroup v1, writable (as root): one directory per hierarchy (memory, cpu, cpuacct,
   pids, co-mounted or not; a job joins those it needs);
3. cgroup v2 without controllers: the job is still contained (stop kills all of it) and
   its CPU time is known, but no limit can be enforced;
4. none.

``JOBMAGIC_CGROUPS`` (``auto``, ``v2``, ``v1``, ``off``) picks one instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections.abc import Iterable, Mapping

from jobmagic.core.limits import Limits

from .cgroups import V1, V2, JobCgroup

#: Which controller enforces each limit.
LIMIT_CONTROLLERS = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
#: The v1 controllers whose hierarchies a job may join (pause uses signals, not the
#: freezer). A job joins memory and cpuacct (what it uses), cpu and pids only for a limit.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
#: What every job's cgroup reads: memory (now, peak, OOM kills) and CPU time.
_ALWAYS = frozenset({"memory", "cpuacct"})
#: What the mode setting may say.
MODES = ("auto", "v2", "v1", "off")
_MODE_VARIABLE = "JOBMAGIC_CGROUPS"

#: How to get cgroups where the machine gives none, for the one-line refusal.
HOW_TO_ENABLE = (
    "run JupyterLab under `systemd-run --user --scope -p Delegate=yes jupyter lab` "
    "(cgroup v2), or as root on cgroup v1"
)


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """Where job cgroups go: ``bases`` maps each controller to our own cgroup's directory.

    On v2 every controller maps to the same directory; ``"procs"`` names the directory
    (or directories, on v1) a job's process joins.
    """

    version: int
    bases: Mapping[str, str]
    hierarchies: tuple[str, ...]

    @property
    def name(self) -> str:
        """``cgroup v1`` or ``cgroup v2``: what a job's record says it got."""
        return f"cgroup v{self.version}"

    def can_enforce(self, limit: str) -> bool:
        """True when this layout has the controller that enforces ``limit`` ("memory")."""
        return LIMIT_CONTROLLERS[limit] in self.bases

    def missing(self, limits: Limits) -> list[str]:
        """The limits of ``limits`` (by name) this layout cannot enforce."""
        return [name for name in _asked(limits) if not self.can_enforce(name)]

    def create(self, name: str, limits: Limits) -> JobCgroup:
        """Make the cgroup ``name`` and set ``limits`` (those it can enforce).

        On v1 only in the hierarchies the job needs: memory and cpuacct (what it uses),
        cpu and pids when it has such a limit; each one is a mkdir at the start and an
        rmdir at the end of every job.

        Raises
        ------
        OSError
            When a directory cannot be made or a limit not written; whatever was made is
            removed again first.
        """
        wanted = set(_ALWAYS)
        if limits.cpus is not None:
            wanted.add("cpu")
        if limits.pids is not None:
            wanted.add("pids")
        needed = {self.bases[controller] for controller in wanted if controller in self.bases}
        hierarchies = [base for base in self.hierarchies if base in needed]
        hierarchies = hierarchies or list(self.hierarchies[:1])  # membership needs one
        dirs = []
        try:
            for base in hierarchies:
                path = os.path.join(base, name)
                with contextlib.suppress(FileExistsError):  # a launch that failed before
                    os.mkdir(path)
                dirs.append(path)
            roles = {
                controller: os.path.join(base, name)
                for controller, base in self.bases.items()
                if base in hierarchies
            }
            cgroup = JobCgroup(self.version, tuple(dirs), roles)
            cgroup.apply(limits)
        except OSError:
            for path in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            raise
        return cgroup


def _asked(limits: Limits) -> list[str]:
    return [name for name in LIMIT_CONTROLLERS if getattr(limits, name) is not None]


def refusal(limits: Limits, layout: CgroupLayout | None, why_none: str) -> str | None:
    """The one-line reason ``limits`` cannot be enforced here, or None when they can."""
    asked = _asked(limits)
    if not asked:
        return None
    if layout is None:
        return (
            f"{' and '.join(asked)} limits need a cgroup, and {why_none}: {HOW_TO_ENABLE}; "
            "or pass --best-effort (best_effort=True) to run without them"
        )
    missing = layout.missing(limits)
    if not missing:
        return None
    controllers = ", ".join(LIMIT_CONTROLLERS[name] for name in missing)
    return (
        f"{' and '.join(missing)} limits need the {controllers} controller, which "
        f"{layout.name} does not give jobmagic here: {HOW_TO_ENABLE}; or pass "
        "--best-effort (best_effort=True) to run without them"
    )


def detect(mode: str | None = None) -> tuple[CgroupLayout | None, str]:  # noqa: PLR0911 - one answer per case
    """The layout job cgroups get on this machine, or None and why there is none.

    ``mode``: one of ``MODES``; None reads ``JOBMAGIC_CGROUPS`` (default ``auto``).

    Raises
    ------
    ValueError
        For a mode that is not one of ``MODES``.
    """
    if mode is None:
        mode = os.environ.get(_MODE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{_MODE_VARIABLE} is one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return None, f"cgroups are turned off ({_MODE_VARIABLE}=off)"
    try:
        own = _own_cgroups()
        mounts = _mounts()
    except OSError as exc:
        return None, f"this machine's cgroups cannot be read ({exc.strerror or exc})"
    v2 = _v2_layout(own, mounts) if mode in ("auto", "v2") else None
    if v2 is not None and (mode == "v2" or _has_all_limits(v2)):
        return v2, ""
    v1 = _v1_layout(own, mounts) if mode in ("auto", "v1") else None
    if v1 is not None:
        return v1, ""
    if v2 is not None:
        return v2, ""
    if mode == "v1":
        return None, "cgroup v1 is not mounted writable here"
    if mode == "v2":
        return None, "this process's cgroup v2 directory is not writable"
    if os.geteuid() != 0 and not _cgroup2_mounted(mounts):
        return None, "this machine has no cgroup v2 and cgroup v1 needs root"
    return None, "this process's cgroup is not delegated to it (not writable)"


def _has_all_limits(layout: CgroupLayout) -> bool:
    return all(layout.can_enforce(name) for name in LIMIT_CONTROLLERS)


@dataclasses.dataclass(frozen=True)
class _Mount:
    point: str
    root: str
    version: int
    controllers: frozenset[str]


def _own_cgroups() -> dict[str, str]:
    """Our cgroup path per v1 controller, and under ``""`` on v2 (``/proc/self/cgroup``)."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _mounts() -> list[_Mount]:
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            fstype = fields[separator + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            options = set(fields[separator + 3].split(","))
            point = _unescape(fields[4])
            root = _unescape(fields[3])
            controllers = frozenset(options & set(V1_CONTROLLERS))
            mounts.append(_Mount(point, root, V2 if fstype == "cgroup2" else V1, controllers))
    return mounts


def _unescape(field: str) -> str:
    # mountinfo writes spaces, tabs, newlines and backslashes as octal escapes.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _cgroup2_mounted(mounts: Iterable[_Mount]) -> bool:
    return any(mount.version == V2 for mount in mounts)


def _directory(mount: _Mount, path: str) -> str | None:
    """Our cgroup's directory in ``mount``, if it is visible there."""
    relative = os.path.relpath(path, mount.root) if mount.root != "/" else path.lstrip("/")
    if relative.startswith(".."):
        return None  # our cgroup is outside what this mount shows
    return os.path.normpath(os.path.join(mount.point, relative))


def _writable(directory: str) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(
        os.path.join(directory, "cgroup.procs"), os.W_OK
    )


def _v2_layout(own: Mapping[str, str], mounts: Iterable[_Mount]) -> CgroupLayout | None:
    if "" not in own:
        return None
    for mount in mounts:
        if mount.version != V2:
            continue
        directory = _directory(mount, own[""])
        if directory is None or not _writable(directory):
            continue
        delegated = _delegate(directory)
        bases = dict.fromkeys(delegated, directory)
        return CgroupLayout(V2, bases, (directory,))
    return None


def _delegate(directory: str) -> set[str]:
    """The controllers our v2 cgroup gives its children, turning on those it can."""
    try:
        with open(os.path.join(directory, "cgroup.controllers"), encoding="ascii") as f:
            available = set(f.read().split())
        with open(os.path.join(directory, "cgroup.subtree_control"), encoding="ascii") as f:
            enabled = set(f.read().split())
    except OSError:
        return set()
    wanted = {"memory", "cpu", "pids"} & available - enabled
    for controller in sorted(wanted):
        try:
            with open(
                os.path.join(directory, "cgroup.subtree_control"), "w", encoding="ascii"
            ) as f:
                f.write(f"+{controller}")
        except OSError as exc:
            # EBUSY: our cgroup has processes of its own (v2 lets only leaves hold
            # processes once children have controllers); we never move them.
            if exc.errno not in (errno.EBUSY, errno.EACCES, errno.EPERM, errno.ENOTSUP):
                raise
        else:
            enabled.add(controller)
    return enabled & {"memory", "cpu", "pids"}


def _v1_layout(own: Mapping[str, str], mounts: Iterable[_Mount]) -> CgroupLayout | None:
    bases: dict[str, str] = {}
    hierarchies: list[str] = []
    for mount in mounts:
        if mount.version != 1 or not mount.controllers:
            continue
        controller = min(mount.controllers)
        if controller not in own:
            continue
        directory = _directory(mount, own[controller])
        if directory is None or not _writable(directory):
            continue
        hierarchies.append(directory)
        for name in mount.controllers:
            bases[name] = directory
    if not hierarchies:
        return None
    return CgroupLayout(V1, bases, tuple(hierarchies))
