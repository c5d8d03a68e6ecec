"""Case 6, frontend traffic: what a 100 MB job costs the browser connection.

A job writes 100 MB of text lines, paced over ~5 s (1 MB every 50 ms) so the panel's
throttle is what is measured, with the panel open in a real kernel (the job's output
shown in it). We count every
iopub message the kernel publishes from the job's start until 1 s after it ended,
except the kernel's replies to our own two requests (status, execute_input/result).
Goals: at most 2 MB in total and at most 20 messages in any 1 s window.
Baseline: the same job run in the foreground with ``!cmd``, what users do today; it
cannot keep up, so it is interrupted after 10 s and compared by rate.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections import Counter

from benchmarks.harness import Context, fresh_dir, panel_missing
from benchmarks.kernel import REQUEST_ECHO, IopubMessage, Kernel
from benchmarks.report import Goal, Row, median

MB = 1_000_000
SETTLE = 1.0  # seconds counted after the job ended
BANG_WAIT = 10.0  # seconds `!cmd` may take before it is interrupted
# A file, not ``python -c``: ``!cmd`` takes one line only.
WRITER_SCRIPT = """
import os, time
start = time.monotonic()
for chunk in range(100):
    lines = b"".join(b"step %06d.%05d loss 0.1234 accuracy 0.9876 lr 3e-4 .........\\n" % (chunk, i)
                     for i in range(15625))
    os.write(1, lines)  # 15625 lines of 64 bytes: 1 MB
    delay = start + (chunk + 1) * 0.05 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""

KERNEL_SETUP = """
from IPython.display import display
from jobmagic import get_service
from benchmarks.harness import open_panel

_service = get_service()
_panel = open_panel(_service)
display(_panel)
_service.start("true").wait()
"""


def _window(
    kernel: Kernel, start_code: str, wait_code: str, interrupt_after: float | None = None
) -> tuple[list[IopubMessage], float, bool]:
    """Messages published while the job ran (plus ``SETTLE``), the window, interrupted?"""
    kernel.iopub.clear()
    start = time.monotonic()
    kernel.execute(start_code)
    content, _ = kernel.execute(wait_code, timeout=120, interrupt_after=interrupt_after)
    threading.Event().wait(SETTLE)
    messages = [m for m in kernel.iopub.since(start) if m.msg_type not in REQUEST_ECHO]
    return messages, time.monotonic() - start, content["interrupted"]


def _peak_window(messages: list[IopubMessage]) -> list[IopubMessage]:
    """The busiest 1 s of ``messages`` (windows start at a message)."""
    windows = ([m for m in messages if s.at <= m.at < s.at + 1.0] for s in messages)
    return max(windows, key=len, default=[])


def _peak_per_second(messages: list[IopubMessage]) -> int:
    return len(_peak_window(messages))


def run(ctx: Context) -> list[Row]:
    name = "traffic 100 MB job + panel"
    repeats = ctx.repeats(2)
    goals = {"bytes": Goal("value", 2 * MB), "msgs": Goal("value", 20)}
    missing = panel_missing()
    if missing:
        return [
            Row(f"{name}: bytes in total", missing=missing, goal=goals["bytes"]),
            Row(f"{name}: peak msgs/s", missing=missing, goal=goals["msgs"]),
        ]
    ours = []
    with fresh_dir(ctx, "traffic-") as workdir, Kernel(ctx, workdir / "home") as kernel:
        script = workdir / "writer.py"
        script.write_text(WRITER_SCRIPT)
        writer = shlex.join([sys.executable, str(script)])
        kernel.execute(KERNEL_SETUP)
        # ``!cmd`` pushes the output through a pty and pexpect; it cannot keep up with
        # 20 MB/s, so it gets a bounded window and is then interrupted like a user would.
        bang, bang_seconds, bang_cut = _window(
            kernel, "pass", f"!{writer}", interrupt_after=BANG_WAIT
        )
        for _ in range(repeats):
            run_ = _window(
                kernel,
                f"_w = _service.start({writer!r})\n_panel.show_output(_w.id)",
                "_code = _w.wait()",
            )
            if kernel.evaluate("", "[_code, _w.log_path.stat().st_size]") != [0, 100 * MB]:
                raise RuntimeError("the 100 MB job did not write 100 MB")
            ours.append(run_)
    bang_bytes = sum(m.nbytes for m in bang)
    busiest = Counter(m.msg_type for m in _peak_window(ours[-1][0]))
    peak = ", ".join(f"{n} {kind}" for kind, n in busiest.most_common())
    kinds = sorted({m.msg_type for messages, _, _ in ours for m in messages})
    cut = f"interrupted after {BANG_WAIT:g} s" if bang_cut else f"done in {bang_seconds:.1f} s"
    return [
        Row(
            f"{name}: bytes in total",
            median([sum(m.nbytes for m in r) for r, _, _ in ours]),
            "B",
            goal=goals["bytes"],
            repeats=repeats,
            note=f"message types: {', '.join(kinds) or 'none'}; `!cmd` sent "
            f"{bang_bytes / MB:.1f} MB ({cut})",
        ),
        Row(
            f"{name}: bytes/s",
            median([sum(m.nbytes for m in r) / s for r, s, _ in ours]),
            "B",
            bang_bytes / bang_seconds,
            "`!cmd`",
            repeats=repeats,
        ),
        Row(
            f"{name}: peak msgs/s",
            median([_peak_per_second(r) for r, _, _ in ours]),
            "msgs",
            _peak_per_second(bang),
            "`!cmd`",
            goals["msgs"],
            repeats,
            note=f"messages in total: {median([len(r) for r, _, _ in ours]):.0f} "
            f"(`!cmd`: {len(bang)}); busiest second of the last run: {peak}",
        ),
    ]
