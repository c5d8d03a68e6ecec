"""``Worker``: one job, its process, its log, and everyone waiting on it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import terminal_text
from .errors import JobmagicError, StoreError
from .home import create_private_file
from .procinfo import process_start_time, same_process, signal_job
from .spawn import spawn
from .state import JobState
from .store import JobRecord, final_state, read_status_file, stop_marker_path

if TYPE_CHECKING:
    from .service import WorkerService
    from .watcher import FileWatch, Timer

#: How much of a log's end is read to explain a failure ("command not found: pyhton").
_DIAGNOSIS_BYTES = 4096
#: Seconds output may gather before it is handed to the job's logging handlers.
_EMIT_INTERVAL = 0.05
#: The largest output chunk in one log record, in bytes.
_EMIT_CHUNK = 4 << 20
#: Readers of a fast writer are woken at most this often (seconds); a writer that pauses
#: longer than this wakes them at once.
_READER_WAKE_INTERVAL = 0.002
# The shell's exit statuses for "not found" and "found but not executable".
_NOT_FOUND_STATUS = 127
_NOT_EXECUTABLE_STATUS = 126
_NOT_FOUND = re.compile(
    rb"(?:^|\n)[^\n]*?:(?: line)? ?\d*:? ?([^\n:]+): (?:command )?not found\s*$"
)
_NOT_EXECUTABLE = re.compile(rb"(?:^|\n)[^\n]*?: ?\d*:? ?([^\n:]+): Permission denied\s*$")


class Worker:
    r"""One job: a shell command run in its own process group, its output in a log file.

    Create it with :meth:`WorkerService.start`, or build it and hand it to
    :meth:`WorkerService.add`, then call :meth:`start` (the original two-step design).
    Every method is safe to call from any thread.

    Parameters
    ----------
    command:
        A shell command line, run as ``shell -c command``.
    logger:
        Where output chunks go while handlers listen; ``None`` means a child of the
        service's logger named after the job id.
    name:
        An alias for the id; unique among queued and running jobs.
    cwd:
        Working directory; ``None`` means the kernel's.
    env:
        Variables added to the kernel's environment (``PYTHONUNBUFFERED=1`` is set unless
        given). Only their names are stored, never their values.
    timeout:
        Seconds after which the job is stopped and marked "timed out"; ``None``: no limit.
    pty:
        Run under a pseudo-terminal, for programs that only show progress bars or colours
        on a terminal (lines then end in ``\r\n``).
    detach:
        Keep the job running when its kernel shuts down or restarts.
    shell:
        The shell that runs ``command``.
    """

    def __init__(
        self,
        command: str,
        logger: logging.Logger | None = None,
        *,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        pty: bool = False,
        detach: bool = False,
        shell: str = "/bin/sh",
    ) -> None:
        # Callers may be untyped notebook code: check what the annotations promise.
        if not isinstance(command, str) or not command.strip():  # type: ignore[redundant-expr]
            raise ValueError("empty command")
        for key, value in (env or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):  # type: ignore[redundant-expr]
                raise TypeError(f"environment variable {key!r} must map a str to a str")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        self.command = command
        self.name = name
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.env = dict(env or {})
        self.timeout = timeout
        self.pty = pty
        self.detach = detach
        self.shell = shell
        self._logger = logger

        # Guards every field below that changes after construction; `_changed` is notified
        # whenever the state changes or the log grows (`_log_generation`).
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._service: WorkerService | None = None
        self._record: JobRecord | None = None
        self._owned = True
        self._state = JobState.QUEUED
        self._exit_code: int | None = None
        self._error: str | None = None
        self._pid: int | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._launched = False
        self._stop_requested_by: str | None = None
        self._timers: list[Timer] = []
        self._log_generation = 0
        self._reader_waiting = False  # a stream() reader waits at the log's end
        self._file_watch: FileWatch | None = None
        self._handlers_listening = False
        self._emit_offset = 0
        self._decoder = terminal_text.incremental_decoder()
        self._done_callbacks: list[Callable[[Worker], None]] = []
        self._emit_scheduled = False
        self._wake_scheduled = False  # a timer will wake the waiting readers
        self._last_reader_wake = 0.0  # time.monotonic() of the last wake
        self._draining: set[int] = set()  # pidfds of group members left after the leader

    # -- identity and status ---------------------------------------------------------
    @property
    def id(self) -> int | None:
        """The store's id for this job (None until added to a service)."""
        return self._record.id if self._record is not None else None

    @property
    def state(self) -> JobState:
        """The job's :class:`JobState`."""
        return self._state

    @property
    def exit_code(self) -> int | None:
        """The exit code; negative N means killed by signal N; None while it runs."""
        return self._exit_code

    @property
    def error(self) -> str | None:
        """One line a person can act on when the job failed or was stopped, else None."""
        return self._error

    @property
    def pid(self) -> int | None:
        """The pid of the job's process group leader (its wrapper)."""
        return self._pid

    @property
    def started_at(self) -> float | None:
        """When the process started, in epoch seconds."""
        return self._started_at

    @property
    def ended_at(self) -> float | None:
        """When the job ended, in epoch seconds; None while queued or running."""
        return self._ended_at

    @property
    def runtime(self) -> float | None:
        """Seconds it has run (so far), or None before it started."""
        if self._started_at is None:
            return None
        return (self._ended_at or time.time()) - self._started_at

    @property
    def log_path(self) -> Path:
        """The log file holding the job's merged stdout and stderr."""
        if self._record is None:
            raise JobmagicError("the job has no log until it is added to a WorkerService")
        return Path(self._record.log_path)

    @property
    def orphaned(self) -> bool:
        """True for another kernel's RUNNING job whose kernel is dead (see ``adopt``)."""
        return not self._owned and self._record is not None and self._record.orphaned

    @property
    def owned(self) -> bool:
        """True when this kernel started or adopted the job and so controls it."""
        return self._owned

    @property
    def logger(self) -> logging.Logger:
        """The logger that receives this job's output chunks while handlers listen."""
        if self._logger is None:
            if self._service is None or self.id is None:
                raise JobmagicError("the job has no logger until it is added to a WorkerService")
            self._logger = self._service.logger.getChild(str(self.id))
            if self._logger.level == logging.NOTSET:
                self._logger.setLevel(logging.INFO)
        return self._logger

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        code = f" exit_code={self._exit_code}" if self._exit_code is not None else ""
        return f"<Worker {self.id}{label} {self._state.value}{code}: {self.command!r}>"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Worker:
        """Spawn the process. A command that cannot start leaves the job FAILED.

        Raises
        ------
        JobmagicError
            When the job was already started.
        """
        if self._service is None:
            from .service import get_service

            get_service().add(self)
        service = self._service
        assert service is not None
        assert self._record is not None
        with self._lock:
            if self._stop_requested_by is not None and not self._launched:
                return self  # stopped while queued: there is nothing left to start
            if self._launched or self._state is not JobState.QUEUED or not self._owned:
                raise JobmagicError(f"job {self.id} was already started")
            self._launched = True
            failure = self._launch(service)
        if failure is not None:
            self._finish(JobState.FAILED, None, failure)
            return self
        service._job_changed(self)
        return self

    def _launch(self, service: WorkerService) -> str | None:
        """Spawn under the lock; returns why it could not start, or None."""
        record = self._record
        assert record is not None
        if self.cwd is not None and not os.path.isdir(self.cwd):
            return f"working directory not found: {self.cwd}"
        try:
            # The wrapper writes the status file with `>`, which keeps an existing file's
            # mode: create it private first.
            os.close(create_private_file(Path(record.status_path)))
            log_fd = create_private_file(Path(record.log_path))
        except OSError as exc:
            return (
                f"cannot create the job's files in {Path(record.log_path).parent}: {exc.strerror}"
            )
        try:
            popen = spawn(
                self.command,
                log_fd=log_fd,
                status_path=record.status_path,
                stop_path=stop_marker_path(record),
                shell=self.shell,
                cwd=self.cwd,
                env=self.env,
                pty=self.pty,
            )
        except OSError as exc:
            return f"could not start: {exc.strerror or exc}"
        finally:
            os.close(log_fd)
        self._popen = popen
        self._pid = popen.pid
        self._started_at = time.time()
        self._pidfd = os.pidfd_open(popen.pid)
        self._state = JobState.RUNNING
        try:
            service.store.update(
                record.id,
                state=JobState.RUNNING,
                pid=popen.pid,
                pid_start=process_start_time(popen.pid),
                pgid=popen.pid,
                started_at=self._started_at,
            )
        except StoreError as exc:
            self._error = f"the job runs but its record could not be saved: {exc}"
        service.watcher.watch_exit(self._pidfd, self._on_exit)
        if self.timeout is not None:
            self._timers.append(service.watcher.call_later(self.timeout, self._on_timeout))
        if self._logger_listens():
            self._start_emitting(from_offset=0)
        self._log_generation += 1
        self._update_file_watch()
        self._changed.notify_all()
        return None

    def _attach_adopted(self, service: WorkerService, record: JobRecord) -> None:
        """Follow a running job another (dead) kernel started; called by ``adopt``."""
        pidfd = os.pidfd_open(record.pid or 0)
        if not same_process(record.pid, record.pid_start):
            os.close(pidfd)
            raise JobmagicError(f"job {record.id} is no longer running")
        with self._lock:
            self._pidfd = pidfd
            self._pid = record.pid
            self._launched = True
            self._state = JobState.RUNNING
            self._started_at = record.started_at
            self._stop_requested_by = record.stop_requested_by
            if self._logger_listens():
                self._start_emitting(from_offset=0)
        service.watcher.watch_exit(pidfd, self._on_exit)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the job ends; return its exit code.

        Parameters
        ----------
        timeout:
            Seconds to wait at most; ``None`` waits as long as it takes.

        Returns
        -------
        The exit code, or None when the timeout passed first (or no exit code is known).
        """
        self._refresh_foreign()
        with self._lock:
            if not self._state.is_finished and not self._owned:
                raise JobmagicError(self._not_owned_message())
            if not self._state.is_finished and self._on_watcher_thread():
                raise JobmagicError(
                    "wait() in a jobmagic event listener would block the thread that sees "
                    "jobs end; use add_done_callback() instead"
                )
            self._changed.wait_for(lambda: self._state.is_finished, timeout)
            return self._exit_code

    def _on_watcher_thread(self) -> bool:
        service = self._service
        return service is not None and threading.current_thread() is service.watcher.thread

    async def wait_async(self, timeout: float | None = None) -> int | None:  # noqa: ASYNC109 - mirrors wait(timeout)
        """Like :meth:`wait`, without blocking the event loop (``await w.wait_async()``)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def finished(_worker: Worker) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(resolve)

        self.add_done_callback(finished)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return None
        finally:
            self._remove_done_callback(finished)
        return self._exit_code

    def __await__(self) -> Generator[Any, None, int | None]:
        return self.wait_async().__await__()

    def add_done_callback(self, callback: Callable[[Worker], None]) -> None:
        """Call ``callback(worker)`` once the job has ended (now, if it has already)."""
        with self._lock:
            if not self._state.is_finished:
                if not self._owned:
                    raise JobmagicError(self._not_owned_message())
                self._done_callbacks.append(callback)
                return
        callback(self)

    def _remove_done_callback(self, callback: Callable[[Worker], None]) -> None:
        with self._lock:
            if callback in self._done_callbacks:
                self._done_callbacks.remove(callback)

    def stop(self, timeout: float | None = None, wait: bool = True, *, by: str = "kernel") -> None:
        """Stop the whole job: SIGTERM to its process group, SIGKILL after ``timeout``.

        Idempotent, and safe from any thread while others wait or stream. A job that has
        already ended is left as it is.

        Parameters
        ----------
        timeout:
            Seconds between SIGTERM and SIGKILL; ``None`` means the service's
            ``stop_timeout`` (5 s unless configured).
        wait:
            Block until the job has ended.
        by:
            Who asks, as recorded in the store: "kernel", "ui" or "timeout".
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        if not self._owned:
            self._stop_foreign(by)
            return
        service = self._service
        with self._lock:
            if self._state.is_finished:
                return
            first_request = self._stop_requested_by is None
            if first_request:
                self._stop_requested_by = by
            queued = self._state is JobState.QUEUED and first_request
            if self._state is JobState.RUNNING and service is not None:
                if first_request:
                    self._mark_stop_requested()
                    self._signal(signal.SIGTERM)
                # A later stop with its own timeout may only shorten the grace period.
                if first_request or timeout is not None:
                    grace = service.stop_timeout if timeout is None else timeout
                    self._timers.append(service.watcher.call_later(grace, self._kill))
        if service is not None and self.id is not None and first_request:
            with contextlib.suppress(StoreError):
                service.store.request_stop(self.id, by)
        if queued:
            self._finish(JobState.STOPPED, None, None)
        # A listener or done callback runs on the watcher thread, which must stay free to
        # see the job end: from there, stop() asks and returns.
        if wait and not self._on_watcher_thread():
            with self._lock:
                self._changed.wait_for(lambda: self._state.is_finished)

    def _mark_stop_requested(self) -> None:
        """Leave the marker that a wrapper still starting up checks before the command."""
        if self._record is not None:
            with contextlib.suppress(OSError):
                os.close(create_private_file(Path(stop_marker_path(self._record))))

    def _signal(self, sig: int) -> None:
        """Signal the job's group (the lock is held and the job is running)."""
        if self._popen is not None:
            # Our own child is not reaped before `_on_exit`, so its pid (the group id)
            # cannot have been reused: signalling the group is safe.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, sig)
        elif self._record is not None:
            signal_job(self._record.pid, self._record.pid_start, self._record.pgid, sig)

    def _kill(self) -> None:
        with self._lock:
            if not self._state.is_finished:
                self._signal(signal.SIGKILL)

    def _on_timeout(self) -> None:
        self.stop(wait=False, by="timeout")

    def _on_exit(self) -> None:
        """The wrapper exited (watcher thread): drain a stopping group, then finish."""
        # The command's shell may die of SIGTERM while the program it ran is still shutting
        # down gracefully: give the rest of the group its grace period (the SIGKILL timer is
        # still armed). The unreaped wrapper keeps the group id ours meanwhile.
        stopping = self._popen is not None and self._stop_requested_by is not None
        if stopping and self._watch_group_members():
            return
        self._complete_exit()

    def _watch_group_members(self) -> bool:
        """Watch the group's live processes; True while any is left."""
        assert self._popen is not None
        assert self._service is not None
        leader = self._popen.pid
        # Exits that arrive together (stop_all) share one read of /proc.
        snapshot = self._service.watcher.iteration
        for pid in self._service.process_groups.members(leader, snapshot, exclude=leader):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            self._service.watcher.watch_exit(pidfd, functools.partial(self._on_member_exit, pidfd))
            self._draining.add(pidfd)
        return bool(self._draining)

    def _on_member_exit(self, pidfd: int) -> None:
        os.close(pidfd)
        self._draining.discard(pidfd)
        if not self._draining and not self._watch_group_members():
            self._complete_exit()

    def _complete_exit(self) -> None:
        """Reap the wrapper, read the exit status it wrote, record the end."""
        status: int | None = None
        if self._popen is not None:
            # Kill whatever the command left running in its group before reaping the
            # leader: until then the group id cannot be reused by an unrelated process.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            status = self._popen.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        record = self._record
        assert record is not None
        exit_code = read_status_file(record.status_path)
        if exit_code is None:
            exit_code = status
        if self._stop_requested_by is None and self._service is not None:
            # Someone else (the Jobs sidebar) may have asked it to stop.
            with contextlib.suppress(StoreError):
                stored = self._service.store.get(record.id)
                if stored is not None:
                    self._stop_requested_by = stored.stop_requested_by
        state, error = final_state(exit_code, self._stop_requested_by, self.timeout)
        if state is JobState.FAILED and exit_code in (_NOT_EXECUTABLE_STATUS, _NOT_FOUND_STATUS):
            error = self._diagnose(exit_code) or error
        self._finish(state, exit_code, error)

    def _diagnose(self, exit_code: int) -> str | None:
        """Explain exit 127/126 from the shell's message at the end of the log."""
        try:
            tail = terminal_text.read_tail(self.log_path, _DIAGNOSIS_BYTES).rstrip()
        except OSError:
            return None
        pattern = _NOT_FOUND if exit_code == _NOT_FOUND_STATUS else _NOT_EXECUTABLE
        match = pattern.search(tail)
        if match is None:
            return None
        what = terminal_text.decode(match.group(1)).strip()
        if exit_code == _NOT_FOUND_STATUS:
            return f"command not found: {what}"
        return f"not executable: {what}"

    def _finish(self, state: JobState, exit_code: int | None, error: str | None) -> None:
        service = self._service
        ended_at = time.time()
        if service is not None and self.id is not None:
            try:
                service.store.finish(self.id, state, exit_code, error, ended_at=ended_at)
            except StoreError as exc:
                error = f"{error}; " if error else ""
                error += f"the job's end could not be recorded: {exc}"
        with self._lock:
            self._emit_pending_output(final=True)
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._state = state
            self._exit_code = exit_code
            if error is not None or self._error is None:
                self._error = error
            self._ended_at = ended_at
            self._popen = None
            self._stop_emitting_watch()
            self._log_generation += 1
            self._changed.notify_all()
            callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logging.getLogger("jobmagic").exception("job done callback failed")
        if service is not None:
            service._job_changed(self)
            service._job_finished()

    # -- output ------------------------------------------------------------------------
    def output(self) -> bytes:
        """Everything the job has written so far, byte for byte."""
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 20) -> str:
        r"""The last ``lines`` lines as a terminal would show them (``\r`` collapsed)."""
        try:
            return terminal_text.tail_of_log(self.log_path, lines)
        except FileNotFoundError:
            return ""

    def stream(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """Yield the log from its first byte, then live output until the job has ended.

        Any number of readers may stream at once; each has its own position. The iterator
        ends once the job has ended and every byte was delivered.
        """
        self._refresh_foreign()
        with self._lock:
            if not self._owned and not self._state.is_finished:
                raise JobmagicError(self._not_owned_message())
        try:
            fd = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self._state.is_finished:
                return
            raise
        try:
            while True:
                with self._lock:
                    generation = self._log_generation
                    ended = self._state.is_finished
                data = os.read(fd, chunk_size)
                if data:
                    yield data
                    continue
                if ended:
                    return
                self._wait_for_more(fd, generation)
        finally:
            os.close(fd)

    def _wait_for_more(self, fd: int, generation: int) -> None:
        """Block a reader that reached the log's end until it grows or the job ends."""
        with self._lock:
            if self._log_generation != generation:
                return
            # The log is watched only while a reader waits at its end: a fast writer then
            # costs one wake-up per time a reader catches up, not one per block written.
            self._reader_waiting = True
            self._update_file_watch()
            if os.fstat(fd).st_size > os.lseek(fd, 0, os.SEEK_CUR):
                return  # written between the reader's last read and the watch
            while self._log_generation == generation:
                self._changed.wait()

    def add_handler(self, handler: logging.Handler, backlog_bytes: int = 0) -> None:
        """Attach a logging handler to this job's logger and start feeding it output.

        Records carry decoded text (``record.getMessage()``), the raw bytes
        (``record.data``) and ``record.job_id``. A handler with an int attribute
        ``tail_bytes`` says it shows only the end of the output: while every handler says
        so, output that outruns them is skipped up to the last ``tail_bytes`` bytes, and
        the first record after a skip has ``record.skipped_bytes``.

        Parameters
        ----------
        handler:
            The handler; it receives output written from now on.
        backlog_bytes:
            Also hand it up to this many bytes of what was written before (starting at a
            line boundary), with nothing lost or repeated between backlog and live output.
        """
        with self._lock:
            end = self._emit_offset if self._handlers_listening else _file_size(self.log_path)
            if backlog_bytes > 0:
                self._replay(handler, max(0, end - backlog_bytes), end)
            self.logger.addHandler(handler)
            if self._state is JobState.RUNNING and not self._handlers_listening:
                self._start_emitting(from_offset=end)

    def _replay(self, handler: logging.Handler, start: int, end: int) -> None:
        """Hand bytes [start, end) of the log to one handler (lock held)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                data = log.read(end - start)
        except OSError:
            return
        if start > 0 and b"\n" in data:
            data = data[data.index(b"\n") + 1 :]  # begin at a whole line
        if data:
            record = self.logger.makeRecord(
                self.logger.name,
                logging.INFO,
                "(jobmagic)",
                0,
                terminal_text.decode(data),
                (),
                None,
                extra={"data": data, "job_id": self.id},
            )
            handler.handle(record)

    def remove_handler(self, handler: logging.Handler) -> None:
        """Detach a handler added with :meth:`add_handler`."""
        self.logger.removeHandler(handler)
        with self._lock:
            if self._handlers_listening and not self._logger_listens():
                self._handlers_listening = False
                self._update_file_watch()

    def _logger_listens(self) -> bool:
        if self._service is None or self.id is None:
            return False
        # Only a logger someone asked for (w.logger, add_handler) can have handlers of its
        # own: do not create one per job just to look, loggers are never freed.
        if self._logger is not None and self._logger.handlers:
            return True
        return bool(self._service.logger.handlers)

    def _start_emitting(self, from_offset: int) -> None:
        """Begin feeding the logger from ``from_offset`` of the log (lock held)."""
        self._emit_offset = from_offset
        self._decoder = terminal_text.incremental_decoder()
        self._handlers_listening = True
        self._update_file_watch()
        self._emit_pending_output(final=False)

    def _handlers_tail_bytes(self) -> int | None:
        """How much of the output end the handlers need, or None if one wants it all."""
        handlers = [*self.logger.handlers]
        if self._service is not None:
            handlers += self._service.logger.handlers
        wanted = [getattr(handler, "tail_bytes", None) for handler in handlers]
        if not wanted or not all(isinstance(size, int) for size in wanted):
            return None
        return max(size for size in wanted if isinstance(size, int))

    def _emit_pending_output(self, final: bool) -> None:
        """Send the log's new bytes to the logger (lock held)."""
        if not self._handlers_listening or self._record is None:
            return
        logger = self.logger
        try:
            fd = os.open(self._record.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            # Up to the size seen now, not chasing a writer that keeps writing: the rest
            # goes in the next batch.
            end = os.fstat(fd).st_size
            extra: dict[str, object] = {"job_id": self.id}
            tail = self._handlers_tail_bytes()
            if tail is not None and end - self._emit_offset > tail:
                # Every handler shows only the end: skip what it would throw away.
                extra["skipped_bytes"] = end - tail - self._emit_offset
                self._emit_offset = end - tail
                self._decoder = terminal_text.incremental_decoder()
            while self._emit_offset < end:
                data = os.pread(fd, min(_EMIT_CHUNK, end - self._emit_offset), self._emit_offset)
                if not data:
                    break
                self._emit_offset += len(data)
                text = self._decoder.decode(data)
                logger.info(text, extra={**extra, "data": data})
                extra.pop("skipped_bytes", None)
            if final:
                rest = self._decoder.decode(b"", final=True)
                if rest:
                    logger.info(rest, extra={"data": b"", "job_id": self.id})
        finally:
            os.close(fd)

    def _update_file_watch(self) -> None:
        """Watch the log only while a reader waits at its end or handlers await output."""
        handlers_waiting = self._handlers_listening and not self._emit_scheduled
        wanted = (self._reader_waiting or handlers_waiting) and (
            self._state is JobState.RUNNING and self._service is not None
        )
        if wanted and self._file_watch is None:
            assert self._service is not None
            self._file_watch = self._service.watcher.watch_file(
                str(self.log_path), self._on_log_written
            )
        elif not wanted and self._file_watch is not None:
            self._stop_emitting_watch()

    def _stop_emitting_watch(self) -> None:
        if self._file_watch is not None and self._service is not None:
            self._service.watcher.unwatch_file(self._file_watch)
        self._file_watch = None

    def _on_log_written(self) -> None:
        with self._lock:
            if self._reader_waiting and not self._wake_scheduled and self._service:
                delay = self._last_reader_wake + _READER_WAKE_INTERVAL - time.monotonic()
                if delay <= 0:
                    self._wake_readers_locked()
                else:
                    self._wake_scheduled = True
                    self._service.watcher.call_later(delay, self._wake_readers)
            self._reader_waiting = False  # they are woken now or by the timer
            # Handlers get output in batches: a fast writer writes block after block, and
            # a record per block would cost the kernel more than the writer's own work.
            if self._handlers_listening and not self._emit_scheduled and self._service:
                self._emit_scheduled = True
                self._service.watcher.call_later(_EMIT_INTERVAL, self._emit_batch)
            self._update_file_watch()

    def _wake_readers(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            self._wake_readers_locked()

    def _wake_readers_locked(self) -> None:
        self._last_reader_wake = time.monotonic()
        self._log_generation += 1
        self._changed.notify_all()

    def _emit_batch(self) -> None:
        with self._lock:
            self._emit_scheduled = False
            self._update_file_watch()  # watch again first, then read: no write slips by
            self._emit_pending_output(final=False)

    # -- jobs of other kernels ---------------------------------------------------------
    @classmethod
    def _from_record(cls, record: JobRecord, service: WorkerService) -> Worker:
        """A view of a job this kernel does not own (another kernel's, or history)."""
        worker = cls(
            record.command,
            name=record.name,
            cwd=record.cwd,
            timeout=record.timeout,
            pty=record.pty,
            detach=record.detached,
        )
        worker._service = service
        worker._owned = False
        worker._apply_record(record)
        return worker

    def _apply_record(self, record: JobRecord) -> None:
        with self._lock:
            self._record = record
            self._state = record.state
            self._exit_code = record.exit_code
            self._error = record.error
            self._pid = record.pid
            self._started_at = record.started_at
            self._ended_at = record.ended_at

    def _refresh_foreign(self) -> None:
        if self._owned or self._service is None or self.id is None:
            return
        self._service.store.reconcile()
        record = self._service.store.get(self.id)
        if record is not None:
            self._apply_record(record)

    def _not_owned_message(self) -> str:
        assert self._record is not None
        if self._record.orphaned:
            return (
                f"job {self.id} was started by a kernel that is gone; adopt it first "
                f"(svc.adopt({self.id}) or %job adopt {self.id})"
            )
        return f"job {self.id} belongs to another kernel ({self._record.owner}); follow it there"

    def _stop_foreign(self, by: str) -> None:
        self._refresh_foreign()
        record = self._record
        if record is None or record.state.is_finished or self._service is None:
            return
        self._service.store.request_stop(record.id, by)
        signal_job(record.pid, record.pid_start, record.pgid, signal.SIGTERM)


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
