"""Case 7, alternatives: what users would pick instead, run in a real IPython.

Each measurement runs in a fresh interpreter hosting an ``InteractiveShell`` (the
same ``system()`` and ``%%bash`` code a kernel runs), made a child subreaper so that
background jobs the alternatives orphan can still be waited for and reaped.

- A 10 MB-output job (``head -c 10000000 /dev/zero``) under jobmagic, under
  ``%%bash --bg`` (its stdout pipe is read by nobody until the script ends, so the job
  blocks once the pipe is full: we wait a bounded time, then ``%killbgscripts``) and
  under ``!cmd > file &`` (IPython rejects a trailing ``&``; the spelling it accepts,
  ``!(cmd > file 2>&1 &)``, is measured too).
- The spawn case (500 x ``true``, start then wait) under ``%%bash --bg``, against
  jobmagic in the same kind of process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from benchmarks.harness import (
    Context,
    become_subreaper,
    children,
    descendants,
    engine_missing,
    run_child,
    wait_exit,
    written_bytes,
)
from benchmarks.report import Goal, Row, median

OUTPUT = 10_000_000
JOB = f"head -c {OUTPUT} /dev/zero"
BOUND = 5.0  # seconds we wait for a job that may never finish (jobmagic needs ~0.05 s)
SPAWNS = 500


def _shell():
    from IPython.core.interactiveshell import InteractiveShell

    become_subreaper()
    return InteractiveShell.instance()


def _reap_adopted(deadline: float) -> list[int]:
    """Wait (until ``deadline``) for every adopted orphan; return their wait statuses."""
    statuses = []
    while pids := children():
        for pid in pids:
            if not wait_exit(pid, max(0.0, deadline - time.monotonic())):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # asyncio's watcher may reap first
                statuses.append(os.waitpid(pid, 0)[1])
    return statuses


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"


def measure_jobmagic_10mb() -> dict:
    shell = _shell()
    shell.run_cell("from jobmagic import get_service\nget_service().start('true').wait()")
    start = time.perf_counter()
    shell.run_cell(f"_w = get_service().start({JOB!r})")
    returned = time.perf_counter() - start
    code = shell.user_ns["_w"].wait(timeout=BOUND)
    done = time.perf_counter() - start
    size = shell.user_ns["_w"].log_path.stat().st_size
    shell.run_cell("get_service().shutdown()")
    return {"returned": returned, "done": done, "ok": code == 0 and size == OUTPUT}


def measure_bash_bg_10mb() -> dict:
    shell = _shell()
    start = time.perf_counter()
    shell.run_cell(f"%%bash --bg --proc _p\n{JOB}\n")
    returned = time.perf_counter() - start
    bash = shell.user_ns["_p"].pid
    finished = wait_exit(bash, BOUND)
    result = {"returned": returned, "finished": finished, "done": time.perf_counter() - start}
    writers = descendants(bash)
    result["written"] = sum(written_bytes(pid) for pid in writers)
    shell.run_cell("%killbgscripts")
    wait_exit(bash, BOUND)
    # %killbgscripts signals bash only; its child was adopted by us if it survived.
    result["orphans"] = sum(1 for pid in writers if pid in children())
    _reap_adopted(time.monotonic())  # kill what is left now
    return result


def measure_bang_10mb(path: str) -> dict:
    shell = _shell()
    literal = shell.run_cell(f"!{JOB} > {path} &")
    start = time.perf_counter()
    shell.run_cell(f"!({JOB} > {path} 2>&1 &)")
    returned = time.perf_counter() - start
    statuses = _reap_adopted(time.monotonic() + BOUND)
    size = os.path.getsize(path) if os.path.exists(path) else None
    return {
        "literal_error": repr(literal.error_in_exec),
        "returned": returned,
        "done": time.perf_counter() - start,
        "statuses": [_describe(s) for s in statuses],
        "size": size,
    }


def measure_spawn(kind: str, jobs: int) -> dict:
    shell = _shell()
    if kind == "jobmagic":
        from jobmagic import get_service

        service = get_service()
        service.start("true").wait()
        start = time.perf_counter()
        for _ in range(jobs):
            service.start("true").wait()
        seconds = time.perf_counter() - start
        service.shutdown()
        return {"seconds": seconds}
    shell.run_cell_magic("bash", "--bg --proc _p", "true")
    start = time.perf_counter()
    for _ in range(jobs):
        shell.run_cell_magic("bash", "--bg --proc _p", "true")
        if not wait_exit(shell.user_ns["_p"].pid, BOUND):
            raise RuntimeError("`true` under %%bash --bg did not end")
    return {"seconds": time.perf_counter() - start}


def run(ctx: Context) -> list[Row]:
    repeats = ctx.repeats(3)
    missing = engine_missing()
    rows: list[Row] = []
    name = "alternatives 10 MB job: jobmagic, start to exit"
    if missing:
        rows.append(Row(name, missing=missing))
    else:
        ours = [run_child(ctx, f"{__name__}:measure_jobmagic_10mb") for _ in range(repeats)]
        failed = sum(1 for r in ours if not r["ok"])
        rows.append(
            Row(
                name,
                median([r["done"] for r in ours]),
                "s",
                repeats=repeats,
                text="FAILED" if failed else "",
                note=f"cell returns in {median([r['returned'] for r in ours]):.3f} s",
            )
        )

    bash = run_child(ctx, f"{__name__}:measure_bash_bg_10mb")
    if bash["finished"]:
        text = f"done in {bash['done']:.2f} s"
    else:
        text = (
            f"blocked: {bash['written'] / 1000:.0f} kB of {OUTPUT / 1e6:g} MB written, "
            f"not done after {BOUND:g} s"
        )
    rows.append(
        Row(
            "alternatives 10 MB job: %%bash --bg",
            text=text,
            note=f"after %killbgscripts {bash['orphans']} writer(s) still alive, "
            "orphaned (it signals bash only)",
        )
    )

    bangs = []
    for i in range(repeats):
        path = ctx.tmp / f"bang{i}.out"
        bangs.append(run_child(ctx, f"{__name__}:measure_bang_10mb", path=str(path)))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    rows.append(
        Row(
            "alternatives 10 MB job: `!cmd > file &`", text=f"rejected: {bangs[0]['literal_error']}"
        )
    )
    complete = sum(1 for b in bangs if b["size"] == OUTPUT)
    fates = {s for b in bangs for s in b["statuses"]}
    fates |= {"never opened the file" for b in bangs if b["size"] is None}
    rows.append(
        Row(
            "alternatives 10 MB job: `!(cmd > file 2>&1 &)`",
            text=f"output complete in {complete}/{repeats} runs",
            repeats=repeats,
            note=f"cell returns in {median([b['returned'] for b in bangs]):.2f} s; "
            f"job: {', '.join(sorted(fates)) or 'exit 0'}",
        )
    )

    # The performance issue's goal: jobmagic spawns faster than %%bash --bg, in the same run.
    name = f"alternatives spawn {SPAWNS} x `true`: jobmagic vs %%bash --bg"
    goal = Goal("ratio", 1.0)
    if missing:
        rows.append(Row(name, missing=missing, goal=goal))
        return rows
    ours, bash = [], []
    for _ in range(ctx.repeats(3)):  # alternating: this machine swings 2x within minutes
        ours.append(
            run_child(ctx, f"{__name__}:measure_spawn", kind="jobmagic", jobs=SPAWNS)["seconds"]
        )
        bash.append(
            run_child(ctx, f"{__name__}:measure_spawn", kind="bash", jobs=SPAWNS)["seconds"]
        )
    rows.append(Row(name, median(ours), "s", median(bash), "%%bash --bg", goal, len(ours)))
    return rows
