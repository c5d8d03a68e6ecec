"""The queue's one rule, as a pure function: which queued jobs may start now, and why not.

Every kernel runs it over the whole store (in one write transaction, see
``JobStore.admit``) and starts only its own jobs; since all see the same order, the
queue is one queue however many kernels share it:

- jobs are taken in priority order (higher first), then submission (id) order;
- a job waits for its ``after`` jobs to have SUCCEEDED; if one failed, was stopped or
  removed, it never starts;
- a group with ``parallel`` N > 0 runs at most N jobs at once; the next free slots go to
  the first jobs in order, whichever kernel owns them (a live kernel's job holds its
  place; a dead kernel's queued job holds none: nothing starts it by itself).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Queued:
    """A queued job as the queue sees it."""

    id: int
    group: str
    priority: int
    after: tuple[int, ...]
    owner_alive: bool


@dataclasses.dataclass
class Admission:
    """What one pass over the queue decided for the jobs of one process."""

    admitted: list[int] = dataclasses.field(default_factory=list)
    #: Jobs that can never start (a job they wait for failed): id -> why.
    never: dict[int, str] = dataclasses.field(default_factory=dict)
    #: Jobs that wait: id -> why, for people ("2nd in group gpu (2/2 running)").
    waiting: dict[int, str] = dataclasses.field(default_factory=dict)


def plan(
    queued: Iterable[Queued],
    running: Mapping[str, int],
    limits: Mapping[str, int],
    states: Mapping[int, str],
    mine: Collection[int],
) -> Admission:
    """Decide for the jobs ``mine`` (ids) among all ``queued`` (already in queue order).

    ``running``: jobs running per group; ``limits``: each group's ``parallel`` (absent or
    0: no limit); ``states``: the state of every job named in an ``after``.
    """
    admission = Admission()
    taken = collections.Counter(running)
    places: collections.Counter[str] = collections.Counter()
    for job in queued:
        if not job.owner_alive:
            continue
        mine_now = job.id in mine
        ended_badly = [j for j in job.after if states.get(j, "removed") in _NEVER]
        if ended_badly:
            if mine_now:
                first = ended_badly[0]
                admission.never[job.id] = (
                    f"not started: job {first} {_PAST[states.get(first, 'removed')]}"
                )
            continue
        pending = [j for j in job.after if states.get(j) != "succeeded"]
        if pending:
            if mine_now:
                admission.waiting[job.id] = _waiting_for(pending)
            continue
        limit = limits.get(job.group, 0)
        if limit <= 0 or taken[job.group] < limit:
            taken[job.group] += 1  # another kernel's job holds its slot until it starts
            if mine_now:
                admission.admitted.append(job.id)
            continue
        places[job.group] += 1
        if mine_now:
            admission.waiting[job.id] = (
                f"{ordinal(places[job.group])} in group {job.group} "
                f"({running.get(job.group, 0)}/{limit} running)"
            )
    return admission


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
