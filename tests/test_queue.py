"""The shared queue: groups with limits, priorities, ``after`` dependencies, reasons.

The rule on its own (``store.queue.plan``), then real jobs in one service, then two
processes sharing one store (each with its own service, as two kernels have).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import python_cmd

from jobmagic import JobState, WorkerService
from jobmagic.errors import JobmagicError
from jobmagic.store.job_store import JobStore
from jobmagic.store.queue import Pools, Queued, group_places, ordinal, plan
from jobmagic.store.records import JobRecord

pytestmark = pytest.mark.timeout(90)


# -- the rule ---------------------------------------------------------------------------
def q(
    job_id: int,
    *,
    group: str = "g",
    priority: int = 0,
    after: tuple[int, ...] = (),
    alive: bool = True,
    gpus: int = 0,
) -> Queued:
    return Queued(job_id, group, priority, after, alive, gpus=gpus)


def test_plan_fills_free_slots_in_order_and_says_why_the_rest_wait() -> None:
    queued = [q(5, priority=2), q(1), q(2), q(3)]  # queue order: priority, then id
    admission = plan(queued, running={"g": 1}, limits={"g": 3}, states={}, mine={5, 1, 2, 3})
    assert admission.admitted == [5, 1]
    assert admission.in_group == {2: "g", 3: "g"}
    assert admission.waiting == {}
    # Places in a group are worked out when shown, never stored.
    places = group_places(queued[2:], running={"g": 3}, limits={"g": 3})
    assert places == {2: "1st in group g (3/3 running)", 3: "2nd in group g (3/3 running)"}


def test_plan_keeps_other_kernels_places_and_skips_dead_kernels_jobs() -> None:
    queued = [q(1, alive=False), q(2), q(3)]  # 2 is another live kernel's
    admission = plan(queued, running={}, limits={"g": 1}, states={}, mine={1, 3})
    assert admission.admitted == []  # the one slot is job 2's, whoever owns it
    assert admission.in_group == {3: "g"}
    places = group_places(queued, running={}, limits={"g": 1})
    assert places == {3: "1st in group g (0/1 running)"}


def test_plan_waits_for_after_and_gives_up_when_one_failed() -> None:
    queued = [q(4, after=(1, 2)), q(5, after=(3,)), q(6, after=(1,)), q(7, after=(9,))]
    states = {1: "succeeded", 2: "running", 3: "failed"}
    admission = plan(queued, running={}, limits={}, states=states, mine={4, 5, 6, 7})
    assert admission.admitted == [6]
    assert admission.waiting == {4: "waiting for job 2"}
    assert admission.never == {5: "not started: job 3 failed", 7: "not started: job 9 was removed"}


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        *("1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th")
    ]


# -- one service ------------------------------------------------------------------------
@pytest.fixture
def svc(jobmagic_home: Path) -> Any:
    service = WorkerService(home=jobmagic_home)
    yield service
    service.shutdown()


def most_at_once(records: list[JobRecord]) -> int:
    """The largest number of these jobs that ran at the same moment."""
    edges = sorted(
        [(r.started_at, 1) for r in records if r.started_at]
        + [(r.ended_at, -1) for r in records if r.ended_at]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_a_group_runs_at_most_its_limit_in_priority_then_submission_order(svc: Any) -> None:
    svc.set_group("sweep", 2)
    jobs = [svc.start("sleep 0.2", group="sweep", priority=1 if i == 4 else 0) for i in range(6)]
    assert [w.state for w in jobs[2:]] == [JobState.QUEUED] * 4
    assert jobs[2].queue_reason == "2nd in group sweep (2/2 running)"
    assert jobs[4].queue_reason == "1st in group sweep (2/2 running)"
    for w in jobs:
        assert w.wait(30) == 0
    records = [svc.store.get(w.id) for w in jobs]
    assert most_at_once(records) == 2
    started = [w.id for w in sorted(jobs, key=lambda w: w.started_at)]
    assert started[2] == jobs[4].id  # the priority job took the first free slot
    assert svc.groups()[-1] == ("sweep", 2, 0, 0, False)


def test_a_plain_job_still_starts_at_once(svc: Any) -> None:
    w = svc.start("true")
    assert w.state is not JobState.QUEUED
    assert w.group == "default"


def test_after_starts_on_success_and_never_on_failure(svc: Any) -> None:
    first = svc.start("sleep 0.2; echo first")
    second = svc.start("echo second", after=[first.id])
    assert second.state is JobState.QUEUED
    assert second.queue_reason == f"waiting for job {first.id}"
    assert second.wait(30) == 0
    assert second.started_at >= first.ended_at
    bad = svc.start("exit 3")
    bad.wait(10)
    never = svc.start("echo never", after=[first.id, bad.id])
    assert never.wait(10) is None
    assert (never.state, never.error) == (JobState.FAILED, f"not started: job {bad.id} failed")
    assert never.output() == b""
    assert never.started_at is None


def test_a_job_whose_after_job_succeeded_then_waits_for_a_slot_and_says_so(
    svc: Any, tmp_path: Path
) -> None:
    svc.set_group("one", 1)
    holder = svc.start(python_cmd("import signal; signal.pause()"), group="one")
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    first = svc.start(python_cmd(f"open({str(fifo)!r}).read()"))
    waiter = svc.start("echo waited", group="one", after=[first.id])
    assert waiter.queue_reason == f"waiting for job {first.id}"

    fifo.write_text("go")
    assert first.wait(30) == 0  # the queue pass its end ran is over by then

    assert (waiter.state, waiter.queue_reason) == (
        JobState.QUEUED,
        "1st in group one (1/1 running)",
    )
    holder.stop(timeout=1)
    assert waiter.wait(30) == 0
    assert waiter.output() == b"waited\n"


def test_raising_a_limit_starts_the_queued_jobs(svc: Any) -> None:
    svc.set_group("tight", 1)
    jobs = [svc.start(python_cmd("import signal; signal.pause()"), group="tight") for _ in range(3)]
    assert [w.state for w in jobs] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    svc.set_group("tight", 0)
    assert [w.state for w in jobs] == [JobState.RUNNING] * 3
    for w in jobs:
        w.stop(timeout=1, wait=False)


def test_stopping_a_queued_job_frees_its_place(svc: Any) -> None:
    svc.set_group("one", 1)
    runner = svc.start("sleep 0.3", group="one")
    dropped = svc.start("echo dropped", group="one")
    kept = svc.start("echo kept", group="one")
    dropped.stop()
    assert dropped.state is JobState.STOPPED
    assert svc.scheduler.queued == 1  # only `kept` waits here now
    assert kept.queue_reason == "1st in group one (1/1 running)"
    assert kept.wait(30) == 0
    assert runner.state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group": "has space"}, "a group name is 1-64 letters"),
        ({"group": "a;rm -rf"}, "a group name is 1-64 letters"),
        ({"priority": 1.5}, "priority must be an integer"),
        ({"after": [0]}, "after takes job ids"),
        ({"after": [99]}, "after: there is no job 99 to wait for"),
    ],
)
def test_bad_queue_options_are_refused_before_a_record(
    svc: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        svc.start("true", **options)
    assert svc.store.list() == []


@pytest.mark.parametrize("parallel", [-1, 1.5, True, "2"])
def test_a_bad_limit_is_refused(svc: Any, parallel: Any) -> None:
    with pytest.raises(ValueError, match="parallel must be an integer >= 0"):
        svc.set_group("g", parallel)


# -- two processes ------------------------------------------------------------------------
# Each "kernel" is a Python process with its own service: it starts its jobs in group
# "shared" (priorities from argv), waits for all of them, and prints their ids.
KERNEL = """
import json, sys
from jobmagic import WorkerService
svc = WorkerService()
priorities = json.loads(sys.argv[1])
command = sys.argv[2]
jobs = [svc.start(command, group="shared", priority=p) for p in priorities]
print(json.dumps([w.id for w in jobs]), flush=True)
sys.stdin.readline()
for w in jobs:
    w.wait()
print("done", flush=True)
"""


def start_kernel(
    home: Path, priorities: list[int], command: str
) -> tuple[subprocess.Popen[str], list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-c", KERNEL, json.dumps(priorities), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBMAGIC_HOME": str(home)},
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def finish_kernel(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "done"
    process.wait(30)


def test_two_kernels_share_one_limit_and_one_order(jobmagic_home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    svc = WorkerService(home=jobmagic_home)
    try:
        svc.set_group("shared", 2)
        # Two jobs hold both slots while the kernels queue everything.
        holders = [svc.start(f"read line < {fifo}", group="shared") for _ in range(2)]
        a, a_ids = start_kernel(jobmagic_home, [0, 0, 0, 5, 0, 0], "sleep 0.1")
        b, b_ids = start_kernel(jobmagic_home, [0, 0, 0, 0, 0, 9], "sleep 0.1")
        assert {svc.get(i).state for i in a_ids + b_ids} == {JobState.QUEUED}
        with open(fifo, "w") as go:
            go.write("go\ngo\n")
        for holder in holders:
            assert holder.wait(10) == 0
        finish_kernel(a)
        finish_kernel(b)
    finally:
        svc.shutdown()
    store = JobStore(jobmagic_home)
    records = [store.get(i) for i in a_ids + b_ids]
    assert all(r is not None and r.state is JobState.SUCCEEDED for r in records)
    assert most_at_once(records + [store.get(h.id) for h in holders]) == 2
    # Priority, then submission order, across both kernels; two slots start together,
    # so two neighbours may start in either order.
    queue_order = [r.id for r in sorted(records, key=lambda r: (-r.priority, r.id))]
    start_order = [r.id for r in sorted(records, key=lambda r: r.started_at)]
    assert queue_order[:2] == [b_ids[5], a_ids[3]]
    for position, job_id in enumerate(start_order):
        assert abs(queue_order.index(job_id) - position) <= 1, (start_order, queue_order)


def test_a_slot_freed_by_one_kernel_starts_the_other_kernels_job_within_100ms(
    jobmagic_home: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    svc = WorkerService(home=jobmagic_home)
    try:
        svc.set_group("shared", 1)
        holder = svc.start(f"read line < {fifo}", group="shared")
        other, (waiting_id,) = start_kernel(jobmagic_home, [0], "true")
        waiting = svc.get(waiting_id)
        assert waiting.state is JobState.QUEUED
        with open(fifo, "w") as go:
            go.write("go\n")
        assert holder.wait(10) == 0
        finish_kernel(other)
        started = svc.store.get(waiting_id).started_at
        handoff = started - holder.ended_at
        assert 0 <= handoff < 0.1, f"handoff took {handoff * 1000:.1f} ms"
    finally:
        svc.shutdown()


# -- the magics and the command line -------------------------------------------------------
def test_the_magics_set_groups_and_show_the_queue(
    ipython_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ipython_shell.run_line_magic("job", "group gpu --parallel 1")
    said = capsys.readouterr().out
    assert said.splitlines() == [
        "GROUP  PARALLEL  RUNNING  QUEUED  PAUSED",
        "gpu    1         0        0       no",
    ]
    hold = python_cmd("import signal; signal.pause()")
    first = ipython_shell.run_line_magic("job", f"start --group gpu {hold}")
    second = ipython_shell.run_line_magic("job", "start --group gpu --priority 2 echo second")
    third = ipython_shell.run_line_magic("job", f"start --after {second.id} echo third")
    capsys.readouterr()
    ipython_shell.run_line_magic("job", "queue")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "GROUP", "PRIORITY", "WAITING", "COMMAND"]
    assert lines[1].startswith(f"{third.id}   default  0         waiting for job {second.id}")
    assert lines[2].startswith(f"{second.id}   gpu      2         1st in group gpu (1/1 running)")
    first.stop(timeout=1)
    assert third.wait(30) == 0
    assert third.output() == b"third\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("group gpu --parallel -1", "expected a whole number >= 0"),
        ("group --parallel 2", "which group?"),
        ("group 'bad name' --parallel 2", "a group name is 1-64 letters"),
        ("start --after x echo", "expected job ids such as 3 or 3,4"),
        ("start --after 99 echo", "after: there is no job 99 to wait for"),
        ("start --priority high echo", "expected a whole number"),
    ],
)
def test_queue_mistakes_in_the_magics_are_usage_errors(
    ipython_shell: Any, line: str, message: str
) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=message):
        ipython_shell.run_line_magic("job", line)


def jobmagic(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("jobmagic")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_command_line_sets_groups_queues_and_waits_for_a_group(jobmagic_home: Path) -> None:
    assert jobmagic("group", "batch", "--parallel", "1").returncode == 0
    groups = json.loads(jobmagic("group", "--json").stdout)["groups"]
    assert {"name": "batch", "parallel": 1, "running": 0, "queued": 0, "paused": False} in groups
    hold = python_cmd("import signal; signal.pause()")
    first = int(jobmagic("start", "--group", "batch", "--", hold).stdout)
    # A queued job from the command line: the command prints its id at once and waits
    # in the queue for its turn (nobody else would start a job no kernel owns).
    waiting = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jobmagic")),
            "start",
            "--group",
            "batch",
            "--after",
            str(first),
            "--",
            "echo second",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout is not None
    second = int(waiting.stdout.readline())
    status = json.loads(jobmagic("status", str(second), "--json").stdout)
    assert (status["state"], status["group"], status["after"]) == ("queued", "batch", [first])
    assert status["queue_reason"] == f"waiting for job {first}"
    listed = jobmagic("list", "--group", "batch").stdout.splitlines()
    assert [line.split()[0] for line in listed[1:]] == [str(first), str(second)]
    # Stopping the first job fails the second ("not started"); a success would start it.
    assert jobmagic("stop", str(first), "--timeout", "1").returncode == 0
    assert waiting.wait(30) == 1
    assert jobmagic("wait", "--group", "batch").returncode == 0  # nothing left running
    ended = json.loads(jobmagic("status", str(second), "--json").stdout)
    assert (ended["state"], ended["error"]) == ("failed", f"not started: job {first} was stopped")


def run_dying_kernel(code: str, home: Path) -> dict[str, Any]:
    """Run a "kernel" that starts a job, prints it as JSON and dies without cleaning up."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "JOBMAGIC_HOME": str(home)},
    )
    job: dict[str, Any] = json.loads(done.stdout)
    return job


# -- a kernel that dies with queued jobs ------------------------------------------------------
DIES_WITH_A_QUEUED_JOB = """
import json, os, sys
from jobmagic import WorkerService
svc = WorkerService()
w = svc.start("echo $X_GIVEN", group="held", env={"X_GIVEN": "from-the-dead-kernel"})
print(json.dumps({"id": w.id, "state": w.state.value}), flush=True)
os._exit(0)
"""


def test_a_dead_kernels_queued_job_stays_queued_until_adopted(
    svc: Any, jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.set_group("held", 1)
    holder = svc.start(python_cmd("import signal; signal.pause()"), group="held")
    orphan = run_dying_kernel(DIES_WITH_A_QUEUED_JOB, jobmagic_home)
    assert orphan["state"] == "queued"
    holder.stop(timeout=1)
    # The slot is free, but nothing starts a dead kernel's job by itself.
    job = svc.get(orphan["id"])
    assert (job.state, job.orphaned) == (JobState.QUEUED, True)
    assert [w.state for w in svc.list(all=True)] == [JobState.STOPPED, JobState.QUEUED]
    monkeypatch.delenv("X_GIVEN", raising=False)
    with pytest.raises(
        JobmagicError, match=r"environment variables this kernel does not have \(X_GIVEN\)"
    ):
        svc.adopt(orphan["id"])
    monkeypatch.setenv("X_GIVEN", "from-this-kernel")
    adopted = svc.adopt(orphan["id"])
    assert adopted.owned
    assert adopted.wait(30) == 0
    assert adopted.output() == b"from-this-kernel\n"


DIES_WITH_DETACHED_QUEUED_JOBS = """
import json, os, sys
from jobmagic import WorkerService
svc = WorkerService()
free = svc.start("echo nobodys; exit 4", group="held", detach=True)
needs_env = svc.start("echo $X_GIVEN", group="held", detach=True, env={"X_GIVEN": "lost"})
print(json.dumps({"free": free.id, "needs_env": needs_env.id}), flush=True)
os._exit(0)
"""


def test_a_dead_kernels_detached_queued_job_is_started_by_any_live_kernel(
    svc: Any, jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.set_group("held", 1)
    holder = svc.start(python_cmd("import signal; signal.pause()"), group="held")
    jobs = run_dying_kernel(DIES_WITH_DETACHED_QUEUED_JOBS, jobmagic_home)
    added = threading.Event()
    svc.subscribe(
        lambda e: added.set() if e.kind == "added" and e.worker.id == jobs["free"] else None
    )
    # Nobody's, so it keeps its place in the queue.
    free = svc.store.get(jobs["free"])
    assert svc.queue.reasons([free]) == {free.id: "1st in group held (1/1 running)"}

    holder.stop(timeout=1)  # the slot frees: this kernel's pass takes the job that is nobody's

    assert added.wait(10), "no live kernel started the dead kernel's detached job"
    taken = svc.get(jobs["free"])
    assert taken.owned
    assert taken.wait(10) == 4
    assert taken.output() == b"nobodys\n"
    record = svc.store.get(jobs["free"])
    assert (record.owner_pid, record.state) == (os.getpid(), JobState.FAILED)
    # One that needs environment values only its owner had stays queued, for adopt().
    held = svc.get(jobs["needs_env"])
    assert (held.state, held.orphaned, held.owned) == (JobState.QUEUED, True, False)
    monkeypatch.setenv("X_GIVEN", "here")
    assert svc.adopt(jobs["needs_env"]).wait(10) == 0


def test_job_lists_show_groups_and_why_queued_jobs_wait(
    svc: Any, ipython_shell: Any, jobmagic_home: Path
) -> None:
    from jobmagic import get_service
    from jobmagic.notebook.reprs import JobTable

    service = get_service()
    service.set_group("one", 1)
    holder = service.start(python_cmd("import signal; signal.pause()"), group="one", name="held")
    waiting = service.start("true", group="one")
    table = JobTable(service.list())
    assert table.columns == (
        "ID",
        "NAME",
        "GROUP",
        "STATE",
        "EXIT",
        "RUNTIME",
        "WAITING",
        "COMMAND",
    )
    assert [row[2] for row in table.rows()] == ["one", "one"]
    assert [row[6] for row in table.rows()] == ["", "1st in group one (1/1 running)"]
    assert "<td style='text-align:left'>1st in group one (1/1 running)</td>" in table._repr_html_()
    listed = jobmagic("list").stdout.splitlines()
    assert listed[0].split() == [
        "ID",
        "NAME",
        "GROUP",
        "STATE",
        "EXIT",
        "RUNTIME",
        "STARTED",
        "WAITING",
        "COMMAND",
    ]
    assert "1st in group one (1/1 running)" in listed[2]
    holder.stop()
    assert waiting.wait(10) == 0
    # Without groups or queued jobs the table is as it always was.
    plain = JobTable([service.start("true")])
    assert plain.columns == ("ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND")


# -- restart ----------------------------------------------------------------------------------
def test_restart_starts_an_ended_job_again_with_this_kernels_environment(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = svc.start("echo $RUN; exit 3", name="flaky", env={"RUN": "one"}, group="g2")
    assert first.wait(10) == 3
    monkeypatch.setenv("RUN", "two")
    again = first.restart()
    assert again.id != first.id
    assert (again.name, again.group, again.command) == ("flaky", "g2", first.command)
    assert again.wait(10) == 3
    assert again.output() == b"two\n"
    assert svc.store.get(again.id).restarted_from == first.id
    running = svc.start(python_cmd("import signal; signal.pause()"))
    with pytest.raises(JobmagicError, match="is running; only an ended job can be restarted"):
        running.restart()
    running.stop(timeout=1)


def test_restart_failed_restarts_each_failed_job_once(
    svc: Any, ipython_shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The magic's service is the kernel's; use it for both.
    from jobmagic import get_service

    service = get_service()
    ok = service.start("true", group="sweep")
    bad = service.start("exit 1", group="sweep")
    other = service.start("exit 1", group="elsewhere")
    for w in (ok, bad, other):
        w.wait(10)
    restarted = ipython_shell.run_line_magic("job", "restart --failed --group sweep")
    assert [w.command for w in restarted] == ["exit 1"]
    assert service.store.get(restarted[0].id).restarted_from == bad.id
    restarted[0].wait(10)
    # bad was restarted already; its restart failed too, and is restarted in turn.
    again = ipython_shell.run_line_magic("job", "restart --failed --group sweep")
    assert [service.store.get(w.id).restarted_from for w in again] == [restarted[0].id]
    again[0].wait(10)
    one = ipython_shell.run_line_magic("job", f"restart {ok.id}")
    assert one.wait(10) == 0


# -- GPU and named pools ---------------------------------------------------------------------
def test_plan_gives_disjoint_devices_and_keeps_them_for_the_first_that_waits() -> None:
    pools = Pools(gpus=["0", "1", "2"], gpus_in_use={"1"})
    queued = [q(1, gpus=1), q(2, gpus=2), q(3, gpus=1), q(4)]
    admission = plan(queued, running={}, limits={}, states={}, mine={1, 2, 3, 4}, pools=pools)
    assert admission.admitted == [1, 4]
    assert admission.devices == {1: ["0"]}
    # Job 2 needs 2 of the 1 left: it keeps it, so job 3 (needing 1) does not overtake it.
    assert admission.waiting == {2: "waiting for 2 GPUs (1 free)", 3: "waiting for 1 GPU (0 free)"}


def test_gpu_jobs_get_disjoint_devices_and_the_next_gets_a_freed_one(
    svc: Any, tmp_path: Path
) -> None:
    svc.gpus = ["0", "1"]
    fifos = [tmp_path / f"go{i}" for i in range(3)]
    for fifo in fifos:
        os.mkfifo(fifo)
    jobs = [
        svc.start(f'echo "$CUDA_VISIBLE_DEVICES $JOBMAGIC_GPUS"; read line < {fifo}', gpus=1)
        for fifo in fifos
    ]
    assert [w.state for w in jobs] == [JobState.RUNNING, JobState.RUNNING, JobState.QUEUED]
    assert jobs[2].queue_reason == "waiting for 1 GPU (0 free)"

    def release(i: int) -> None:
        with open(fifos[i], "w") as go:
            go.write("go\n")
        assert jobs[i].wait(30) == 0

    release(0)  # the third job gets the first one's device
    release(1)
    release(2)
    shown = [w.output().decode().split() for w in jobs]
    assert sorted(map(tuple, shown[:2])) == [("0", "0"), ("1", "1")]
    assert shown[2] == shown[0]
    assert svc.store.get(jobs[2].id).gpus_held == shown[0][:1]


DIES_HOLDING_A_GPU = """
import json, os, sys
from jobmagic import WorkerService
svc = WorkerService()
w = svc.start("echo ready $CUDA_VISIBLE_DEVICES; exec sleep 1000", gpus=1)
for chunk in w.stream():
    if b"ready" in chunk:
        break
print(json.dumps({"id": w.id, "pid": w.pid}), flush=True)
os._exit(0)
"""


def test_a_killed_kernels_job_gives_its_device_back_when_it_ends(
    svc: Any, jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBMAGIC_GPUS", "7")
    holder = run_dying_kernel(DIES_HOLDING_A_GPU, jobmagic_home)
    assert svc.store.get(holder["id"]).gpus_held == ["7"]
    waiting = svc.start("echo got $CUDA_VISIBLE_DEVICES", gpus=1)
    assert waiting.queue_reason == "waiting for 1 GPU (0 free)"
    # The orphan's program ends (nobody records it): the device comes back at once.
    os.killpg(holder["pid"], 9)
    assert waiting.wait(30) == 0
    assert waiting.output() == b"got 7\n"
    assert svc.store.get(holder["id"]).state.is_finished


def test_a_named_pool_runs_as_many_as_it_has(svc: Any) -> None:
    svc.resources = {"license": 1}
    first = svc.start("sleep 0.2", resources={"license": 1})
    second = svc.start("true", resources={"license": 1})
    assert second.queue_reason == "waiting for 1 license (0 free)"
    assert second.wait(30) == 0
    assert second.started_at >= first.ended_at


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ({}, {"gpus": 1}, "--gpus 1: there is no GPU pool; name its devices with JOBMAGIC_GPUS"),
        ({"gpus": ["0"]}, {"gpus": 2}, r"asks for 2 GPUs; the pool has 1 \(0\)"),
        ({}, {"resources": {"license": 1}}, "no resource pool 'license'"),
        ({"resources": {"license": 1}}, {"resources": {"license": 2}}, "asks for 2 license"),
        ({}, {"gpus": -1}, "gpus must be a whole number >= 0"),
        ({}, {"resources": {"license": 0}}, "resource license needs a whole number >= 1"),
    ],
)
def test_impossible_pool_requests_are_refused_at_submission(
    svc: Any,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, Any],
    options: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.delenv("JOBMAGIC_GPUS", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi to discover devices with
    for name, value in setup.items():
        setattr(svc, name, value)
    with pytest.raises(ValueError, match=message):
        svc.start("true", **options)
    assert svc.store.list() == []


def test_the_magic_takes_gpus_and_resources_from_its_configuration(
    ipython_shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBMAGIC_GPUS", raising=False)
    magics = ipython_shell.magics_manager.registry["JobMagics"]
    magics.gpus = ["3"]
    magics.resources = {"license": 1}
    w = ipython_shell.run_line_magic(
        "job", "start --gpus 1 --resource license=1 echo $CUDA_VISIBLE_DEVICES"
    )
    assert w.wait(10) == 0
    assert w.output() == b"3\n"
    assert (w.spec.gpus, dict(w.spec.resources)) == (1, {"license": 1})


def test_the_command_line_takes_gpus(jobmagic_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMAGIC_GPUS", "5")
    job_id = jobmagic("start", "--gpus", "1", "--", "echo $CUDA_VISIBLE_DEVICES").stdout.strip()
    assert jobmagic("wait", job_id).returncode == 0
    assert jobmagic("logs", job_id).stdout == "5\n"
    status = json.loads(jobmagic("status", job_id, "--json").stdout)
    assert (status["gpus"], status["devices"]) == (1, ["5"])
    refused = jobmagic("start", "--gpus", "2", "--", "true")
    assert refused.returncode == 2
    assert refused.stderr == "jobmagic start: asks for 2 GPUs; the pool has 1 (5)\n"


DIES_HOLDING_A_SLOT = """
import json, os, sys
from jobmagic import WorkerService
svc = WorkerService()
svc.set_group("held", 1)
w = svc.start("echo ready; exec sleep 1000", group="held")
for chunk in w.stream():
    if b"ready" in chunk:
        break
print(json.dumps({"id": w.id, "pid": w.pid}), flush=True)
os._exit(0)
"""


def test_a_killed_kernels_job_frees_its_group_slot_when_it_ends(
    svc: Any, jobmagic_home: Path
) -> None:
    holder = run_dying_kernel(DIES_HOLDING_A_SLOT, jobmagic_home)
    waiting = svc.start("echo next", group="held")
    assert waiting.queue_reason == "1st in group held (1/1 running)"
    os.killpg(holder["pid"], 9)  # the orphan ends; nobody records it but us
    assert waiting.wait(30) == 0
    assert svc.store.get(holder["id"]).state.is_finished
