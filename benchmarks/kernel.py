"""A real IPython kernel driven through jupyter_client, with an iopub byte counter.

The counter is a plain zmq SUB socket on the kernel's iopub port: it sees every byte
the kernel publishes to a frontend (what jupyter_server would forward to the browser),
without jupyter_client's deserialisation in the way. It also keeps iopub drained, as a
frontend would.
"""

from __future__ import annotations

import ast
import json
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Context

# Messages that are the kernel answering our own requests, not output or widget traffic.
REQUEST_ECHO = {"status", "execute_input", "execute_result", "execute_reply"}


@dataclass(frozen=True)
class IopubMessage:
    at: float  # time.monotonic() when received
    msg_type: str
    nbytes: int  # all frames on the wire


class IopubCounter:
    """Receives every iopub message of a kernel in a thread and keeps (time, type, size)."""

    def __init__(self, url: str) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.setsockopt(zmq.RCVHWM, 0)
        self._sub.connect(url)
        # Closing a socket from another thread is not allowed; a pair socket wakes the
        # receiver instead, so the thread blocks on zmq alone and never polls a flag.
        self._stop_url = f"inproc://stop-{id(self)}"
        self._stop_rx = self._ctx.socket(zmq.PAIR)
        self._stop_rx.bind(self._stop_url)
        self._stop_tx = self._ctx.socket(zmq.PAIR)
        self._stop_tx.connect(self._stop_url)
        self._lock = threading.Lock()  # guards _messages
        self._messages: list[IopubMessage] = []
        self._thread = threading.Thread(target=self._run, name="iopub-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._stop_rx, zmq.POLLIN)
        while True:
            events = dict(poller.poll())
            if self._stop_rx in events:
                return
            frames = self._sub.recv_multipart(copy=True)
            msg_type = "?"
            if b"<IDS|MSG>" in frames:
                header = frames[frames.index(b"<IDS|MSG>") + 2]
                msg_type = json.loads(header).get("msg_type", "?")
            with self._lock:
                self._messages.append(
                    IopubMessage(time.monotonic(), msg_type, sum(map(len, frames)))
                )

    def since(self, start: float, end: float | None = None) -> list[IopubMessage]:
        """Messages received in ``[start, end)`` (monotonic seconds)."""
        with self._lock:
            return [m for m in self._messages if m.at >= start and (end is None or m.at < end)]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def close(self) -> None:
        self._stop_tx.send(b"")
        self._thread.join()
        for sock in (self._sub, self._stop_rx, self._stop_tx):
            sock.close(linger=0)
        self._ctx.term()


class KernelError(RuntimeError):
    """Raised when code executed in the benchmark kernel fails."""


class Kernel:
    """A python kernel in this interpreter's environment, with a private job home.

    Use as a context manager; the kernel is shut down (and its jobs with it) on exit.
    """

    def __init__(self, ctx: Context, home: Path) -> None:
        import sys

        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        spec_dir = home.parent / "kernels" / "jobmagic-bench"
        spec_dir.mkdir(parents=True, exist_ok=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "jobmagic bench",
                    "language": "python",
                }
            )
        )
        specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        self.manager = KernelManager(
            kernel_name="jobmagic-bench",
            kernel_spec_manager=specs,
            connection_file=str(home.parent / "kernel.json"),
        )
        # The kernel's own stderr (warnings about TCP, debugger) goes to a file, not the table.
        self._log = (home.parent / "kernel.log").open("wb")
        self.manager.start_kernel(env=ctx.env(home), stdout=self._log, stderr=self._log)
        self.client = self.manager.blocking_client()
        self.client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        info = self.manager.get_connection_info()
        self.iopub = IopubCounter(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        msg_id = self.client.kernel_info()
        while True:
            reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return

    def execute(
        self,
        code: str,
        timeout: float = 120.0,
        expressions: dict[str, str] | None = None,
        interrupt_after: float | None = None,
    ) -> tuple[dict, float]:
        """Run ``code``; return the reply content and the round-trip time in seconds.

        With ``interrupt_after`` (seconds), a cell still running by then is interrupted
        (like the stop button) and the reply content gets ``"interrupted": True``.
        """
        start = time.perf_counter()
        msg_id = self.client.execute(code, store_history=False, user_expressions=expressions or {})
        interrupted = False
        while True:
            wait = timeout
            if interrupt_after is not None and not interrupted:
                wait = max(0.0, start + interrupt_after - time.perf_counter())
            try:
                reply = self.client.get_shell_msg(timeout=wait)
            except queue.Empty:
                if interrupted or interrupt_after is None:
                    raise KernelError(f"no reply within {timeout:g} s to {code[:60]!r}") from None
                self.manager.interrupt_kernel()
                interrupted = True
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        rtt = time.perf_counter() - start
        content = reply["content"]
        content["interrupted"] = interrupted
        if content["status"] != "ok" and not interrupted:
            trace = "\n".join(content.get("traceback", []))
            raise KernelError(f"{content.get('ename')}: {content.get('evalue')}\n{trace}")
        return content, rtt

    def evaluate(self, code: str, expression: str, timeout: float = 120.0) -> object:
        """Run ``code``, then return ``expression`` (which must be JSON-able) as a value."""
        content, _ = self.execute(
            code, timeout=timeout, expressions={"r": f"__import__('json').dumps({expression})"}
        )
        result = content["user_expressions"]["r"]
        if result.get("status") != "ok":
            raise KernelError(f"{result.get('ename')}: {result.get('evalue')}")
        return json.loads(ast.literal_eval(result["data"]["text/plain"]))

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.stop_channels()
        self.iopub.close()
        self.manager.shutdown_kernel(now=False)
        self._log.close()
