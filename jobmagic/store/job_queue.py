"""The queue's part of the store: groups and their limits, and the admission pass.

``JobQueue(store)`` reads and writes the store's ``groups`` table and the queue columns of
``jobs`` (``group_name``, ``priority``, ``after_ids``, ``queue_reason``); the rule itself is
``store/queue.py``'s ``plan``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from jobmagic.core.process_identity import same_process
from jobmagic.core.state import JobState

from .job_ends import bump_queue_epoch
from .job_store import JobStore
from .queue import Admission, Pools, Queued, group_places, owner_liveness, plan
from .records import JobRecord, this_process_owner


class JobQueue:
    """The shared queue of one job store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def set_group(self, name: str, parallel: int) -> None:
        """Let at most ``parallel`` jobs of group ``name`` run at once (0: no limit)."""
        with self.store.write() as db:
            db.execute(
                "INSERT INTO groups (name, parallel) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET parallel = excluded.parallel",
                (name, parallel),
            )
            bump_queue_epoch(db)

    def group_limit(self, name: str) -> int:
        """How many jobs of group ``name`` may run at once; 0 means no limit."""
        rows = self.store.read("SELECT parallel FROM groups WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def starts_at_once(self, name: str) -> bool:
        """True when a plain job of group ``name`` needs no pass: no limit, not paused."""
        rows = self.store.read("SELECT parallel, paused FROM groups WHERE name = ?", (name,))
        return not rows or (int(rows[0][0]) == 0 and not int(rows[0][1]))

    def groups(self) -> list[tuple[str, int, int, int, bool]]:
        """Every group a job is in or a limit names: (name, parallel, running, queued, paused).

        ``running`` counts paused jobs too: they keep their slots.
        """
        rows = self.store.read(
            "SELECT g.name, coalesce(l.parallel, 0),"
            " (SELECT count(*) FROM jobs WHERE group_name = g.name"
            " AND state IN ('running', 'paused')),"
            " (SELECT count(*) FROM jobs WHERE group_name = g.name AND state = 'queued'),"
            " coalesce(l.paused, 0)"
            " FROM (SELECT name FROM groups UNION SELECT DISTINCT group_name FROM jobs) g"
            " LEFT JOIN groups l ON l.name = g.name ORDER BY g.name"
        )
        return [(str(n), int(p), int(r), int(q), bool(s)) for n, p, r, q, s in rows]

    def admit(
        self,
        mine: Collection[int],
        gpu_pool: Sequence[str] = (),
        capacity: Mapping[str, int] | None = None,
    ) -> Admission:
        """One pass of the queue (see ``store/queue.py``) for this process's queued ``mine``.

        In one write transaction, so that two kernels never fill one slot or one device:
        the jobs admitted are marked RUNNING here with the devices they take (their
        launch fills in the rest), and each waiting job's ``queue_reason`` is written
        when it changed. A running job holds its devices and units until it has ended.
        """
        alive = owner_liveness(same_process)
        with self.store.write() as db:
            running = dict(
                db.execute(
                    "SELECT group_name, count(*) FROM jobs WHERE state IN ('running', 'paused')"
                    " GROUP BY group_name"
                ).fetchall()
            )
            limits = dict(db.execute("SELECT name, parallel FROM groups").fetchall())
            paused = {n for (n,) in db.execute("SELECT name FROM groups WHERE paused != 0")}
            rows = _candidates(db, running, limits, alive, paused)
            ownerless = {row[0] for row in rows if _nobodys(row, alive)}
            queued = [
                Queued(
                    row[0],
                    row[1],
                    row[2],
                    tuple(json.loads(row[3])),
                    alive(row[4], row[5]) or row[0] in ownerless,
                    gpus=row[7],
                    resources=json.loads(row[8]),
                )
                for row in rows
            ]
            pools = Pools(gpus=gpu_pool, capacity=capacity or {})
            for held, units in db.execute(
                "SELECT gpus_held, resources FROM jobs WHERE state IN ('running', 'paused')"
                " AND (gpus_held != '[]' OR resources != '{}') AND backend = 'local'"
            ).fetchall():
                pools.gpus_in_use.update(json.loads(held))
                pools.units_in_use.update(json.loads(units))
            wanted = sorted({j for job in queued for j in job.after})
            states = dict(
                db.execute(
                    f"SELECT id, state FROM jobs WHERE id IN ({', '.join('?' * len(wanted))})",  # noqa: S608 - placeholders only
                    wanted,
                ).fetchall()
            )
            admission = plan(
                queued,
                running=running,
                limits=limits,
                states=states,
                # Not a copy of ``mine`` at each pass (it may hold thousands of jobs).
                mine={*mine, *ownerless} if ownerless else mine,
                pools=pools,
            )
            owner = this_process_owner()
            for job_id in admission.admitted:
                devices = json.dumps(admission.devices.get(job_id, []))
                if job_id in ownerless:  # nobody's: it is ours now
                    admission.adopted.append(job_id)
                    db.execute(
                        "UPDATE jobs SET state = 'running', queue_reason = NULL, gpus_held = ?,"
                        " owner = ?, owner_pid = ?, owner_start = ?"
                        " WHERE id = ? AND state = 'queued'",
                        (devices, *owner, job_id),
                    )
                    continue
                db.execute(
                    "UPDATE jobs SET state = 'running', queue_reason = NULL, gpus_held = ?"
                    " WHERE id = ? AND state = 'queued'",
                    (devices, job_id),
                )
            for job_id in [i for i in admission.never if i in ownerless]:
                # Nobody else would: its end is written here.
                db.execute(
                    "UPDATE jobs SET state = 'failed', error = ?, ended_at = ?"
                    " WHERE id = ? AND state = 'queued'",
                    (admission.never.pop(job_id), time.time(), job_id),
                )
                bump_queue_epoch(db)
            reasons = {row[0]: row[6] for row in rows}
            stored = {**dict.fromkeys(admission.in_group), **admission.waiting}
            for job_id, reason in stored.items():
                if reasons.get(job_id) != reason:
                    db.execute("UPDATE jobs SET queue_reason = ? WHERE id = ?", (reason, job_id))
        return admission

    def has_ownerless(self) -> bool:
        """True when a detached queued job's owner is gone: a pass of any kernel may take it."""
        rows = self.store.read(
            "SELECT owner_pid, owner_start, env_keys FROM jobs"
            " WHERE state = 'queued' AND detached = 1"
        )
        return any(r[2] == "[]" and not same_process(r[0], r[1]) for r in rows)

    def epoch(self) -> int:
        """Moves whenever a queued job may have become able to start (see the store)."""
        rows = self.store.read("SELECT value FROM store_info WHERE key = 'queue_epoch'")
        return int(rows[0][0]) if rows else 0

    def has_room(self, group: str) -> bool:
        """True when group ``group`` is not paused and runs fewer jobs than its limit."""
        rows = self.store.read("SELECT parallel, paused FROM groups WHERE name = ?", (group,))
        limit, paused = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        if paused:
            return False
        if limit == 0:
            return True
        rows = self.store.read(
            "SELECT count(*) FROM jobs WHERE group_name = ? AND state IN ('running', 'paused')",
            (group,),
        )
        return int(rows[0][0]) < limit

    def reasons(self, records: Iterable[JobRecord]) -> dict[int, str]:
        """Why each of ``records``' queued jobs waits, as people read it.

        "group G is paused"; else the stored reason ("waiting for job 7"), else the job's
        place in its full group, worked out from one read of the queue.
        """
        return self.reasons_of(
            [(r.id, r.group_name, r.queue_reason) for r in records if r.state is JobState.QUEUED]
        )

    def reasons_of(self, queued: Collection[tuple[int, str, str | None]]) -> dict[int, str]:
        """``reasons`` of queued jobs given as (id, group, stored reason): no whole records."""
        if not queued:
            return {}
        paused = {n for (n,) in self.store.read("SELECT name FROM groups WHERE paused != 0")}
        shown = {i: f"group {group} is paused" for i, group, _ in queued if group in paused}
        shown.update({i: reason for i, _, reason in queued if reason and i not in shown})
        if len(shown) == len(queued):
            return shown
        alive = owner_liveness(same_process)
        rows = self.store.read(
            "SELECT id, group_name, priority, owner_pid, owner_start, detached, env_keys FROM jobs"
            " WHERE state = 'queued' AND queue_reason IS NULL ORDER BY priority DESC, id"
        )
        running = dict(
            self.store.read(
                "SELECT group_name, count(*) FROM jobs WHERE state IN ('running', 'paused')"
                " GROUP BY group_name"
            )
        )
        limits = dict(self.store.read("SELECT name, parallel FROM groups"))
        places = group_places(
            (
                Queued(r[0], r[1], r[2], (), alive(r[3], r[4]) or (r[5] == 1 and r[6] == "[]"))
                for r in rows
            ),
            running,
            limits,
        )
        for job_id, _, _ in queued:
            if job_id not in shown and job_id in places:
                shown[job_id] = places[job_id]
        return shown

    def orphan_holders(
        self, groups: Collection[str] = ()
    ) -> list[tuple[int, str, dict[str, Any] | None]]:
        """Running jobs whose owner is gone that hold devices, units or a slot of ``groups``.

        (id, backend, backend_ref): nobody will record their end, so whoever waits for
        what they hold must watch for it.
        """
        in_groups = ", ".join("?" * len(groups)) or "NULL"
        sql = (
            "SELECT id, backend, backend_ref, owner_pid, owner_start FROM jobs"  # noqa: S608 - placeholders only
            " WHERE state IN ('running', 'paused') AND (gpus_held != '[]' OR resources != '{}'"
            f" OR group_name IN ({in_groups}))"
        )
        rows = self.store.read(sql, list(groups))
        return [
            (row[0], row[1], json.loads(row[2]) if row[2] else None)
            for row in rows
            if not same_process(row[3], row[4])
        ]


_SELECT_QUEUED = (
    # Only local jobs take from this machine's pools (a Ray job's GPUs are Ray's).
    "SELECT id, group_name, priority, after_ids, owner_pid, owner_start, queue_reason,"
    " CASE WHEN backend = 'local' THEN gpus ELSE 0 END,"
    " CASE WHEN backend = 'local' THEN resources ELSE '{}' END,"
    " detached, env_keys FROM jobs WHERE state = 'queued' AND group_name = ?"
    " ORDER BY priority DESC, id"
)


def _nobodys(row: tuple[Any, ...], alive: Callable[[int | None, int | None], bool]) -> bool:
    """A queued row (of ``_SELECT_QUEUED``) whose owner is gone and that anyone may run.

    Detached, and needing no environment values (the store never keeps them: only its
    owner had them).
    """
    return bool(row[9]) and row[10] == "[]" and not alive(row[4], row[5])


_SELECT_WAITING_FOR_JOBS = _SELECT_QUEUED.replace(
    "group_name = ?", "group_name = ? AND after_ids != '[]'"
)
#: The groups that have queued jobs, in one index step each (not one per queued job): the
#: least group name, then the least one after it, and so on.
_SELECT_QUEUED_GROUPS = (
    "WITH RECURSIVE g(name) AS ("
    " SELECT (SELECT min(group_name) FROM jobs INDEXED BY jobs_queue_order"
    "  WHERE state = 'queued')"
    " UNION ALL"
    " SELECT (SELECT min(group_name) FROM jobs INDEXED BY jobs_queue_order"
    "  WHERE state = 'queued' AND group_name > g.name) FROM g WHERE g.name IS NOT NULL"
    ") SELECT name FROM g WHERE name IS NOT NULL"
)
#: Rows of a group with room read at a time.
_CHUNK = 64


def _candidates(
    db: sqlite3.Connection,
    running: Mapping[str, int],
    limits: Mapping[str, int],
    alive: Callable[[int | None, int | None], bool],
    paused: Collection[str] = (),
) -> list[tuple[Any, ...]]:
    """The queued rows a pass needs to look at, in queue order.

    A paused group's jobs start nothing and are not read. A full group's jobs cannot
    start: only those that wait for other jobs are read (to say so, or to end them when
    one failed). Of a group with N free slots, rows are read in order until N of them are
    plain jobs of live kernels (each of those surely takes a slot: nothing after them can
    start now). A group without a limit holds only jobs that wait for something else: all are read.
    """
    groups = [g for (g,) in db.execute(_SELECT_QUEUED_GROUPS)]
    rows: list[tuple[Any, ...]] = []
    for group in groups:
        if group in paused:
            continue
        limit = limits.get(group, 0)
        if limit <= 0:
            rows += db.execute(_SELECT_QUEUED, (group,)).fetchall()
            continue
        room = limit - running.get(group, 0)
        if room <= 0:
            rows += db.execute(_SELECT_WAITING_FOR_JOBS, (group,)).fetchall()
        offset = 0
        while room > 0:
            chunk = db.execute(
                f"{_SELECT_QUEUED} LIMIT ? OFFSET ?", (group, _CHUNK, offset)
            ).fetchall()
            rows += chunk
            offset += len(chunk)
            room -= sum(
                1
                for r in chunk
                if r[3] == "[]"
                and not r[7]
                and r[8] == "{}"
                and (alive(r[4], r[5]) or _nobodys(r, alive))
            )
            if len(chunk) < _CHUNK:
                break
    rows.sort(key=lambda r: (-r[2], r[0]))
    return rows
