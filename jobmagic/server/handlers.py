"""The REST API under ``{base_url}jobmagic/api/``: jobs, their logs, and stopping them.

Every handler is a Jupyter ``APIHandler`` behind ``@tornado.web.authenticated`` and
``@authorized`` (resource ``"jobmagic"``): an unauthenticated request gets 403, and a POST
authenticated by cookie must carry the XSRF token (token-header requests need none).
Errors are JSON ``{"message": ...}``. The long-polls (``?wait_for=``, ``?follow=1``) take
an optional ``?timeout=`` in seconds, at most ``JobmagicServer.long_poll_timeout`` (30 s).

A job id that is not an integer gets 400; an integer no job has gets 404 "no job N", and
that includes every id outside ``1..MAX_JOB_ID`` (SQLite's INTEGER range). A bad query
argument gets 400; none of them, however large, is a 500.

The handlers never call the store on the event loop: they await its calls on the
server's store thread (``JobmagicServer.store_thread``), the JSON of a list included.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from jobmagic.core.files import file_size
from jobmagic.core.state import JobState
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import MAX_ID, JobStore
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import job_json

from .extension import JobmagicServer
from .job_list import JobListBodies, JobListQuery
from .log_follow import log_deleted

#: Bytes a log request returns when it names no ``length``.
DEFAULT_LOG_LENGTH = 1 << 20
#: The most bytes one log request returns, whatever ``length`` it asks for.
MAX_LOG_LENGTH = 8 << 20

#: The largest job id there can be: ids are SQLite INTEGERs (64-bit), counted from 1.
MAX_JOB_ID = MAX_ID

_TRUE = frozenset({"1", "true", "yes", "on"})
#: How much of a bad argument an error message repeats.
_SHOWN_CHARS = 40
#: What a store's generation looks like (``secrets.token_hex``; "" for the oldest stores).
_GENERATION = re.compile(r"[0-9A-Za-z_-]{0,64}")


def _clip(text: str) -> str:
    """``text``, cut short for an error message when it is long."""
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _shown(text: str) -> str:
    """A client's argument as an error message quotes it."""
    return repr(_clip(text))


class JobmagicHandler(APIHandler):
    """Shared parsing and lookups for the jobmagic API handlers."""

    auth_resource = "jobmagic"
    _client_gone: asyncio.Future[None] | None = None

    @property
    def jobmagic(self) -> JobmagicServer:
        """The server's shared jobmagic state."""
        return cast(JobmagicServer, self.settings["jobmagic"])

    def set_default_headers(self) -> None:
        """Forbid caching: every answer describes the jobs at one moment."""
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self) -> None:
        """Send no ETag: a 304 would hide a change the client is waiting for."""
        return

    def on_connection_close(self) -> None:
        """End the long-poll of a client that went away, rather than at the timeout."""
        if self._client_gone is not None and not self._client_gone.done():
            self._client_gone.set_result(None)
        super().on_connection_close()

    def client_gone(self) -> asyncio.Future[None]:
        """Return a future resolved when the client disconnects."""
        if self._client_gone is None:
            self._client_gone = asyncio.get_running_loop().create_future()
        return self._client_gone

    def job_id(self, text: str) -> int:
        """Parse the id in the URL: 400 when it is not an integer, 404 when no job can have it.

        An integer outside ``1..MAX_JOB_ID`` (0, negative, 2**63 and more) is answered as
        any id the store does not have, without asking it (SQLite cannot even take it).
        """
        try:
            value = int(text)
        except ValueError:  # also a number too long for int(): no job has one that long
            raise web.HTTPError(400, f"a job id is an integer, not {_shown(text)}") from None
        if not 1 <= value <= MAX_JOB_ID:
            raise web.HTTPError(404, f"no job {_clip(str(value))}")
        return value

    async def job(self, job_id: int) -> JobRecord:
        """Return the job's (reconciled) record; 404 when there is none."""
        record = await self.jobmagic.get(job_id)
        if record is None:
            raise web.HTTPError(404, f"no job {job_id}")
        return record

    def int_argument(self, name: str) -> int | None:
        """Parse query argument ``name`` as an integer >= 0 (None when absent; else 400)."""
        text = self.get_argument(name, None)
        if text is None:
            return None
        try:
            value = int(text)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer, not {_shown(text)}") from None
        if value < 0:
            raise web.HTTPError(400, f"{name} must be >= 0, not {_clip(text)}")
        return value

    def wait_argument(self) -> float:
        """Parse ``?timeout=``: the seconds a long-poll may wait, capped by the server's limit."""
        text = self.get_argument("timeout", None)
        if text is None:
            return self.jobmagic.clamp_wait(None)
        try:
            value = float(text)
        except ValueError:
            raise web.HTTPError(
                400, f"timeout must be a number of seconds, not {_shown(text)}"
            ) from None
        if not value >= 0:  # also rejects NaN
            raise web.HTTPError(400, f"timeout must be >= 0 seconds, not {_clip(text)}")
        return self.jobmagic.clamp_wait(value)

    def finish_json(self, data: dict[str, Any], status: int = 200) -> None:
        """Send ``data`` as the JSON body."""
        self.set_status(status)
        self.finish(json.dumps(data))


class JobListHandler(JobmagicHandler):
    """``GET jobs[?state=S...][&since=REV[&store=G]][&limit=N][&offset=M][&order=O][&wait_for=V]``.

    The jobs of the store (all kernels, orphans, history), oldest first, each as
    ``wire.job_json`` makes it::

        {"schema_version": 1, "version": REV, "store": G, "total": int,
         "counts": {state: int, ...}, "jobs": [job, ...]}

    ``version`` is the store's revision when read (``jobmagic.store.revisions``): every
    change of a job moves it, it survives server restarts, and it means something only
    with the same ``store`` (the store's generation: a reset store has a new one).
    ``total`` is the number of jobs the ``state`` filter matches (before ``limit`` and
    ``offset``), ``counts`` the store's jobs by state.

    - ``state`` (repeatable): only jobs in those states.
    - ``since=REV``: only the jobs changed (or created) after revision REV, with
      ``"since": REV`` and ``"removed": [ids removed since]``. A REV that cannot be
      answered so (``store=G`` names another store, or REV is newer than the store's)
      gets every job, with ``"full": true``.
    - ``limit=N``, ``offset=M``: at most N jobs after skipping M; ``order=newest`` sorts
      by descending id (default ``oldest``).
    - ``wait_for=V`` (a long-poll, for scripts): the answer waits until the version
      differs from V (or the ``timeout`` passes; then it answers with the same version).
      Any integer is a V: one the store never had answers at once, and so does any V
      with a ``store`` that is not this store's.

    A bad argument gets 400 with one line.
    """

    def initialize(self, bodies: JobListBodies) -> None:
        """Take the server's list maker (one ``JobListBodies`` per server, from the routes)."""
        self.bodies = bodies

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List the jobs, after an optional wait for a change."""
        query = self.query_argument()
        wait_for = self.get_argument("wait_for", None)
        known = None
        if wait_for is not None:
            try:
                known = int(wait_for)
            except ValueError:
                raise web.HTTPError(
                    400, f"wait_for must be an integer version, not {_shown(wait_for)}"
                ) from None
        timeout = self.wait_argument() if wait_for is not None else 0.0
        feed = self.jobmagic.feed
        # A list of changes (since=, wait_for=) needs the derived fields' touches: a look.
        await feed.settled(version=known is not None or query.since is not None)
        same_store = query.store is None or query.store == self.jobmagic.store.generation
        if known is not None and feed.version == known and same_store:
            # No await since the look at the version: any change after it resolves this.
            change = feed.next_change()
            gone = self.client_gone()
            await asyncio.wait([change, gone], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if gone.done():
                return
            await feed.refresh()
        body = await self.jobmagic.store_thread.run(self.bodies.answer, self.jobmagic.store, query)
        self.set_status(200)
        self.finish(body)

    def query_argument(self) -> JobListQuery:
        """Parse the arguments that say which jobs to answer with (400 for a bad one)."""
        order = self.get_argument("order", "oldest")
        if order not in {"oldest", "newest"}:
            raise web.HTTPError(400, f"order must be oldest or newest, not {_shown(order)}")
        store = self.get_argument("store", None)
        if store is not None and not _GENERATION.fullmatch(store):
            raise web.HTTPError(400, f"store must be a store's generation, not {_shown(store)}")
        since = self.int_argument("since")
        limit = self.int_argument("limit")
        states = self.states_argument()
        return JobListQuery(
            states=None if states is None else tuple(states),
            since=since,
            store=store,
            # Past what SQLite can count, a limit or offset is as good as none, or all.
            limit=None if limit is None else min(limit, MAX_JOB_ID),
            offset=min(self.int_argument("offset") or 0, MAX_JOB_ID),
            newest_first=order == "newest",
        )

    def states_argument(self) -> list[JobState] | None:
        """Parse the ``state`` arguments as ``JobState``s; None when there are none."""
        values = self.get_arguments("state")
        if not values:
            return None
        states: list[JobState] = []
        for value in values:
            try:
                states.append(JobState(value))
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise web.HTTPError(
                    400, f"unknown state {_shown(value)}; use one of: {known}"
                ) from None
        return list(dict.fromkeys(states))


class JobHandler(JobmagicHandler):
    """``GET jobs/{id}``: one job; 404 when there is no such job."""

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """Show one job."""
        record = await self.job(self.job_id(job_id))
        self.finish_json(
            await self.jobmagic.store_thread.run(_job_body, self.jobmagic.store, record)
        )


class StopHandler(JobmagicHandler):
    """``POST jobs/{id}/stop``: stop a running job; 202 with the job.

    SIGTERM goes to the job's process group now and SIGKILL after
    ``JobmagicServer.stop_timeout`` seconds if the job is still there; the record notes
    ``stop_requested_by == "ui"`` and ends STOPPED once the job has exited (follow it with
    the change feed). A job that has already finished gets 409.
    """

    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        """Stop the job."""
        record = await self.job(self.job_id(job_id))
        if record.state.is_finished:
            raise web.HTTPError(409, f"job {record.id} has already {record.state.value}")
        await self.jobmagic.stopper.stop(record, by="ui")
        stopping = await self.jobmagic.store_thread.run(self.jobmagic.store.get, record.id)
        self.finish_json(job_json(stopping or record), status=202)


class LogHandler(JobmagicHandler):
    """``GET jobs/{id}/log?offset=N[&length=M][&follow=1[&timeout=SECONDS]]``.

    The bytes of the job's log from ``offset`` (default 0), at most ``length`` bytes
    (default 1 MiB, never more than 8 MiB), as ``application/octet-stream``. Headers:
    ``X-Log-Size`` (the log's size in bytes when read) and ``X-Job-State``. An offset past
    the end, or a negative or non-integer offset or length, gets 400.

    With ``follow=1`` this is a long-poll, not a websocket: when the log has nothing past
    ``offset`` and the job still runs, the answer waits until new bytes arrive, the job
    ends, or the timeout passes (then the body may be empty). Follow a log by asking again
    from ``offset + len(body)`` until ``X-Job-State`` is a finished state and the body is
    empty.

    A deleted log (the job was removed, or someone deleted the file) ends the log: a job
    the store no longer has is 404 "no job N"; a finished job's log answers as at its end
    (an empty body, ``X-Log-Size: 0``, the final ``X-Job-State``), whatever the offset; a
    running job's is 404, as nothing it writes can be read any more. A follow that waits
    when the log is deleted answers at once. (A queued job's log may not exist yet.)
    """

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """Read (or wait for) a range of the job's log."""
        record = await self.job(self.job_id(job_id))
        offset = self.int_argument("offset") or 0
        length = self.int_argument("length")
        length = DEFAULT_LOG_LENGTH if length is None else min(length, MAX_LOG_LENGTH)
        follow = self.get_argument("follow", "0").lower() in _TRUE
        timeout = self.wait_argument()
        path = self.log_path(record)
        if log_deleted(record, path):
            await self.finish_deleted_log(record)
            return
        size = file_size(path)
        if offset > size:
            raise web.HTTPError(
                400, f"offset {offset} is past the end of the log of job {record.id} ({size} bytes)"
            )
        if follow and offset == size and not record.state.is_finished:
            await self.jobmagic.followers.wait(record.id, path, offset, timeout, self.client_gone())
            if self.client_gone().done():
                return
            record = await self.job(record.id)  # 404 if it was removed meanwhile
            if log_deleted(record, path):
                await self.finish_deleted_log(record)
                return
        loop = asyncio.get_running_loop()
        # A large range from a cold disk should not stall every other request.
        data, size = await loop.run_in_executor(None, _read_range, path, offset, length)
        self.set_header("X-Log-Size", str(size))
        self.set_header("X-Job-State", record.state.value)
        self.finish(data, set_content_type="application/octet-stream")

    async def finish_deleted_log(self, record: JobRecord) -> None:
        """Answer for a log that was deleted (see the class docstring)."""
        # The store deletes the record before the log: a removed job is "no job N".
        record = await self.job(record.id)
        if not record.state.is_finished:
            raise web.HTTPError(404, f"the log of job {record.id} was deleted")
        # The end of a finished job's log: nothing more, and the state that says so.
        self.set_header("X-Log-Size", "0")
        self.set_header("X-Job-State", record.state.value)
        self.finish(b"", set_content_type="application/octet-stream")

    def log_path(self, record: JobRecord) -> Path:
        """Return the job's log file; 404 unless it lies in the store's ``logs/``.

        The server sends a file's bytes to the browser: it sends only files the store
        keeps, whatever path a record holds.
        """
        logs_dir = self.jobmagic.store.logs_dir.resolve()
        path = (logs_dir / f"{record.id}.log") if not record.log_path else Path(record.log_path)
        if not path.resolve().is_relative_to(logs_dir):
            raise web.HTTPError(404, f"job {record.id} has no log in {logs_dir}")
        return path


def _job_body(store: JobStore, record: JobRecord) -> dict[str, Any]:
    """The JSON of one job, with why it waits if it is queued (on the store thread)."""
    return job_json(record, JobQueue(store).reasons([record]).get(record.id))


def _read_range(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    """Up to ``length`` bytes of ``path`` from ``offset``, and the file's size then."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        # Never past the size reported with the data, so offset + len(data) <= X-Log-Size.
        return os.pread(fd, max(0, min(length, size - offset)), offset), size
    finally:
        os.close(fd)
