"""One job on a Ray cluster, followed from this process: its log mirrored, its end heard.

A task on the process's Ray loop (``loop.py``) follows the job's log over Ray's websocket
(``/api/jobs/{id}/logs/tail``) into the local log (``log_mirror.py``). Ray closes that
socket when the job reaches a terminal state, so its close is how the end is heard: then
the job's info gives the exit code, Ray's whole log completes the local one, and an
eventfd wakes the reactor that waits in ``on_exit``. A socket that breaks is taken up
again, waiting 1, 2, 4 ... up to 30 s between tries, and while it is down the execution
says "lost contact with the Ray cluster at ..." (``on_detail``); the job is never taken for
ended because its cluster went quiet.

Until Ray starts the command (its "Running entrypoint" line in the log), the execution
says "waiting for the Ray cluster": Ray queues a job whose resources it does not have.
Then it looks up the node that runs the job (``ref["node"]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobmagic.core.limits import Usage
from jobmagic.core.outcome import Outcome
from jobmagic.errors import JobmagicError

from ..base import Callback, Cancellable, Reactor
from ..local.shell import diagnose
from .log_mirror import LogMirror, RayLineFilter, without_ray_lines
from .loop import run_soon, session, tell
from .rest import NOT_FOUND, TERMINAL, JobsApi, RayRefused, RayUnreachable

_log = logging.getLogger("jobmagic")

#: The longest wait, in seconds, between two tries to reach a cluster that went away.
MOST_BACKOFF = 30.0

#: What a job Ray has not started yet says (Ray's PENDING).
WAITING = "waiting for the Ray cluster"

#: The note of a job stopped before Ray started it.
NEVER_STARTED = (
    "Ray had not started it; Ray keeps a stop of a job it has not started for when it"
    " would start it"
)


def outcome_of(info: dict[str, Any], log_path: Path | None, note: str | None = None) -> Outcome:
    """The outcome of a Ray job in a terminal state, from its info (``JobsApi.info``)."""
    status = info.get("status")
    code = info.get("driver_exit_code")
    end_ms = info.get("end_time")
    ended_at = end_ms / 1000 if isinstance(end_ms, int | float) else None
    exit_code = code if isinstance(code, int) else None
    reason = None
    if status == "SUCCEEDED":
        exit_code = 0 if exit_code is None else exit_code
    elif status == "STOPPED":
        reason = "stopped on the Ray cluster (not through jobmagic)"
    elif exit_code is None:
        message = str(info.get("message") or "").strip().splitlines()
        reason = f"Ray: {message[0]}" if message else "Ray says it failed, and not why"
    elif log_path is not None:
        reason = diagnose(exit_code, log_path)
    return Outcome(exit_code, ended_at, reason=reason, note=note)


def node_of(info: dict[str, Any]) -> str | None:
    """The host of the node that runs the job (from its agent's address), once known."""
    agent = info.get("driver_agent_http_address")
    if not isinstance(agent, str):
        return None
    return urllib.parse.urlsplit(agent).hostname


def unknown_to(api: JobsApi, submission_id: str) -> Outcome:
    """The outcome of a job its cluster no longer knows (the head was started afresh)."""
    return Outcome(
        None,
        reason=f"the Ray cluster at {api.address} no longer knows job {submission_id} "
        "(was it restarted?); its exit status is unknown",
    )


class RayExecution:
    """One Ray job, followed; see the module docstring. Thread-safe."""

    def __init__(
        self,
        api: JobsApi,
        submission_id: str,
        entrypoint: str,
        log_path: Path | None,
        *,
        started: bool = False,
        node: str | None = None,
        containment: str = "ray",
    ) -> None:
        self._api = api
        self._containment = containment
        self.submission_id = submission_id
        self._entrypoint = entrypoint
        self._log_path = log_path
        # Guards every field below: on_exit, on_detail, outcome and close come from other
        # threads than the follower's.
        self._lock = threading.Lock()
        self._done_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._outcome: Outcome | None = None
        self._watch: Cancellable | None = None
        self._started = started  # Ray runs the command (not PENDING any more)
        self._node = node  # the host that runs it, once known
        self._detail: str | None = None if started else WAITING
        self._listener: Callable[[str | None], None] | None = None
        self._follower: concurrent.futures.Future[None] = run_soon(self._follow())

    @property
    def ref(self) -> dict[str, Any]:
        """``{"address", "submission_id", "entrypoint", "log"[, "node"]}``."""
        ref = {
            "address": self._api.address,
            "submission_id": self.submission_id,
            "entrypoint": self._entrypoint,
            "log": str(self._log_path) if self._log_path is not None else None,
        }
        if self._node is not None:
            ref["node"] = self._node
        return ref

    @property
    def pid(self) -> None:
        """A Ray job has no process on this machine."""
        return None

    @property
    def containment(self) -> str:
        """``ray`` (its CPUs, GPUs and memory are requests Ray reserves, not limits).

        With best effort: ``ray; best effort: pids dropped (Ray cannot limit processes)``.
        """
        return self._containment

    def usage(self) -> Usage | None:
        """Not known: Ray's Jobs API does not say what a job uses."""
        return None

    def terminate(self) -> None:
        """Ask Ray to stop the job: SIGTERM to its process tree, SIGKILL after Ray's grace."""
        self._stop()

    def kill(self) -> None:
        """Ask again: Ray kills what is left once its own grace (3 s by default) is over.

        A job Ray says is still PENDING ends here: Ray cannot drop a pending job (its stop
        waits for the job's supervisor, which waits for the job's resources), so it would
        stay "waiting" for as long as the resources are taken.
        """
        self._stop()
        if not self._started:
            run_soon(self._end_if_pending())

    def pause(self) -> None:
        """Refused: Ray's Jobs API cannot hold a job still."""
        raise JobmagicError("a Ray job cannot be paused: Ray's Jobs API has no pause")

    def resume(self) -> None:
        """Refused, as ``pause`` is."""
        raise JobmagicError("a Ray job cannot be paused or resumed")

    def on_detail(self, callback: Callable[[str | None], None]) -> None:
        """Tell ``callback`` what the job is waiting for, now and on each change."""
        with self._lock:
            self._listener = callback
            detail = self._detail
        tell(callback, detail)

    def _set_detail(self, detail: str | None) -> None:
        with self._lock:
            if detail == self._detail:
                return
            self._detail = detail
            listener = self._listener
        if listener is not None:
            tell(listener, detail)

    def on_exit(self, reactor: Reactor, callback: Callback) -> None:
        """Call ``callback`` on ``reactor`` once the job has ended and its log is complete."""
        with self._lock:
            if self._done_fd >= 0:
                self._watch = reactor.watch_readable(self._done_fd, callback)

    def outcome(self) -> Outcome:
        """How it ended (on_exit has fired)."""
        with self._lock:
            outcome = self._outcome
        if outcome is None:
            raise JobmagicError(f"Ray job {self.submission_id} has not ended")
        self.close()
        return outcome

    def release(self) -> None:
        """Nothing: a Ray job holds nothing on this machine."""

    def close(self) -> None:
        """Stop following the job (it goes on running on the cluster)."""
        self._follower.cancel()
        with self._lock:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            if self._done_fd >= 0:
                os.close(self._done_fd)
                self._done_fd = -1

    def _stop(self) -> None:
        try:
            self._api.stop(self.submission_id)
        except RayRefused as exc:
            if exc.status != NOT_FOUND:  # 404: gone already; its end is on its way
                _log.warning("jobmagic: Ray refused to stop %s: %s", self.submission_id, exc)
        except RayUnreachable as exc:
            _log.warning("jobmagic: cannot stop %s now: %s", self.submission_id, exc)

    # -- on the Ray loop -----------------------------------------------------------------
    async def _follow(self) -> None:
        mirror = LogMirror(self._log_path) if self._log_path is not None else None
        try:
            info = await self._until_ended(mirror)
            outcome = await self._ending(info, mirror)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever happens, the job must end
            _log.exception("jobmagic lost track of Ray job %s", self.submission_id)
            outcome = Outcome(None, reason=f"jobmagic lost track of the Ray job: {exc}")
        finally:
            if mirror is not None:
                mirror.close()
        self._ended(outcome)

    def _ended(self, outcome: Outcome) -> None:
        """The job's end is known: keep ``outcome`` (the first one told) and wake on_exit."""
        with self._lock:
            if self._outcome is not None:
                return
            self._outcome = outcome
            if self._done_fd >= 0:
                os.eventfd_write(self._done_fd, 1)

    async def _until_ended(self, mirror: LogMirror | None) -> dict[str, Any] | None:
        """Follow the log until the job is terminal; its info (None: the cluster forgot it)."""
        delay = 1.0
        while True:
            lost: Exception | None = None
            try:
                if await self._tail(mirror):
                    delay = 1.0
            except (TimeoutError, OSError, RuntimeError) as exc:
                lost = exc
            except Exception as exc:  # aiohttp's ClientError and kin
                if type(exc).__module__.split(".")[0] != "aiohttp":
                    raise
                lost = exc
            try:
                info = await asyncio.to_thread(self._api.info, self.submission_id)
            except RayRefused as exc:
                if exc.status == NOT_FOUND:
                    return None
                raise
            except RayUnreachable as exc:
                info, lost = None, exc
            if info is not None and info.get("status") in TERMINAL:
                return info
            if lost is not None:
                detail = f"lost contact with the Ray cluster at {self._api.address}; trying again"
                if self._detail != detail:
                    _log.warning("jobmagic: Ray job %s: %s", self.submission_id, lost)
                self._set_detail(detail)
            await asyncio.sleep(delay)  # a back-off between reconnections, not a poll
            delay = min(delay * 2, MOST_BACKOFF)

    async def _tail(self, mirror: LogMirror | None) -> bool:
        """Copy the log's websocket into ``mirror`` until Ray closes it; True if it spoke."""
        import aiohttp

        url = f"{self._api.address}/api/jobs/{self.submission_id}/logs/tail"
        line_filter = RayLineFilter(self.submission_id, self._entrypoint)
        if mirror is not None:
            mirror.restart()
        spoke = False
        async with (await session()).ws_connect(url) as socket:
            self._set_detail(None if self._started else WAITING)
            async for message in socket:
                if message.type is aiohttp.WSMsgType.TEXT:
                    spoke = True
                    data = line_filter.feed(message.data).encode()
                    if data and mirror is not None:
                        mirror.write(data)
                    if line_filter.marker_seen and not self._started:
                        await self._now_running()
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"the log stream failed: {socket.exception()}")
            if socket.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
                raise ConnectionError("the log stream broke off")
        return spoke

    async def _end_if_pending(self) -> None:
        """After a stop's grace: end a job Ray still has not started (see ``kill``)."""
        try:
            info = await asyncio.to_thread(self._api.info, self.submission_id)
        except JobmagicError:
            return  # cannot tell: go on following it
        if info.get("status") == "PENDING":
            self._follower.cancel()
            self._ended(Outcome(None, time.time(), note=NEVER_STARTED))

    async def _now_running(self) -> None:
        """Ray started the command: say so, and find out which node runs it."""
        try:
            info = await asyncio.to_thread(self._api.info, self.submission_id)
        except JobmagicError:
            info = {}
        with self._lock:
            self._started = True
            self._node = node_of(info) or self._node
        self._set_detail(None)

    async def _ending(self, info: dict[str, Any] | None, mirror: LogMirror | None) -> Outcome:
        if info is None:
            return unknown_to(self._api, self.submission_id)
        note = None
        if mirror is not None:
            note = await asyncio.to_thread(complete_log, self._api, self.ref, mirror)
        return outcome_of(info, self._log_path, note)


def complete_log(api: JobsApi, ref: dict[str, Any], mirror: LogMirror | None = None) -> str | None:
    """Make the local log equal Ray's whole log (Ray's own lines out); a note if it could not."""
    path = ref.get("log")
    if not path:
        return None
    try:
        whole = api.logs(ref["submission_id"])
    except JobmagicError as exc:
        return f"its log may lack its last lines: Ray's log could not be read ({exc})"
    data = without_ray_lines(whole, ref["submission_id"], ref["entrypoint"]).encode()
    own = mirror is None
    try:
        if mirror is None:
            mirror = LogMirror(Path(path))
        mirror.complete(data)
    except OSError as exc:
        return f"its log could not be completed: {exc}"
    finally:
        if own and mirror is not None:
            with contextlib.suppress(OSError):
                mirror.close()
    return None
