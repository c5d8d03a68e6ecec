"""The panel's traffic to the frontend, measured on a real kernel's iopub channel.

A job writes 100 MB as fast as it can while the panel shows its output: the kernel must
send at most 2 MB of comm traffic in total and at most 20 comm messages per second, on
average and in any one-second window. A new job's row, from its creation to its end,
costs fewer than those 20 messages. A click on a row's Pause button, sent as a frontend
sends it, holds the job's processes still, and a second one (Resume) lets them go on.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_panel import wait_members

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

MAX_BYTES = 2_000_000
MAX_MESSAGES_PER_SECOND = 20
WRITER = "head -c 100M /dev/urandom | base64; echo END-MARKER"

SETUP = """
from jobmagic import get_service
from jobmagic.notebook.panel import JobPanel

svc = get_service()
panel = JobPanel(svc)
display(panel)
"""

# Starts the writer with its output shown, waits for it to end and for the panel to show
# its last line (the handler's final flush), then reports what it saw.
RUN = f"""
import threading, time

job = svc.start({WRITER!r})
panel.show_output(job.id)
job.wait(300)
row = panel.rows[job.id]
shown = threading.Event()

def _check(_change=None):
    if "END-MARKER" in row.output.value:
        shown.set()

row.output.observe(_check, names="value")
_check()
print("shown" if shown.wait(60) else "not shown", job.state.value, job.log_path.stat().st_size)
row.output.unobserve(_check, names="value")
"""


def run_collecting_all(
    kernel: Any, code: str, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Execute ``code`` and return its reply and every iopub message until it is idle.

    Unlike ``kernel.execute`` this keeps messages whatever their parent header: comm
    messages sent from the panel's threads are counted even if they carry another one.
    """
    msg_id = kernel.kc.execute(code, allow_stdin=False)
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise TimeoutError(f"kernel did not finish {code!r} in time") from None
        parent = msg["parent_header"].get("msg_id")
        if parent == msg_id and msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        messages.append(msg)
    while True:
        reply = kernel.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.001))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], messages


def message_bytes(msg: dict[str, Any]) -> int:
    """Size of a message's content serialized as JSON, plus its binary buffers."""
    content = json.dumps(msg["content"], default=str).encode()
    return len(content) + sum(len(b) for b in msg.get("buffers") or ())


@pytest.mark.timeout(300)
def test_panel_traffic_stays_within_budget_while_a_job_writes_100_mb(kernel: Any) -> None:
    reply, messages = kernel.execute(SETUP, timeout=60)
    assert reply["status"] == "ok", reply
    assert any(m["msg_type"] == "display_data" for m in messages)

    # Drain what the panel sent after the setup cell (its thread's first update).
    reply, _ = run_collecting_all(kernel, "pass", timeout=30)
    assert reply["status"] == "ok"

    started = time.monotonic()
    reply, messages = run_collecting_all(kernel, RUN, timeout=280)
    window = time.monotonic() - started
    assert reply["status"] == "ok", reply
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    shown, state, size = printed.split()
    assert shown == "shown", printed
    assert state == "succeeded"
    assert int(size) > 100 * 2**20 * 4 // 3  # 100 MiB, base64-encoded

    comm = [m for m in messages if m["msg_type"] in ("comm_open", "comm_msg")]
    comm_msgs = [m for m in messages if m["msg_type"] == "comm_msg"]
    total = sum(message_bytes(m) for m in comm)
    sent_at = sorted(m["header"]["date"].timestamp() for m in comm_msgs)
    span = max(sent_at[-1] - sent_at[0], 1.0)
    busiest = max(sum(1 for t in sent_at if start <= t < start + 1.0) for start in sent_at)
    print(  # noqa: T201 - the measured figures are this test's report (-s shows them)
        f"\npanel traffic: {total} bytes in {len(comm)} comm messages "
        f"({len(comm_msgs)} comm_msg over {span:.1f} s, busiest second {busiest}); "
        f"cell took {window:.1f} s"
    )
    assert len(comm_msgs) >= 3  # the output was updated live, not only at the end
    assert total <= MAX_BYTES
    assert len(comm_msgs) / span <= MAX_MESSAGES_PER_SECOND
    assert busiest <= MAX_MESSAGES_PER_SECOND

    reply, _ = kernel.execute("panel.close(); svc.shutdown()", timeout=60)
    assert reply["status"] == "ok", reply


# Waits, through widget observers (called once the change was sent), until ``predicate()``
# holds; prints "ok" or "timeout".
WAIT_FOR = """
import threading

def wait_for(widget, name, predicate, timeout=30):
    hit = threading.Event()

    def check(_change=None):
        if predicate():
            hit.set()

    widget.observe(check, names=name)
    try:
        check()
        return hit.wait(timeout)
    finally:
        widget.unobserve(check, names=name)
"""

# Starts the job (it blocks on a FIFO) and waits until its row shows it running.
START_ROW = """
job = svc.start({command!r})
ok = wait_for(panel.rows_box, "children", lambda: job.id in panel.rows)
row = panel.rows[job.id]
ok = ok and wait_for(row.summary, "value", lambda: 'data-state="running"' in row.summary.value)
print("ok" if ok else "timeout")
"""

# Waits until the ended job shows in its row and in the panel's header.
FINISH_ROW = """
job.wait(30)
ok = wait_for(row.summary, "value", lambda: 'data-state="succeeded"' in row.summary.value)
ok = ok and wait_for(panel.stop_all_button, "disabled", lambda: panel.stop_all_button.disabled)
# An ended job's row offers no Stop (and Re-run and Remove instead).
print("ok" if ok else "timeout", job.state.value, row.stop_button in row.widget.children)
"""

QUIET = 1.5  # seconds without any iopub message after which the panel is taken as done


def collect_until_quiet(kernel: Any, quiet: float) -> list[dict[str, Any]]:
    """Every iopub message until none came for ``quiet`` seconds (late widget updates)."""
    messages = []
    while True:
        try:
            messages.append(kernel.kc.get_iopub_msg(timeout=quiet))
        except queue.Empty:
            return messages


def describe(comm: list[dict[str, Any]]) -> list[str]:
    """One line per comm message: what it opened or which traits it sent."""
    lines = []
    for m in comm:
        data = m["content"].get("data") or {}
        state = data.get("state") or {}
        if m["msg_type"] == "comm_open":
            lines.append(f"open {state.get('_model_name')}")
        else:
            lines.append(f"update {sorted(state)}")
    return lines


def printed(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


@pytest.mark.timeout(120)
def test_a_new_row_costs_at_most_20_comm_messages_from_start_to_end(
    kernel: Any, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    # Blocks until the test writes the FIFO, then exits 0.
    code = "import sys; open(sys.argv[1]).read()"
    command = shlex.join([sys.executable, "-c", code, str(fifo)])
    reply, _ = kernel.execute(SETUP + WAIT_FOR, timeout=60)
    assert reply["status"] == "ok", reply
    reply, _ = run_collecting_all(kernel, "pass", timeout=30)
    assert reply["status"] == "ok", reply
    assert collect_until_quiet(kernel, QUIET) == []  # the empty panel sends nothing

    reply, messages = run_collecting_all(kernel, START_ROW.format(command=command), 60)
    assert reply["status"] == "ok", reply
    assert printed(messages) == "ok\n"
    with fifo.open("w") as f:  # opens once the job has opened it: then it exits 0
        f.write("go")
    reply, finishing = run_collecting_all(kernel, FINISH_ROW, timeout=60)
    assert reply["status"] == "ok", reply
    assert printed(finishing) == "ok succeeded False\n"
    messages += finishing + collect_until_quiet(kernel, QUIET)

    comm = [m for m in messages if m["msg_type"] in ("comm_open", "comm_msg")]
    kinds = Counter(m["msg_type"] for m in comm)
    print(f"\none row, start to end: {dict(kinds)}")  # noqa: T201 - the figure (-s shows it)
    assert kinds["comm_open"] >= 1  # the row was created in this window
    assert len(comm) <= MAX_MESSAGES_PER_SECOND, "\n".join(describe(comm))


# The ids of the row's widgets the frontend would click and read, and the job's pid.
# The Pause button comes with the runtime tick once the job has run a second.
ROW_IDS = """
ok = wait_for(row.widget, "children", lambda: row.pause_button is not None)
print(row.pause_button.model_id if ok else "timeout", row.summary.model_id, job.pid)
"""


def click(kernel: Any, model_id: str) -> None:
    """Click a Button the way a frontend does: a "click" event on its comm."""
    content = {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}}
    kernel.kc.shell_channel.send(kernel.kc.session.msg("comm_msg", content))


def wait_updates(kernel: Any, wanted: dict[str, Callable[[dict[str, Any]], bool]]) -> None:
    """Read iopub until, for each comm id of ``wanted``, an update satisfies its check."""
    deadline = time.monotonic() + 30
    left = dict(wanted)
    while left:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise TimeoutError(f"no update of {sorted(left)} came") from None
        if msg["msg_type"] != "comm_msg":
            continue
        comm_id = msg["content"]["comm_id"]
        state = (msg["content"].get("data") or {}).get("state") or {}
        check = left.get(comm_id)
        if check is not None and check(state):
            del left[comm_id]


@pytest.mark.timeout(120)
def test_a_click_on_pause_from_the_frontend_pauses_the_job_and_resume_lets_it_go_on(
    kernel: Any, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    # Blocks until the test writes the FIFO, then exits 0.
    code = "import sys; open(sys.argv[1]).read()"
    command = shlex.join([sys.executable, "-c", code, str(fifo)])
    reply, _ = kernel.execute(SETUP + WAIT_FOR, timeout=60)
    assert reply["status"] == "ok", reply
    reply, messages = kernel.execute(START_ROW.format(command=command), timeout=60)
    assert reply["status"] == "ok", reply
    assert printed(messages) == "ok\n"
    reply, messages = kernel.execute(ROW_IDS, timeout=30)
    assert reply["status"] == "ok", reply
    pause_id, summary_id, pid = printed(messages).split()

    click(kernel, pause_id)
    wait_updates(
        kernel,
        {
            pause_id: lambda state: state.get("description") == "Resume",
            summary_id: lambda state: 'data-state="paused"' in state.get("value", ""),
        },
    )
    assert set(wait_members(int(pid), stopped=True).values()) == {"T"}
    reply, messages = kernel.execute("print(job.state.value, row.pause_button.disabled)", 30)
    assert reply["status"] == "ok", reply
    assert printed(messages) == "paused False\n"

    click(kernel, pause_id)
    wait_updates(
        kernel,
        {
            pause_id: lambda state: state.get("description") == "Pause",
            summary_id: lambda state: 'data-state="running"' in state.get("value", ""),
        },
    )
    wait_members(int(pid), stopped=False)
    with fifo.open("w") as f:  # opens once the job has opened it: then it exits 0
        f.write("go")
    reply, finishing = kernel.execute(FINISH_ROW, timeout=60)
    assert reply["status"] == "ok", reply
    assert printed(finishing) == "ok succeeded False\n"
    reply, _ = kernel.execute("panel.close(); svc.shutdown()", timeout=60)
    assert reply["status"] == "ok", reply
