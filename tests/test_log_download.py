"""``GET jobmagic/api/jobs/{id}/log/download`` against a real ``jupyter lab`` and real jobs.

The jobs run in this process's ``WorkerService`` (same job home as the server); requests
are plain urllib, with the token as a query parameter or none at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from engine_helpers import read_until
from helpers import python_cmd

if TYPE_CHECKING:
    from conftest import LabServer

    from jobmagic.engine.service import WorkerService

pytestmark = pytest.mark.timeout(120)

#: Writes this many random bytes (a fixed seed) to stdout, all bytes values included.
RANDOM_BYTES = 3 * 1024 * 1024 + 17
RANDOM_JOB = python_cmd(
    f"import random, sys; sys.stdout.buffer.write(random.Random(16).randbytes({RANDOM_BYTES}))"
)


def download(
    server: LabServer, job_id: object, *, token: bool = True
) -> tuple[int, Message, bytes]:
    """GET the download route: its status, headers and body (an error's too)."""
    path = f"jobmagic/api/jobs/{job_id}/log/download"
    url = server.api_url(path) if token else f"{server.url}{path}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_download_is_the_log_byte_for_byte(lab_server: LabServer, service: WorkerService) -> None:
    worker = service.start(RANDOM_JOB)
    assert worker.wait(timeout=60) == 0
    log = worker.output()
    assert len(log) == RANDOM_BYTES

    status, headers, body = download(lab_server, worker.id)

    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(log).hexdigest()
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Length"] == str(RANDOM_BYTES)
    name = f"job-{worker.id}.log"
    assert headers["Content-Disposition"] == (
        f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
    )


def test_a_named_job_saves_under_a_safe_name(lab_server: LabServer, service: WorkerService) -> None:
    worker = service.start(python_cmd("print('hi')"), name='../tr\u00e4in "x"\n')
    assert worker.wait(timeout=60) == 0

    status, headers, body = download(lab_server, worker.id)

    assert status == 200
    assert body == b"hi\n"
    # No separator, quote or control character survives; the exact name keeps the ä.
    assert headers["Content-Disposition"] == (
        f'attachment; filename="job-{worker.id}-tr_in__x.log"; '
        f"filename*=UTF-8''job-{worker.id}-tr%C3%A4in%20_x.log"
    )


def test_a_running_job_sends_its_log_as_it_was_when_asked(
    lab_server: LabServer, service: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    worker = service.start(
        python_cmd(f"print('before', flush=True); open({str(fifo)!r}).read(); print('after')")
    )
    # The handshake: the job has written its first line and now blocks on the FIFO. (The
    # line may come in two chunks: an unbuffered print writes its end apart.)
    read_until(worker, re.compile(rb"before\n"))

    status, headers, body = download(lab_server, worker.id)

    assert (status, body, headers["Content-Length"]) == (200, b"before\n", "7")
    fifo.write_text("go")
    assert worker.wait(timeout=60) == 0
    assert download(lab_server, worker.id)[2] == b"before\nafter\n"


def test_no_auth_is_403(lab_server: LabServer, service: WorkerService) -> None:
    worker = service.start(python_cmd("print('secret')"))
    assert worker.wait(timeout=60) == 0

    status, _, body = download(lab_server, worker.id, token=False)

    assert status == 403
    assert b"secret" not in body


def test_no_job_or_no_log_is_404(lab_server: LabServer, service: WorkerService) -> None:
    worker = service.start(python_cmd("print('gone soon')"))
    assert worker.wait(timeout=60) == 0
    assert download(lab_server, worker.id)[0] == 200

    assert download(lab_server, 999_999)[0] == 404
    assert download(lab_server, 0)[0] == 404
    assert download(lab_server, "seven")[0] == 400
    worker.log_path.unlink()
    status, _, body = download(lab_server, worker.id)
    assert status == 404
    assert f"job {worker.id} has no log".encode() in body
