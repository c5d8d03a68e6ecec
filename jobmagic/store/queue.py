"""The queue's one rule, as a pure function: which queued jobs may start now, and why not.

Every kernel runs it over the whole store (in one write transaction, see
``JobStore.admit``) and starts only its own jobs; since all see the same order, the
queue is one queue however many kernels share it:

- jobs are taken in priority order (higher first), then submission (id) order;
- a job waits for its ``after`` jobs to have SUCCEEDED; if one failed, was stopped or
  removed, it never starts;
- a group with ``parallel`` N > 0 runs at most N jobs at once; the next free slots go to
  the first jobs in order, whichever kernel owns them (a live kernel's job holds its
  place; a dead kernel's queued job holds none: nothing starts it by itself, unless it
  is detached and needs no environment values: then it is nobody's, and any kernel's
  pass may take it);
- a job that asks for GPUs or units of a named pool starts when that many are free;
  the first job in order that must wait for a pool keeps what is free of it for itself
  (a later, smaller job does not overtake it).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Queued:
    """A queued job as the queue sees it."""

    id: int
    group: str
    priority: int
    after: tuple[int, ...]
    owner_alive: bool
    gpus: int = 0
    resources: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Pools:
    """What the pools have, and what running jobs hold of them.

    ``gpus``: device ids; ``capacity``: units per named pool; ``gpus_in_use`` and
    ``units_in_use``: what running jobs hold.
    """

    gpus: Sequence[str] = ()
    capacity: Mapping[str, int] = dataclasses.field(default_factory=dict)
    gpus_in_use: set[str] = dataclasses.field(default_factory=set)
    units_in_use: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass
class Admission:
    """What one pass over the queue decided for the jobs of one process."""

    admitted: list[int] = dataclasses.field(default_factory=list)
    #: Jobs that can never start (a job they wait for failed): id -> why.
    never: dict[int, str] = dataclasses.field(default_factory=dict)
    #: Jobs that wait for other jobs or for a pool: id -> why ("waiting for job 7").
    waiting: dict[int, str] = dataclasses.field(default_factory=dict)
    #: Jobs that wait for a slot of their full group: id -> the group. Their place in it
    #: changes whenever one ahead starts, so it is worked out when shown, never stored
    #: (see ``group_places``).
    in_group: dict[int, str] = dataclasses.field(default_factory=dict)
    #: The GPU devices each admitted job takes.
    devices: dict[int, list[str]] = dataclasses.field(default_factory=dict)
    #: Admitted jobs that were nobody's (see ``JobQueue.admit``): now the caller's.
    adopted: list[int] = dataclasses.field(default_factory=list)


def plan(
    queued: Iterable[Queued],
    *,
    running: Mapping[str, int],
    limits: Mapping[str, int],
    states: Mapping[int, str],
    mine: Collection[int],
    pools: Pools | None = None,
) -> Admission:
    """Decide for the jobs ``mine`` (ids) among all ``queued`` (already in queue order).

    ``running``: jobs running per group; ``limits``: each group's ``parallel`` (absent or
    0: no limit); ``states``: the state of every job named in an ``after``; ``pools``:
    the GPU and named pools and what is in use.
    """
    walk = _Walk(running, limits, states, mine, pools or Pools())
    for job in queued:
        if job.owner_alive:  # a dead kernel's job holds no place
            walk.consider(job)
    return walk.admission


class _Walk:
    """One pass down the queue: what is taken so far, and what was decided."""

    def __init__(
        self,
        running: Mapping[str, int],
        limits: Mapping[str, int],
        states: Mapping[int, str],
        mine: Collection[int],
        pools: Pools,
    ) -> None:
        self.admission = Admission()
        self._running = running
        self._limits = limits
        self._states = states
        self._mine = mine
        self._taken = collections.Counter(running)
        self._free_gpus = [d for d in pools.gpus if d not in pools.gpus_in_use]
        self._free_units = {n: c - pools.units_in_use[n] for n, c in pools.capacity.items()}

    def consider(self, job: Queued) -> None:
        mine = job.id in self._mine
        reason = self._blocked_by_after(job)
        if reason is not None:
            if mine and job.id not in self.admission.never:
                self.admission.waiting[job.id] = reason
            return
        limit = self._limits.get(job.group, 0)
        if 0 < limit <= self._taken[job.group]:
            if mine:
                self.admission.in_group[job.id] = job.group
            return
        short = _short_of(job, self._free_gpus, self._free_units)
        if short is not None:
            # It keeps what is free for itself: nothing later takes it this pass.
            if job.gpus:
                self._free_gpus = []
            for name in job.resources:
                self._free_units[name] = 0
            if mine:
                self.admission.waiting[job.id] = short
            return
        self._taken[job.group] += 1  # another kernel's job holds its slot until it starts
        devices, self._free_gpus = self._free_gpus[: job.gpus], self._free_gpus[job.gpus :]
        for name, count in job.resources.items():
            self._free_units[name] -= count
        if mine:
            self.admission.admitted.append(job.id)
            if devices:
                self.admission.devices[job.id] = devices

    def _blocked_by_after(self, job: Queued) -> str | None:
        """Why ``job`` waits for its ``after`` jobs (or never starts: then it is noted)."""
        ended_badly = [j for j in job.after if self._states.get(j, "removed") in _NEVER]
        if ended_badly:
            first = ended_badly[0]
            if job.id in self._mine:
                past = _PAST[self._states.get(first, "removed")]
                self.admission.never[job.id] = f"not started: job {first} {past}"
            return "never"
        pending = [j for j in job.after if self._states.get(j) != "succeeded"]
        return _waiting_for(pending) if pending else None


def group_places(
    queued: Iterable[Queued], running: Mapping[str, int], limits: Mapping[str, int]
) -> dict[int, str]:
    """Where each queued job of a full group stands: ``"2nd in group gpu (2/2 running)"``.

    ``queued`` in queue order; a dead kernel's job holds no place.
    """
    places: collections.Counter[str] = collections.Counter()
    shown: dict[int, str] = {}
    for job in queued:
        limit = limits.get(job.group, 0)
        if limit <= 0 or not job.owner_alive:
            continue
        places[job.group] += 1
        taken = running.get(job.group, 0)
        if places[job.group] + taken > limit:
            shown[job.id] = (
                f"{ordinal(places[job.group] + taken - limit)} in group {job.group} "
                f"({taken}/{limit} running)"
            )
    return shown


def _short_of(job: Queued, free_gpus: Sequence[str], free_units: Mapping[str, int]) -> str | None:
    """Why the pools cannot give ``job`` what it asks for now, or None when they can."""
    if job.gpus > len(free_gpus):
        noun = "GPU" if job.gpus == 1 else "GPUs"
        return f"waiting for {job.gpus} {noun} ({len(free_gpus)} free)"
    for name, count in job.resources.items():
        free = free_units.get(name, 0)
        if count > free:
            return f"waiting for {count} {name} ({max(0, free)} free)"
    return None


_NEVER = frozenset({"failed", "stopped", "removed"})
_PAST = {"failed": "failed", "stopped": "was stopped", "removed": "was removed"}


def _waiting_for(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"waiting for job {ids[0]}"
    return f"waiting for jobs {', '.join(map(str, ids))}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    teens = 10 <= n % 100 <= 20  # noqa: PLR2004 - 11th, 12th, 13th
    suffix = "th" if teens else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def owner_liveness(check: Callable[[int | None, int | None], bool]) -> Callable[..., bool]:
    """``check(pid, start)`` cached per owner for one pass (queued jobs share few owners)."""
    cache: dict[tuple[int | None, int | None], bool] = {}

    def alive(pid: int | None, start: int | None) -> bool:
        key = (pid, start)
        if key not in cache:
            cache[key] = check(pid, start)
        return cache[key]

    return alive
