"""``GET jobs/{id}/log/download``: a job's whole log as a file to save.

The log view shows a bounded tail; this is where its "Download the full log" link points.
The log is streamed in chunks read off the event loop, so a multi-gigabyte log neither
sits in the server's memory nor stalls other requests while it is read from disk, and
each chunk waits for the client to take the one before (a slow client holds one chunk).
"""

from __future__ import annotations

import asyncio
import os
import re
import urllib.parse
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from tornado import iostream, web

from jobmagic.store.records import JobRecord

from .handlers import LogHandler

#: Bytes read from the log and handed to the connection at a time.
CHUNK_BYTES = 256 << 10
#: The most characters of a job's name that go into the file name.
_NAME_CHARS = 80
#: What the plain ``filename`` parameter keeps: characters every browser and OS takes.
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")
#: What no file name may hold anywhere: path separators, quotes, controls.
_UNSAFE_ANYWHERE = re.compile(r'[\x00-\x1f\x7f/\\"*:<>?|]+')


def download_name(record: JobRecord) -> str:
    """The file name a job's log is saved as: ``job-12.log``, ``job-12-train.log``.

    A name is data, never a path: separators, quotes and control characters become
    ``_``, and leading dots go, so the browser saves the file where it saves downloads.
    """
    if not record.name:
        return f"job-{record.id}.log"
    name = _UNSAFE_ANYWHERE.sub("_", record.name)[:_NAME_CHARS].strip(" ._")
    return f"job-{record.id}-{name}.log" if name else f"job-{record.id}.log"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact UTF-8 one (RFC 6266 / 5987).

    Browsers that read ``filename*`` (all current ones) save the exact name; the plain
    parameter is the fallback, with anything outside ``[A-Za-z0-9._-]`` as ``_``.
    """
    fallback = _UNSAFE_ASCII.sub("_", filename)
    exact = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


class LogDownloadHandler(LogHandler):
    """``GET jobs/{id}/log/download``: the job's log, whole, as an attachment.

    Headers: ``Content-Type: application/octet-stream``, ``Content-Disposition:
    attachment`` with the file name of :func:`download_name`, and ``Content-Length``: the
    log's size when the request came. A job that goes on writing adds bytes the answer
    does not carry (ask again for them). 404 when there is no such job or it has no log
    (a queued job's, a deleted one).

    A subclass of ``LogHandler`` for its ``log_path``: the same file, by the same rule
    (only files in the store's ``logs/``).
    """

    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """Send the job's log in chunks."""
        record = await self.job(self.job_id(job_id))
        path = self.log_path(record)
        loop = asyncio.get_running_loop()
        try:
            fd = await loop.run_in_executor(None, _open, path)
        except FileNotFoundError:
            raise web.HTTPError(404, f"job {record.id} has no log") from None
        try:
            size = os.fstat(fd).st_size
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Disposition", content_disposition(download_name(record)))
            self.set_header("Content-Length", str(size))
            offset = 0
            while offset < size:
                chunk = await loop.run_in_executor(
                    None, os.pread, fd, min(CHUNK_BYTES, size - offset), offset
                )
                if not chunk:
                    # Job logs only grow; someone truncated this one under us. Content-Length
                    # can no longer be kept: tornado closes the connection, and the client
                    # sees a short download rather than a wrong one.
                    msg = f"the log of job {record.id} shrank while it was sent"
                    raise OSError(msg)
                offset += len(chunk)
                self.write(chunk)
                try:
                    await self.flush()
                except iostream.StreamClosedError:
                    return  # the client went away (a cancelled download)
        finally:
            os.close(fd)
        self.finish(set_content_type="application/octet-stream")


def _open(path: Path) -> int:
    """A read-only descriptor on ``path`` (raises ``FileNotFoundError`` when there is none)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
