"""The parts of a job's JSON that no column holds, watched so that each change has a revision.

``job_json`` works two things out when it is made: whether a job is orphaned (queued or
running, its kernel gone) and, for a queued job, why it waits ("2nd in group gpu (2/2
running)"; the store keeps only the reasons that are not a place). Either may change
while the job's row stays the same: a kernel dies, a job ahead in the group ends. A
client that asks for "the jobs changed since revision R" would never hear of it, so the
server works them out again when they may have changed and ``touch``es the jobs whose
answer changed (``revisions.touch``): every change of a job's JSON then has a revision.
"""

from __future__ import annotations

from jobmagic.core.process_identity import same_process
from jobmagic.store import revisions
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore

#: What ``job_json`` works out for an unfinished job: (orphaned, queue reason).
Derived = tuple[bool, str | None]
#: A kernel (or other process) that owns jobs: its pid and start time, as recorded.
Owner = tuple[int | None, int | None]
#: What the fields depend on: the store's revision and data_version, whose kernels live.
Inputs = tuple[int, int, dict[Owner, bool]]

#: The owners of every unfinished job (the change feed's watch pass reads them too).
UNFINISHED_OWNERS = (
    "SELECT DISTINCT owner_pid, owner_start FROM jobs"
    " WHERE state IN ('queued', 'running', 'paused')"
)
#: What the fields are worked out from, of each unfinished job (not its whole record).
_UNFINISHED_ROWS = (
    "SELECT id, state, group_name, queue_reason, owner_pid, owner_start FROM jobs"
    " WHERE state IN ('queued', 'running', 'paused')"
)


class DerivedFields:
    """Remembers the derived fields of every unfinished job, and touches those that change.

    Call ``touch_changed`` on the server's store thread (it reads and may write the store),
    from one caller at a time (the change feed's look at the store).
    """

    def __init__(self) -> None:
        # job id -> what its JSON said at the last look; None before the first look.
        self._known: dict[int, Derived] | None = None
        # What the fields were last worked out from; None before the first look.
        self._inputs: Inputs | None = None

    def touch_changed(self, store: JobStore) -> list[int]:
        """Touch the jobs whose derived fields changed since the last call; return their ids.

        The fields are worked out again only when what they depend on changed: a job (the
        revision), the groups (another process's commit: ``data_version``), or whether
        the kernels that own unfinished jobs are alive. At the first look there is
        nothing to compare with: the jobs that are orphaned or wait for a place are
        touched then, since they may have become so while no server watched (a client
        holding an earlier revision would not know).
        """
        owners = {owner: same_process(*owner) for owner in store.read(UNFINISHED_OWNERS)}
        inputs = (revisions.current(store), store.data_version(), owners)
        if inputs == self._inputs:
            return []
        rows = store.read(_UNFINISHED_ROWS)
        queued = [(i, group, reason) for i, state, group, reason, _, _ in rows if state == "queued"]
        reasons = JobQueue(store).reasons_of(queued)
        now: dict[int, Derived] = {}
        for job_id, _, _, reason, pid, start in rows:
            alive = owners.get((pid, start))
            if alive is None:  # an owner that came with a commit after the read above
                alive = same_process(pid, start)
            now[job_id] = (not alive, reasons.get(job_id) or reason)
        known = self._known
        if known is None:
            # What the row alone would say: not orphaned, the stored reason.
            plain = {row[0]: (False, row[3]) for row in rows}
            changed = [job_id for job_id, fields in now.items() if fields != plain[job_id]]
        else:
            # A job new since the last look has a new revision already.
            changed = [i for i, fields in now.items() if known.get(i, fields) != fields]
        if changed:
            revisions.touch(store, changed)  # (the next look works them out once more)
        self._known = now
        self._inputs = inputs
        return changed
