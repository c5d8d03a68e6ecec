"""The queue's part of the store: groups and their limits, and the admission pass.

``JobQueue(store)`` reads and writes the store's ``groups`` table and the queue columns of
``jobs`` (``group_name``, ``priority``, ``after_ids``, ``queue_reason``); the rule itself is
``store/queue.py``'s ``plan``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jobmagic.core.process_identity import same_process

from .job_store import JobStore
from .queue import Admission, Pools, Queued, owner_liveness, plan


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

    def group_limit(self, name: str) -> int:
        """How many jobs of group ``name`` may run at once; 0 means no limit."""
        rows = self.store.read("SELECT parallel FROM groups WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def groups(self) -> list[tuple[str, int, int, int]]:
        """Every group a job is in or a limit names: (name, parallel, running, queued)."""
        rows = self.store.read(
            "SELECT g.name, coalesce(l.parallel, 0),"
            " (SELECT count(*) FROM jobs WHERE group_name = g.name AND state = 'running'),"
            " (SELECT count(*) FROM jobs WHERE group_name = g.name AND state = 'queued')"
            " FROM (SELECT name FROM groups UNION SELECT DISTINCT group_name FROM jobs) g"
            " LEFT JOIN groups l ON l.name = g.name ORDER BY g.name"
        )
        return [(str(n), int(p), int(r), int(q)) for n, p, r, q in rows]

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
            rows = db.execute(
                "SELECT id, group_name, priority, after_ids, owner_pid, owner_start,"
                " queue_reason, gpus, resources FROM jobs WHERE state = 'queued'"
                " ORDER BY priority DESC, id"
            ).fetchall()
            running = dict(
                db.execute(
                    "SELECT group_name, count(*) FROM jobs WHERE state = 'running'"
                    " GROUP BY group_name"
                ).fetchall()
            )
            limits = dict(db.execute("SELECT name, parallel FROM groups").fetchall())
            queued = [
                Queued(
                    row[0],
                    row[1],
                    row[2],
                    tuple(json.loads(row[3])),
                    alive(row[4], row[5]),
                    gpus=row[7],
                    resources=json.loads(row[8]),
                )
                for row in rows
            ]
            pools = Pools(gpus=gpu_pool, capacity=capacity or {})
            for held, units in db.execute(
                "SELECT gpus_held, resources FROM jobs WHERE state = 'running'"
                " AND (gpus_held != '[]' OR resources != '{}')"
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
                queued, running=running, limits=limits, states=states, mine=mine, pools=pools
            )
            for job_id in admission.admitted:
                db.execute(
                    "UPDATE jobs SET state = 'running', queue_reason = NULL, gpus_held = ?"
                    " WHERE id = ? AND state = 'queued'",
                    (json.dumps(admission.devices.get(job_id, [])), job_id),
                )
            reasons = {row[0]: row[6] for row in rows}
            for job_id, reason in admission.waiting.items():
                if reasons.get(job_id) != reason:
                    db.execute("UPDATE jobs SET queue_reason = ? WHERE id = ?", (reason, job_id))
        return admission

    def orphan_holders(self) -> list[tuple[int, str, dict[str, Any] | None]]:
        """Running jobs that hold devices or units and whose owner is gone.

        (id, backend, backend_ref): nobody will record their end, so whoever waits for
        what they hold must watch for it.
        """
        rows = self.store.read(
            "SELECT id, backend, backend_ref, owner_pid, owner_start FROM jobs"
            " WHERE state = 'running' AND (gpus_held != '[]' OR resources != '{}')"
        )
        return [
            (row[0], row[1], json.loads(row[2]) if row[2] else None)
            for row in rows
            if not same_process(row[3], row[4])
        ]
