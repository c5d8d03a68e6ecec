"""Job output: byte-exact logs, ``stream()`` from byte 0 to many readers at once, large
outputs without the test process holding them in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import select
import shlex
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from helpers import python_cmd, wait_until

from jobmagic import JobState, Worker, WorkerService

pytestmark = pytest.mark.timeout(60)

PROGRAMS = Path(__file__).parent / "programs"
MIB = 1 << 20
_LOGGER_NUMBERS = itertools.count()


def quiet_logger() -> logging.Logger:
    """A fresh service logger per test: handlers one test attaches never reach another's."""
    return logging.getLogger(f"jobmagic-tests.stream.{next(_LOGGER_NUMBERS)}")


@pytest.fixture
def svc() -> Iterator[WorkerService]:
    service = WorkerService(logger=quiet_logger(), stop_timeout=5.0)
    yield service
    service.shutdown()


def write_random(size: int, hash_file: Path, go_fifo: Path | None = None) -> str:
    """A job that writes ``size`` random bytes and their sha256 to ``hash_file``."""
    args = [sys.executable, str(PROGRAMS / "write_random.py"), str(size), str(hash_file)]
    if go_fifo is not None:
        args.append(str(go_fifo))
    return shlex.join(args)


def say_go(fifo: Path) -> None:
    """Open the job's FIFO (blocks until the job opens its end) and write "go"."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def digest_of(chunks: Iterable[bytes]) -> tuple[str, int]:
    """sha256 and length of a stream of chunks, without keeping them."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes in 1 MiB chunks."""
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            yield chunk


def vm_rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def read_until(worker: Worker, needle: bytes) -> bytes:
    """Stream the job's output until ``needle`` appears; fail if the job ends first."""
    seen = b""
    with contextlib.closing(worker.stream()) as chunks:
        for chunk in chunks:
            seen += chunk
            if needle in seen:
                return seen
    raise AssertionError(f"job ended before printing {needle!r}: {seen!r}")


# -- many readers, much data ---------------------------------------------------------------
def test_three_concurrent_readers_get_the_same_50_mb(svc: WorkerService, tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    hash_file = tmp_path / "sha256"
    w = svc.start(write_random(50 * MIB, hash_file, fifo))
    results: list[tuple[str, int] | BaseException] = [ValueError("no result")] * 3

    def reader(index: int) -> None:
        try:
            results[index] = digest_of(w.stream())
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            results[index] = exc

    # The readers open the log while it is empty and follow it as it grows.
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in readers:
        thread.start()
    say_go(fifo)
    for thread in readers:
        thread.join(50)
        assert not thread.is_alive(), "a reader hung"
    assert w.wait() == 0
    expected = (hash_file.read_text(), 50 * MIB)
    assert digest_of(file_chunks(w.log_path)) == expected
    assert results == [expected] * 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_gib_is_logged_exactly_and_streamed_in_bounded_memory(
    svc: WorkerService, tmp_path: Path
) -> None:
    size = 1 << 30
    hash_file = tmp_path / "sha256"
    rss_before = vm_rss_bytes()
    w = svc.start(write_random(size, hash_file))
    try:
        streamed = digest_of(w.stream())
        assert w.wait() == 0
        expected = (hash_file.read_text(), size)  # computed by the job from what it wrote
        assert streamed == expected
        assert digest_of(file_chunks(w.log_path)) == expected
        grown = vm_rss_bytes() - rss_before
        assert grown < 50 * MIB, f"the test process grew by {grown / MIB:.0f} MiB"
    finally:
        w.wait()
        svc.remove(w.id or 0)  # do not leave a GiB in the temporary directory


# -- byte-exactness ------------------------------------------------------------------------
BINARY = bytes(range(256)) + b"\xff\xfe\x00\x00 \xc3( \xed\xa0\x80 \r\r\n\x1b[31m" + b"\xe2\x82"


def test_invalid_utf8_and_nul_bytes_survive(svc: WorkerService) -> None:
    w = svc.start(
        python_cmd(f"import sys; sys.stdout.buffer.write(bytes.fromhex({BINARY.hex()!r}))")
    )
    assert w.wait() == 0
    assert w.output() == BINARY
    assert b"".join(w.stream()) == BINARY
    assert b"".join(w.stream(chunk_size=7)) == BINARY
    assert "\ufffd" in w.tail(5)  # display decodes with replacement, the log is untouched


def test_stdout_and_stderr_are_merged_in_write_order(svc: WorkerService) -> None:
    w = svc.start("echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    assert w.wait() == 0
    assert w.output() == b"out1\nerr1\nout2\nerr2\n"


def test_job_without_output_streams_nothing(svc: WorkerService) -> None:
    w = svc.start("true")
    assert list(w.stream()) == []
    assert w.wait() == 0
    assert list(w.stream()) == []
    assert w.output() == b""
    assert w.tail() == ""


# -- from byte 0, live, to the end ---------------------------------------------------------
def test_late_reader_starts_from_byte_zero_then_follows_live(
    svc: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    w = svc.start(f"echo first; read go < {shlex.quote(str(fifo))}; echo second")
    read_until(w, b"first\n")
    chunks = w.stream(chunk_size=3)
    received = b""
    while received != b"first\n":
        received += next(chunks)
    say_go(fifo)
    received += b"".join(chunks)
    assert received == b"first\nsecond\n"
    assert w.state is JobState.SUCCEEDED


def test_chunks_respect_chunk_size(svc: WorkerService) -> None:
    w = svc.start("printf '%s' 0123456789abcdef")
    w.wait()
    chunks = list(w.stream(chunk_size=5))
    assert b"".join(chunks) == b"0123456789abcdef"
    assert all(1 <= len(c) <= 5 for c in chunks)


def test_stream_ends_when_the_job_ends_and_background_children_die(svc: WorkerService) -> None:
    w = svc.start("sleep 1000 & echo $!")
    data = b"".join(w.stream())  # would never end if the job's end waited for the sleep
    assert w.wait() == 0
    pid = int(data)
    with contextlib.suppress(ProcessLookupError):
        fd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([fd], [], [], 5)
            assert ready, "the job's leftover child was not killed"
        finally:
            os.close(fd)


def test_output_of_a_running_job_is_a_prefix_of_the_final_log(
    svc: WorkerService, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    w = svc.start(f"seq 1 1000; read go < {shlex.quote(str(fifo))}; seq 1001 2000")
    read_until(w, b"\n1000\n")
    partial = w.output()
    say_go(fifo)
    w.wait()
    final = w.output()
    assert final.startswith(partial)
    assert final == b"".join(b"%d\n" % i for i in range(1, 2001))


def test_tail_collapses_progress_bars(svc: WorkerService) -> None:
    w = svc.start("printf 'start\\n'; for i in 1 2 3; do printf '\\r%s%%' $i; done; echo")
    w.wait()
    assert w.tail(lines=2) == "start\n3%\n"
    assert w.output() == b"start\n\r1%\r2%\r3%\n"


def test_stream_from_an_offset_skips_what_was_read_and_follows_the_rest(
    svc: WorkerService, tmp_path: Path
) -> None:
    # `%job logs --follow` shows a snapshot, then continues from the snapshot's end.
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    code = (
        "import os, sys\n"
        "os.write(1, b'first\\n')\n"  # one write each: a line arrives whole
        "open(sys.argv[1]).readline()\n"
        "os.write(1, b'second\\n')\n"
    )
    w = svc.start(f"{python_cmd(code)} {shlex.quote(str(fifo))}")
    chunks = w.stream(offset=len(b"first\n"))
    with contextlib.closing(chunks):
        assert next(iter(w.stream())) == b"first\n"  # the first line is in the log
        say_go(fifo)
        assert b"".join(chunks) == b"second\n"
    assert w.wait() == 0
    assert b"".join(w.stream(offset=3)) == b"st\nsecond\n"
    assert b"".join(w.stream(offset=1000)) == b"", "past the end of a finished job: nothing"


# -- a log that is deleted -----------------------------------------------------------------
# A removed job's log goes (svc.remove, pruning), and anyone may delete a file by hand: a
# reader then ends, after what it could still read, instead of raising FileNotFoundError.
def watching(worker: Worker) -> bool:
    """Whether the engine watches the job's log (a reader waits at its end)."""
    assert worker.binding is not None
    return worker.binding.feed.watching


def parked_job(tmp_path: Path, *lines: str) -> tuple[str, list[Path]]:
    """A command that echoes each line, then waits for its FIFO's "go" (``say_go``)."""
    fifos = []
    parts = []
    for index, line in enumerate(lines):
        fifo = tmp_path / f"go{index}"
        os.mkfifo(fifo)
        fifos.append(fifo)
        parts.append(f"echo {shlex.quote(line)}; read go < {shlex.quote(str(fifo))}")
    return "; ".join(parts), fifos


class Reader(threading.Thread):
    """Streams a job's log in a thread; ``first`` is set once ``needle`` was read."""

    def __init__(self, worker: Worker, needle: bytes) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.needle = needle
        self.first = threading.Event()
        self.received = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in self.worker.stream():
                self.received += chunk
                if self.needle in self.received:
                    self.first.set()
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever it raised
            self.error = exc
        finally:
            self.first.set()


def test_a_reader_ends_when_the_log_is_deleted_mid_stream(
    svc: WorkerService, tmp_path: Path
) -> None:
    command, [fifo] = parked_job(tmp_path, "first")
    w = svc.start(command)
    chunks = w.stream()
    with contextlib.closing(chunks):
        received = b""
        while received != b"first\n":
            received += next(chunks)
        os.unlink(w.log_path)
        assert list(chunks) == [], "nothing more: the log is gone"
    assert w.state is JobState.RUNNING, "the stream ended although the job runs on"
    say_go(fifo)
    assert w.wait() == 0


def test_stream_of_a_job_whose_log_was_deleted_ends_at_once(
    svc: WorkerService, tmp_path: Path
) -> None:
    command, [fifo] = parked_job(tmp_path, "first")
    w = svc.start(command)
    read_until(w, b"first\n")
    os.unlink(w.log_path)
    assert list(w.stream()) == [], "a deleted log has no output"
    assert list(w.stream(offset=3)) == []
    assert w.state is JobState.RUNNING
    say_go(fifo)
    assert w.wait() == 0
    assert list(w.stream()) == [], "nor once the job has ended"


def test_a_waiting_reader_woken_by_output_after_the_log_was_deleted_ends(
    svc: WorkerService, tmp_path: Path
) -> None:
    command, [go, end] = parked_job(tmp_path, "first", "second")
    w = svc.start(command)
    reader = Reader(w, b"first\n")
    reader.start()
    try:
        assert reader.first.wait(20), "the reader read nothing"
        assert reader.error is None
        wait_until(lambda: watching(w), 20, message="the reader to wait at the log's end")
        os.unlink(w.log_path)
        say_go(go)  # the job writes "second" to its (deleted) log; the write wakes the reader
        reader.join(20)
        assert not reader.is_alive(), "the reader still waits"
        assert reader.error is None
        # Whether it still read "second" depends on what woke it first: the write, or the
        # deletion itself (the next test).
        assert reader.received in (b"first\n", b"first\nsecond\n")
        assert w.state is JobState.RUNNING
    finally:
        say_go(end)
        reader.join(20)
    assert w.wait() == 0


def test_a_waiting_reader_wakes_when_the_log_is_deleted(svc: WorkerService, tmp_path: Path) -> None:
    command, [go] = parked_job(tmp_path, "first")
    w = svc.start(command)
    reader = Reader(w, b"first\n")
    reader.start()
    try:
        assert reader.first.wait(20), "the reader read nothing"
        assert reader.error is None
        wait_until(lambda: watching(w), 20, message="the reader to wait at the log's end")
        # Nothing else happens: the job waits, silent. The unlink alone must wake the reader
        # (the watcher's IN_ATTRIB: the log's link count fell).
        os.unlink(w.log_path)
        reader.join(5)
        assert not reader.is_alive(), "the reader did not notice that the log was deleted"
        assert (reader.error, reader.received) == (None, b"first\n")
        assert w.state is JobState.RUNNING
    finally:
        say_go(go)
        reader.join(20)
    assert w.wait() == 0
