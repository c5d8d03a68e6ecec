"""The queue's actions over REST: ``POST jobs/{id}/pause``, ``resume``, ``restart``; ``DELETE``.

Behind the same auth and XSRF checks as every handler (see ``handlers.py``). Pause and
resume signal the job's process group here and record the move in the store; the job's
kernel hears of it from there. A restart is a new job, and a job needs an owner that
outlives the request: the server runs ``python -m jobmagic.cli restart ID --json`` (an
argument list, no shell), which answers with the new job and, when it must wait in the
queue, stays until the job has started, like ``jobmagic restart`` in a terminal. A
``DELETE jobs/{id}`` removes a finished job's record, log and backend files, as
``jobmagic rm`` does.

Every store call (a pause writes the store) runs on the server's store thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from jobmagic.backends.registry import Executors
from jobmagic.errors import JobmagicError, StoreError, UnknownBackend
from jobmagic.store.job_queue import JobQueue
from jobmagic.store.job_store import JobStore
from jobmagic.store.pauses import pause_attached
from jobmagic.store.records import JobRecord
from jobmagic.store.wire import job_json

from .handlers import JobHandler, JobmagicHandler

#: Seconds a restart waits for the command line's answer (it answers in well under one).
RESTART_ANSWER_TIMEOUT = 30.0
#: Restarts whose command line still waits in the queue: kept so that they are reaped.
_waiting: set[asyncio.Task[None]] = set()


class PauseHandler(JobmagicHandler):
    """``POST jobs/{id}/pause`` or ``jobs/{id}/resume``: 200 with the job.

    SIGSTOP (SIGCONT) goes to the job's whole process group; the job reads PAUSED
    (RUNNING). A job that is queued or has ended gets 409, as does one whose execution
    is gone.
    """

    @web.authenticated
    @authorized
    async def post(self, job_id: str, action: str) -> None:
        """Pause or resume the job."""
        record = await self.job(self.job_id(job_id))
        store = self.jobmagic.store
        executors = self.jobmagic.executors

        def pause_or_resume() -> JobRecord | None:
            pause_attached(
                store,
                record,
                lambda r: executors.require(r.backend).attach(r.backend_ref),
                action == "pause",
            )
            return store.get(record.id)

        try:
            # The signal and the write, on the store thread: the write may wait for the lock.
            paused = await self.jobmagic.store_thread.run(pause_or_resume)
        except StoreError:
            raise
        except JobmagicError as exc:  # queued, ended, gone, or a backend this server lacks
            raise web.HTTPError(409, str(exc)) from None
        # The feed does not see this connection's own writes (data_version ignores
        # them): the page that asked, and every other, hear of it now.
        self.jobmagic.feed.bump()
        self.finish_json(job_json(paused or record))


class RestartHandler(JobmagicHandler):
    """``POST jobs/{id}/restart``: 201 with the new job (a copy of an ended one).

    The new job has the same command, options and cwd; its environment variables'
    values come from the server's environment. A job that has not ended gets 409, and so
    does one whose restart fails (the message says why).
    """

    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        """Restart the job."""
        record = await self.job(self.job_id(job_id))
        if not record.state.is_finished:
            raise web.HTTPError(
                409, f"job {record.id} is {record.state.value}; only an ended job can be restarted"
            )
        env = {**os.environ, "JOBMAGIC_HOME": str(self.jobmagic.store.home)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobmagic.cli",
            "restart",
            str(record.id),
            "--json",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # it may outlive this server, waiting in the queue
        )
        assert process.stdout is not None
        try:
            answer = await asyncio.wait_for(process.stdout.read(), RESTART_ANSWER_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise web.HTTPError(500, "the restart did not answer") from None
        try:
            new = json.loads(answer)
        except ValueError:
            await process.wait()
            stderr = await process.stderr.read() if process.stderr is not None else b""
            message = stderr.decode(errors="replace").strip().splitlines()
            raise web.HTTPError(409, message[-1] if message else "the restart failed") from None
        task = asyncio.create_task(_reap(process))
        _waiting.add(task)
        task.add_done_callback(_waiting.discard)
        created = await self.jobmagic.store_thread.run(
            _created_body, self.jobmagic.store, int(new["id"])
        )
        self.finish_json(new if created is None else created, status=201)


class RemoveHandler(JobHandler):
    """``DELETE jobs/{id}``: 204; the finished job's record, log and backend files are gone.

    A job that is queued, running or paused gets 409 (stop it first); no job gets 404.
    ``GET jobs/{id}`` is ``JobHandler``'s: the two methods share one URL, and Tornado
    gives a URL to one handler class.
    """

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        """Remove the job."""
        # Reconciled first: an orphan that ended while nobody watched reads as ended.
        record = await self.job(self.job_id(job_id))
        removed = await self.jobmagic.store_thread.run(
            _remove_finished, self.jobmagic.store, self.jobmagic.executors, record.id
        )
        if removed is None:
            raise web.HTTPError(404, f"no job {record.id}")
        if not removed.state.is_finished:
            raise web.HTTPError(
                409, f"job {removed.id} is {removed.state.value}; stop it before removing it"
            )
        # As after a pause: this connection's own write does not move the feed's version.
        self.jobmagic.feed.bump()
        self.set_status(204)
        self.finish()


def _remove_finished(store: JobStore, executors: Executors, job_id: int) -> JobRecord | None:
    """Delete the job if it has finished (store thread); return its record, None if gone.

    An unfinished job is returned as it is and left alone. A finished job cannot start
    again (a restart is a new job), so nothing can change between the look and the delete.
    The files go as ``engine.retention.delete_job`` removes them, which the server, kept
    apart from the kernel's engine, cannot import.
    """
    record = store.get(job_id)
    if record is None or not record.state.is_finished:
        return record
    deleted = store.delete(job_id)  # the record, then its log
    if deleted is not None:
        with contextlib.suppress(UnknownBackend):  # a backend this server lacks kept its own
            executors.require(deleted.backend).discard(job_id, deleted.backend_ref)
    return record


def _created_body(store: JobStore, job_id: int) -> dict[str, Any] | None:
    """The JSON of the job a restart created, None if it is gone already (store thread)."""
    created = store.get(job_id)
    if created is None:
        return None
    return job_json(created, JobQueue(store).reasons([created]).get(created.id))


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for the restart's command line to exit (it stays while its job is queued)."""
    if process.stderr is not None:
        await process.stderr.read()
    await process.wait()
