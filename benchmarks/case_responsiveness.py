"""Case 5, responsiveness: does a kernel running noisy jobs still answer quickly?

Round-trip time of executing ``1+1`` in a real kernel (jupyter_client, over TCP) while
8 jobs write text at full speed with the panel open (every job's output shown), against
the same RTT while the same 8 writers run as plain shell redirects started outside the
kernel (the reference: on a 2-core machine 8 writers saturate the CPU, and that part of
the slowdown is not jobmagic's).
Goal: ratio of medians <= 1.2.

The phases (jobmagic, the reference, the reference under ``nice -n 10``) run in several
short rounds, each round in another order (every kind first as often as the others),
with an idle phase at the start of each: the machine's own load drifts over a run, and
one long phase of each would measure the drift. The logs and the reference files are on
tmpfs when the run has one (``ctx.ram``), so that every writer is busy on the CPU all the
time, as a writer to a fast disk is: on this machine's disk, how soon the page cache's
dirty limit puts the writers to sleep (freeing the CPU) depends on what the disk still
has to write, and the same code measured from 0.3 to 1.9 times the reference from one
run to the next. Information rows: each loaded RTT against idle, and the kernel
process's CPU time per second while sampling, jobmagic against the reference (what the
kernel itself does for the shown outputs, counted rather than timed).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.harness import Context, fresh_dir, panel_missing
from benchmarks.kernel import Kernel
from benchmarks.report import Goal, Row, median

WRITERS = 8
ROUNDS = 6  # rounds of every phase, each in another order: a multiple of len(PHASES)
SAMPLES = 20  # per phase, at most
WINDOW = 3.0  # seconds a phase may take: the writers must still be writing at its end
GAP = 0.01  # seconds between samples
PHASES = ("jobmagic", "", "nice -n 10 ")  # the jobs with the panel, then the references
WRITER = "yes 'jobmagic benchmark line: the quick brown fox jumps over the lazy dog' | head -c 1G"

KERNEL_SETUP = """
import os
from IPython.display import display
from jobmagic import get_service
from jobmagic.errors import JobNotFound
from benchmarks.harness import open_panel

_service = get_service()
_panel = open_panel(_service)
display(_panel)
_service.start("true").wait()

def _bench_cleanup():
    workers = [w for w in _service.list() if w.command != "true"]
    still_running = sum(1 for w in workers if not w.state.is_finished)
    _service.stop_all()
    for w in workers:
        path = w.log_path
        try:
            _service.remove(w.id)
        except JobNotFound:  # already pruned by the store's retention (max_log_bytes)
            pass
        if os.path.exists(path):
            os.unlink(path)
    return still_running
"""


def _samples(kernel: Kernel) -> list[float]:
    pause = threading.Event()
    rtts: list[float] = []
    deadline = time.monotonic() + WINDOW
    while len(rtts) < SAMPLES and time.monotonic() < deadline:
        rtts.append(kernel.execute("1+1")[1] * 1000)
        pause.wait(GAP)  # a frontend's think time; the benchmark's own timed wait
    return rtts


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Phase:
    """What one kind of phase measured over all rounds: RTTs, kernel CPU, writers left."""

    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.cpu = 0.0  # kernel CPU seconds while sampling
        self.seconds = 0.0  # time spent sampling
        self.still_running: list[int] = []

    def sample(self, kernel: Kernel, pid: int) -> None:
        cpu, start = _cpu_seconds(pid), time.monotonic()
        self.rtts += _samples(kernel)
        self.seconds += time.monotonic() - start
        self.cpu += _cpu_seconds(pid) - cpu


def _jobmagic_load(kernel: Kernel, pid: int, phase: _Phase) -> float:
    """One phase of the 8 jobs with their outputs shown; returns the starting cell's RTT."""
    start_cell = f"for _ in range({WRITERS}): _panel.show_output(_service.start({WRITER!r}).id)"
    started = kernel.execute(start_cell)[1]
    phase.sample(kernel, pid)
    phase.still_running.append(int(str(kernel.evaluate("_left = _bench_cleanup()", "_left"))))
    return started


def _reference_load(kernel: Kernel, pid: int, phase: _Phase, workdir: str, prefix: str) -> None:
    procs = [
        subprocess.Popen(
            f"{prefix}sh -c {shlex.quote(f'{WRITER} > {workdir}/ref{i}.txt')}",
            shell=True,
            start_new_session=True,
        )
        for i in range(WRITERS)
    ]
    try:
        phase.sample(kernel, pid)
        phase.still_running.append(sum(1 for p in procs if p.poll() is None))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for i in range(WRITERS):
            os.unlink(f"{workdir}/ref{i}.txt")


def run(ctx: Context) -> list[Row]:
    name = f"responsiveness: `1+1` RTT, {WRITERS} writers + panel"
    rounds = ctx.repeats(ROUNDS)
    missing = panel_missing()
    if missing:
        return [Row(name, missing=missing, goal=Goal("ratio", 1.2))]
    idle: list[float] = []
    starts: list[float] = []
    phases = {kind: _Phase() for kind in PHASES}
    with (
        fresh_dir(ctx, "responsiveness-", in_ram=True) as workdir,
        Kernel(ctx, workdir / "home") as kernel,
    ):
        kernel.execute(KERNEL_SETUP)
        pid = int(str(kernel.evaluate("import os", "os.getpid()")))
        _samples(kernel)  # warm-up
        for round_ in range(rounds):
            idle += _samples(kernel)
            for kind in PHASES[round_ % len(PHASES) :] + PHASES[: round_ % len(PHASES)]:
                if kind == "jobmagic":
                    starts.append(_jobmagic_load(kernel, pid, phases[kind]))
                else:
                    _reference_load(kernel, pid, phases[kind], str(workdir), kind)
    jobmagic, plain = phases["jobmagic"], phases[""]
    left = ", ".join(f"{k.strip() or 'plain'} {min(v.still_running)}" for k, v in phases.items())
    note = (
        f"{rounds} rounds on {'tmpfs' if ctx.ram else 'disk'}; RTT samples: idle {len(idle)}, "
        f"loaded {len(jobmagic.rtts)}, reference {len(plain.rtts)}; writers (of {WRITERS}) "
        f"still running when a phase's sampling ended, at least: {left}"
    )
    reference = f"{WRITERS} shell-redirect writers"
    rows = [
        Row(
            name,
            median(jobmagic.rtts),
            "ms",
            median(plain.rtts),
            reference,
            Goal("ratio", 1.2),
            rounds,
            note=note,
        ),
        Row(
            f"{name}, against idle", median(jobmagic.rtts), "ms", median(idle), "idle", None, rounds
        ),
    ]
    rows += [
        Row(
            f"responsiveness: `1+1` RTT, {WRITERS} {prefix}shell-redirect writers (reference)",
            median(phases[prefix].rtts),
            "ms",
            median(idle),
            "idle",
            repeats=rounds,
        )
        for prefix in PHASES[1:]
    ]
    rows += [
        Row(
            f"responsiveness: kernel CPU while sampling, {WRITERS} writers + panel (s per s)",
            jobmagic.cpu / jobmagic.seconds,
            "",
            plain.cpu / plain.seconds,
            reference,
            repeats=rounds,
        ),
        Row(
            f"responsiveness: the cell starting the {WRITERS} writers (panel open)",
            median(starts),
            "s",
            repeats=rounds,
        ),
    ]
    return rows
