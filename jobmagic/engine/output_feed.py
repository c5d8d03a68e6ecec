"""Where a job's output goes once it is in its log: stream readers and logging handlers.

The log file is the only copy; this reads it only for someone who asked. Readers of
``stream()`` read it themselves and sleep at its end; logging handlers attached with
``add_handler`` (or to the whole service with ``WorkerService.add_handler``) get it as
log records, in batches. While neither waits, the log is not even watched: a job's output
costs the kernel nothing until someone looks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Protocol

from jobmagic.core.files import file_size
from jobmagic.text import terminal

from .shared_handlers import Handlers, SharedHandlers
from .watcher import FileWatch, Watcher

#: Seconds output may gather before it is handed to the job's logging handlers.
EMIT_INTERVAL = 0.05
#: The largest output chunk in one log record, in bytes.
EMIT_CHUNK = 4 << 20
#: Readers of a fast writer are woken at most this often (seconds); a writer that pauses
#: longer than this wakes them at once.
READER_WAKE_INTERVAL = 0.002


class LoggerSource(Protocol):
    """What has the logger a job's records go to (its Worker)."""

    @property
    def logger(self) -> logging.Logger:
        """The job's logger."""
        ...


class OutputFeed:
    """The readers and handlers of one job's log.

    Parameters
    ----------
    log_path:
        The job's log (it exists from the moment the job is added).
    job_id:
        Put on every record as ``record.job_id``.
    source:
        Whose logger records are emitted to (the job's Worker; its logger is made on
        first use).
    watcher:
        Watches the log while someone waits for it, and runs the batch timers.
    shared:
        The handlers of the whole service (``WorkerService.add_handler``), if any; the
        records reach them through the job logger's parent.
    """

    def __init__(
        self,
        log_path: Path,
        job_id: int,
        source: LoggerSource,
        watcher: Watcher,
        shared: SharedHandlers | None = None,
    ) -> None:
        self._log_path = log_path
        self._job_id = job_id
        self._source = source
        self._watcher = watcher
        self._shared = shared
        # Guards every field below; `_changed` is notified whenever the log may have grown
        # or the job started or ended (`_generation` then moves). It is made when a reader
        # first waits: most jobs never have one, and a Condition costs ~1.5 kB.
        self._lock = threading.RLock()
        self._changed: threading.Condition | None = None
        self._generation = 0
        self._running = False
        self._ended = False
        self._handlers: dict[logging.Handler, int | None] = {}
        # Handlers that asked for batches at most every so many seconds (add_handler).
        self._intervals: dict[logging.Handler, float] = {}
        self._last_emit = 0.0  # time.monotonic() of the last batch
        self._emitting = False  # records are being emitted from _emit_offset on
        self._emit_offset = 0
        self._decoder = terminal.incremental_decoder()
        self._emit_scheduled = False
        self._reader_waiting = False  # a stream() reader waits at the log's end
        self._wake_scheduled = False  # a timer will wake the waiting readers
        self._last_reader_wake = 0.0  # time.monotonic() of the last wake
        self._file_watch: FileWatch | None = None

    @property
    def watching(self) -> bool:
        """True while the log is watched for writes (someone waits for output)."""
        with self._lock:
            return self._file_watch is not None

    # -- the job's life ----------------------------------------------------------------
    def started(self) -> None:
        """The job runs now: handlers that were waiting for it get its output from byte 0."""
        if self._shared is not None:
            self._shared.follow(self)
        with self._lock:
            self._running = True
            if self._listening():
                self._start_emitting(0)
            self._bump()

    def emit_final(self) -> None:
        """The job has ended: hand the handlers what is left (a split character too)."""
        with self._lock:
            self._emit_pending(final=True)
            self._emitting = False

    def ended(self) -> None:
        """The job has ended and says so: readers finish, the log is no longer watched."""
        if self._shared is not None:
            self._shared.unfollow(self)
        with self._lock:
            self._running = False
            self._ended = True
            self._emitting = False
            self._update_file_watch()
            self._bump()

    def end_without_output(self) -> None:
        """The job will never run here (another kernel's, or finished): readers read to the end."""
        with self._lock:
            self._ended = True
            self._bump()

    def _bump(self) -> None:
        self._generation += 1
        if self._changed is not None:
            self._changed.notify_all()

    # -- readers ---------------------------------------------------------------------------
    def stream(self, offset: int = 0, chunk_size: int = 65536) -> Generator[bytes, None, None]:
        """Yield the log from byte ``offset``, then live output until the job has ended.

        A deleted log ends the stream too (the job was removed or pruned, or someone
        deleted the file): the reader gets what it can still read, then the generator
        returns. A log that is gone before the first read yields nothing: a removed job
        has no output. What a running job writes after its log was deleted goes to a file
        nobody can open, so its stream ends then, before the job does.
        """
        try:
            fd = os.open(self._log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # its log exists from the job's creation on: it was deleted
        try:
            position = offset
            while True:
                with self._lock:
                    generation = self._generation
                    ended = self._ended
                data = os.pread(fd, chunk_size, position)
                if data:
                    position += len(data)
                    yield data
                    continue
                if ended or not self._wait_for_more(fd, position, generation):
                    return
        finally:
            os.close(fd)

    def _wait_for_more(self, fd: int, position: int, generation: int) -> bool:
        """Block a reader at ``position`` (the log's end) until it grows or the job ends.

        Returns False, without waiting, when the log was deleted: nothing more will come.
        """
        with self._lock:
            if self._generation != generation:
                return True
            # The log is watched only while a reader waits at its end: a fast writer then
            # costs one wake-up per time a reader catches up, not one per block written.
            self._reader_waiting = True
            if not self._update_file_watch():
                return False  # no file at the log's path any more
            status = os.fstat(fd)
            if status.st_size > position:
                return True  # written between the reader's last read and the watch
            if status.st_nlink == 0:
                return False  # deleted (while the file was open: the watch still works)
            if self._changed is None:
                self._changed = threading.Condition(self._lock)
            while self._generation == generation:
                self._changed.wait()
            return True

    # -- handlers --------------------------------------------------------------------------
    def add_handler(
        self,
        handler: logging.Handler,
        backlog_bytes: int = 0,
        tail_bytes: int | None = None,
        interval: float | None = None,
    ) -> None:
        """Attach ``handler`` to the job's logger and feed it output from now on.

        See :meth:`jobmagic.Worker.add_handler`.
        """
        with self._lock:
            end = self._emit_offset if self._emitting else file_size(self._log_path)
            if backlog_bytes > 0:
                self._replay(handler, max(0, end - backlog_bytes), end)
            self._handlers[handler] = tail_bytes
            if interval is None:
                self._intervals.pop(handler, None)
            else:
                self._intervals[handler] = interval
            self._source.logger.addHandler(handler)
            if self._running and not self._emitting:
                self._start_emitting(end)

    def remove_handler(self, handler: logging.Handler) -> None:
        """Detach a handler added with :meth:`add_handler`."""
        with self._lock:
            self._handlers.pop(handler, None)
            self._intervals.pop(handler, None)
            self._source.logger.removeHandler(handler)
            self.listeners_changed()

    def listeners_changed(self) -> None:
        """The service's shared handlers changed: start or stop feeding them."""
        with self._lock:
            listening = self._listening()
            if self._running and listening and not self._emitting:
                self._start_emitting(file_size(self._log_path))
            elif self._emitting and not listening:
                self._emitting = False
                self._update_file_watch()

    def _shared_handlers(self) -> Handlers:
        return self._shared.handlers() if self._shared is not None else {}

    def _listening(self) -> bool:
        return bool(self._handlers) or bool(self._shared_handlers())

    def _emit_interval(self) -> float:
        """Seconds between two batches while output keeps coming (lock held).

        What the most eager handler asks for: EMIT_INTERVAL as soon as one asked for
        nothing (the service's shared handlers never do).
        """
        if self._shared_handlers() or len(self._intervals) < len(self._handlers):
            return EMIT_INTERVAL
        return max(EMIT_INTERVAL, min(self._intervals.values(), default=EMIT_INTERVAL))

    def _tail_bytes(self) -> int | None:
        """How much of the output's end the handlers need; None if one wants it all."""
        wanted = [*self._handlers.values(), *self._shared_handlers().values()]
        if not wanted or any(size is None for size in wanted):
            return None
        return max(size for size in wanted if size is not None)

    def _replay(self, handler: logging.Handler, start: int, end: int) -> None:
        """Hand bytes [start, end) of the log to one handler (lock held)."""
        try:
            with open(self._log_path, "rb") as log:
                log.seek(start)
                data = log.read(end - start)
        except OSError:
            return
        if start > 0 and b"\n" in data:
            data = data[data.index(b"\n") + 1 :]  # begin at a whole line
        if data:
            logger = self._source.logger
            record = logger.makeRecord(
                logger.name,
                logging.INFO,
                "(jobmagic)",
                0,
                terminal.decode(data),
                (),
                None,
                extra={"data": data, "job_id": self._job_id},
            )
            handler.handle(record)

    def _start_emitting(self, offset: int) -> None:
        """Begin feeding the logger from ``offset`` of the log (lock held)."""
        self._emit_offset = offset
        self._decoder = terminal.incremental_decoder()
        self._emitting = True
        self._update_file_watch()
        self._emit_pending(final=False)

    def _emit_pending(self, final: bool) -> None:
        """Send the log's new bytes to the logger (lock held)."""
        if not self._emitting:
            return
        logger = self._source.logger
        try:
            fd = os.open(self._log_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            # Up to the size seen now, not chasing a writer that keeps writing: the rest
            # goes in the next batch.
            end = os.fstat(fd).st_size
            extra: dict[str, object] = {"job_id": self._job_id}
            tail = self._tail_bytes()
            if tail is not None and end - self._emit_offset > tail:
                # Every handler shows only the end: skip what it would throw away.
                extra["skipped_bytes"] = end - tail - self._emit_offset
                self._emit_offset = end - tail
                self._decoder = terminal.incremental_decoder()
            while self._emit_offset < end:
                data = os.pread(fd, min(EMIT_CHUNK, end - self._emit_offset), self._emit_offset)
                if not data:
                    break
                self._emit_offset += len(data)
                logger.info(self._decoder.decode(data), extra={**extra, "data": data})
                extra.pop("skipped_bytes", None)
            if final:
                rest = self._decoder.decode(b"", final=True)
                if rest:
                    logger.info(rest, extra={"data": b"", "job_id": self._job_id})
        finally:
            os.close(fd)

    # -- watching the log --------------------------------------------------------------------
    def _update_file_watch(self) -> bool:
        """Watch the log only while a reader waits at its end or handlers await output.

        Returns False when the log should be watched but has gone from its path (deleted
        or moved away); True otherwise.
        """
        handlers_waiting = self._emitting and not self._emit_scheduled
        wanted = (self._reader_waiting or handlers_waiting) and self._running
        if wanted and self._file_watch is None:
            try:
                # One-shot: _on_written ends the watch anyway, and a one-shot watch costs a
                # writer at full speed one event, not one per write() until we read them.
                self._file_watch = self._watcher.watch_file(
                    str(self._log_path), self._on_written, once=True
                )
            except FileNotFoundError:
                return False
        elif not wanted and self._file_watch is not None:
            self._watcher.unwatch_file(self._file_watch)
            self._file_watch = None
        return True

    def _on_written(self) -> None:
        with self._lock:
            if self._reader_waiting and not self._wake_scheduled:
                delay = self._last_reader_wake + READER_WAKE_INTERVAL - time.monotonic()
                if delay <= 0:
                    self._wake_readers_locked()
                else:
                    self._wake_scheduled = True
                    self._watcher.call_later(delay, self._wake_readers)
            self._reader_waiting = False  # they are woken now or by the timer
            # Handlers get output in batches: a fast writer writes block after block, and
            # a record per block would cost the kernel more than the writer's own work.
            if self._emitting and not self._emit_scheduled:
                self._emit_scheduled = True
                # EMIT_INTERVAL after the first write since the last batch; while writes
                # keep coming, no sooner than the handlers' interval after that batch.
                delay = max(
                    EMIT_INTERVAL, self._last_emit + self._emit_interval() - time.monotonic()
                )
                self._watcher.call_later(delay, self._emit_batch)
            self._update_file_watch()

    def _wake_readers(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            self._wake_readers_locked()

    def _wake_readers_locked(self) -> None:
        self._last_reader_wake = time.monotonic()
        self._bump()

    def _emit_batch(self) -> None:
        with self._lock:
            self._emit_scheduled = False
            self._last_emit = time.monotonic()
            self._update_file_watch()  # watch again first, then read: no write slips by
            self._emit_pending(final=False)
