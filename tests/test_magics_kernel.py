"""The %job magics through a real IPython kernel (fixture ``kernel``): what a notebook sees.

Interrupt tests handshake: the cell prints a line right before it blocks, the test waits
for that line on iopub, then interrupts the kernel.
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import python_cmd

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


def ok(kernel: Any, code: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Run ``code``; fail on an error; return its iopub messages."""
    reply, messages = kernel.execute(code, timeout=timeout)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert reply["status"] == "ok", (reply, errors)
    assert not errors, errors
    return messages


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def result_data(messages: list[dict[str, Any]]) -> dict[str, Any]:
    results = [m["content"]["data"] for m in messages if m["msg_type"] == "execute_result"]
    assert len(results) == 1, messages
    data: dict[str, Any] = results[0]
    return data


def value(kernel: Any, expression: str) -> str:
    """The text/plain repr of ``expression`` in the kernel."""
    text: str = result_data(ok(kernel, expression))["text/plain"]
    return text


def run_until_printed(kernel: Any, code: str, text: str, timeout: float = 30) -> str:
    """Start executing ``code``; return its msg_id once its stdout has shown ``text``."""
    msg_id: str = kernel.kc.execute(code, allow_stdin=False)
    deadline = time.monotonic() + timeout
    seen = ""
    while text not in seen:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            pytest.fail(f"{code!r} never printed {text!r}; printed {seen!r}")
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
    return msg_id


def finish(kernel: Any, msg_id: str, timeout: float = 30) -> tuple[dict[str, Any], str]:
    """Collect the rest of an execution: its reply content and the rest of its stdout."""
    deadline = time.monotonic() + timeout
    text = ""
    while True:
        msg = kernel.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.001))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:
        reply = kernel.kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.001))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], text


def test_list_shows_html_and_text(kernel: Any) -> None:
    ok(kernel, "j = %job start --name hello echo hi\nj.wait()")
    data = result_data(ok(kernel, "%job list"))
    assert data["text/html"].startswith('<table class="jobmagic-jobs">')
    assert "<td style='text-align:left'>hello</td>" in data["text/html"]
    lines = data["text/plain"].splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "EXIT", "RUNTIME", "COMMAND"]
    assert lines[1].split()[1:4] == ["hello", "succeeded", "0"]


def test_start_shows_a_summary_and_returns_the_worker(kernel: Any) -> None:
    messages = ok(kernel, f"%job start --name sleepy {python_cmd(SLEEPER)}")
    data = result_data(messages)
    assert data["text/plain"].startswith('job 1 "sleepy" running - ')
    assert '<span class="jobmagic-id">1</span> "sleepy"' in data["text/html"]
    ok(kernel, "w = _\n%job stop sleepy")
    assert value(kernel, "w.state.value") == "'stopped'"


def test_usage_error_is_one_line_without_traceback(kernel: Any) -> None:
    reply, messages = kernel.execute("%job start --cwd /no/such/dir ls")
    assert reply["status"] == "error"
    assert reply["ename"] == "UsageError"
    # IPython shows a UsageError as one line on stderr, with no traceback.
    assert [m["msg_type"] for m in messages if m["msg_type"] != "status"] == [
        "execute_input",
        "stream",
    ]
    stream = messages[-1]["content"]
    assert stream["name"] == "stderr"
    assert stream["text"] == "UsageError: %job start: --cwd: no such directory: /no/such/dir\n"


def test_logs_follow_streams_until_the_job_ends(kernel: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    ok(kernel, f"j = %job start printf 'first\\n'; read x < {fifo}; printf 'second\\n'")
    msg_id = run_until_printed(kernel, "%job logs {j.id} --follow", "first\n")
    fd = os.open(fifo, os.O_WRONLY)  # the job reads the FIFO: this releases it
    os.write(fd, b"go\n")
    os.close(fd)
    reply, rest = finish(kernel, msg_id)
    assert reply["status"] == "ok"
    assert rest == "second\n"
    assert value(kernel, "j.state.value") == "'succeeded'"


def test_interrupting_follow_stops_following_not_the_job(kernel: Any) -> None:
    ok(kernel, f"j = %job start {python_cmd(SLEEPER)}")
    msg_id = run_until_printed(kernel, "%job logs {j.id} --follow", "ready\n")
    kernel.km.interrupt_kernel()
    reply, rest = finish(kernel, msg_id)
    assert reply["status"] == "ok"
    assert rest == "[stopped following job 1; it is still running]\n"
    assert value(kernel, "j.state.value") == "'running'"
    assert stdout(ok(kernel, "%job stop {j.id}")) == "job 1 stopped (killed by SIGTERM)\n"


def test_interrupting_wait_stops_waiting_not_the_job(kernel: Any) -> None:
    ok(kernel, f"j = %job start {python_cmd(SLEEPER)}\nfor _ in j.stream(): break")
    # Not flush=True: in ipykernel that blocks until the line is sent, so the interrupt
    # could land inside the flush. Unflushed, ipykernel sends it 0.2 s later, long after
    # the cell has entered the wait; the traceback check below proves it did.
    msg_id = run_until_printed(kernel, "print('waiting')\n%job wait {j.id}", "waiting\n")
    kernel.km.interrupt_kernel()
    reply, rest = finish(kernel, msg_id)
    # One line, no traceback; only the wait's own handler says this, so the interrupt
    # landed inside the wait.
    assert reply["status"] == "ok"
    assert rest == "[stopped waiting; the jobs keep running: 1]\n"
    assert value(kernel, "j.state.value") == "'running'"
    ok(kernel, "j.stop()")


def test_wait_reports_exit_codes(kernel: Any) -> None:
    ok(kernel, "a = %job start true\nb = %job start --name three sh -c 'exit 3'")
    out = stdout(ok(kernel, "%job wait {a.id} three"))
    assert out == 'job 1 succeeded (exit code 0)\njob 2 "three" failed (exit code 3)\n'


@pytest.mark.parametrize("awaitable", ["j.wait_async()", "j"])
def test_await_does_not_block_the_event_loop(kernel: Any, tmp_path: Path, awaitable: str) -> None:
    # The job ends only once a coroutine on the kernel's event loop has written to the
    # FIFO: if awaiting the job blocked the loop, it would never end.
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    code = (
        "import asyncio, os\n"
        f"j = %job start read x < {fifo}; echo got $x\n"
        "async def release():\n"
        f"    fd = await asyncio.to_thread(os.open, {str(fifo)!r}, os.O_WRONLY)\n"
        "    os.write(fd, b'go\\n')\n"
        "    os.close(fd)\n"
        "task = asyncio.ensure_future(release())\n"
        f"code = await {awaitable}\n"
        "await task\n"
        "print(code, j.output())\n"
    )
    assert stdout(ok(kernel, code)) == "0 b'got go\\n'\n"


def test_unload_leaves_no_process(kernel: Any) -> None:
    ok(kernel, f"j = %job start {python_cmd(SLEEPER)}\nfor _ in j.stream(): break")
    ok(kernel, "%unload_ext jobmagic")
    assert value(kernel, "j.state.value") == "'stopped'"
    reply, _ = kernel.execute("%job list")
    assert reply["status"] == "error"
    ok(kernel, "%load_ext jobmagic")
    data = result_data(ok(kernel, "%job list"))
    assert "stopped" in data["text/plain"]
