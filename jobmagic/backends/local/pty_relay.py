r"""Run a command on a pseudo-terminal; copy what it writes to our stdout, byte for byte.

Usage: ``python -I -S pty_relay.py SHELL COMMAND``. The wrapper (``wrapper.py``) runs this
file by path for a ``pty=True`` job, in place of the subshell that would run the command,
so it needs nothing but the standard library and must not import jobmagic.

The relay opens a pty and starts ``SHELL -c COMMAND`` with stdin, stdout and stderr on its
slave side. The command stays in the relay's process group and session (the job's): a
stop's SIGTERM and SIGKILL to the group reach it directly, as they reach any job. It has
no controlling terminal, then, but ``isatty()`` is true on all three descriptors and the
terminal is in its default cooked mode, so ``\n`` comes out as ``\r\n`` (ONLCR) as on any
terminal. The window is 24 rows of 80 columns, so that progress bars draw at a sane width.
Input echo is off and the program's stdin reads end-of-file once (an EOF character is
queued before it starts), as it did under ``script -E never`` with stdin on /dev/null.

The relay catches SIGTERM, SIGINT and SIGHUP and does nothing with them: it outlives the
command to copy its last output. (A caught signal is reset to its default across exec,
unlike an ignored one, so the command sees them as usual.) A signal that arrives before
the command starts is not lost: the command is not started at all, or the signal is passed
on to it. The relay waits on a pidfd for the command's exit, then copies what is still
readable on the pty without waiting for more (a background process may keep the slave
open: the executor kills what is left of the job's group) and exits with the command's
status: its exit code, or 128+N when signal N killed it, as a shell reports it. During a
stop, when processes of the job still have the slave open, a forked copy of the relay goes
on copying until they have closed it, so their shutdown output is kept too; it is one more
process of the job's group, which the stop waits for or kills like the others.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import termios
import time

#: The pty's window size.
ROWS, COLUMNS = 24, 80
#: The signals the relay outlives.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: After the command's exit, what is left is copied for at most this long and this much:
#: more than the kernel holds for a writer that has gone; only a background process that
#: goes on writing reaches either bound.
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 4 << 20
#: A shell reports "killed by signal N" as this plus N.
SIGNAL_BASE = 128
#: How much is read from the pty at a time.
CHUNK = 1 << 16
#: The relay's own failures: bad arguments; the shell not found / not executable.
USAGE_STATUS, NOT_FOUND_STATUS, NOT_EXECUTABLE_STATUS = 2, 127, 126

_received: list[int] = []


def _note(signum: int, _frame: object) -> None:
    _received.append(signum)


class _Output:
    """Our stdout, the job's log.

    After a write error, output is dropped: the relay goes on reading, so that the command
    never blocks on a full pty.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                view = view[os.write(self.fd, view) :]
            except OSError:
                self.broken = True


def _copy(master: int, out: _Output) -> int:
    """Copy one read's worth from the pty; the bytes copied, or -1 once the pty has ended.

    Reading the master gives EIO once no process has the slave open any more.
    """
    try:
        data = os.read(master, CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:
            return -1
        raise
    if not data:
        return -1
    out.write(data)
    return len(data)


def _open_pty() -> tuple[int, int]:
    """A new pty (master, slave): cooked mode without echo, ROWS x COLUMNS, EOF queued."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)  # lflag
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    termios.tcsetwinsize(slave, (ROWS, COLUMNS))
    eof = attrs[6][termios.VEOF]  # cc
    os.write(master, eof if isinstance(eof, bytes) else bytes([eof]))
    return master, slave


def _start(shell: str, command: str, slave: int) -> subprocess.Popen[bytes] | int:
    """Start the command on the slave; an exit status instead when it cannot be started."""
    try:
        return subprocess.Popen(
            [shell, "-c", command], stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
    except OSError as exc:
        # In the shell's words, which the wrapper's diagnosis of exits 127 and 126 reads.
        if exc.errno == errno.ENOENT:
            status, reason = NOT_FOUND_STATUS, "not found"
        else:
            status, reason = NOT_EXECUTABLE_STATUS, exc.strerror or str(exc)
        os.write(2, f"jobmagic-pty: {shell}: {reason}\n".encode(errors="replace"))
        return status


def _relay(master: int, pidfd: int, out: _Output) -> bool:
    """Copy the pty to ``out`` until the command has exited, then what is left of it.

    Returns whether the pty is still open (another process has the slave open).
    """
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    master_open, exited = True, False
    while not exited:
        for fd, _events in poller.poll():
            if fd == pidfd:
                exited = True
            elif _copy(master, out) < 0:
                poller.unregister(master)
                master_open = False
    if not master_open:
        return False
    # Whatever the command wrote before it exited is in the pty by now: when nothing is
    # ready to read, a poll of the master waits for the kernel's transfer still under way.
    poller.unregister(pidfd)
    drained, deadline = 0, time.monotonic() + DRAIN_SECONDS
    while drained < DRAIN_BYTES and time.monotonic() < deadline and poller.poll(0):
        copied = _copy(master, out)
        if copied < 0:
            return False
        drained += copied
    return True


def _hand_over(master: int, out: _Output) -> None:
    """Leave a process that copies the pty until no process has its slave open any more.

    For a stop under way: what the rest of the job writes while it shuts down (a program
    the command's shell ran, when the shell ended first) reaches the log, as it would
    without a pty. The copy stays in the job's process group, so the stop's SIGKILL ends
    it with the rest of the job.
    """
    if os.fork() == 0:
        try:
            while _copy(master, out) >= 0:
                pass
        finally:
            os._exit(0)


def main(argv: list[str]) -> int:
    """Run ``argv[1] -c argv[2]`` on a pty; return its status as a shell reports it."""
    if len(argv) != 3:  # noqa: PLR2004
        os.write(2, b"usage: pty_relay.py SHELL COMMAND\n")
        return USAGE_STATUS
    shell, command = argv[1], argv[2]
    for sig in SIGNALS:
        signal.signal(sig, _note)
    master, slave = _open_pty()
    if _received:  # stopped before the command started: do not start it
        return SIGNAL_BASE + _received[0]
    try:
        proc = _start(shell, command, slave)
    finally:
        os.close(slave)  # the command's now: its end (and its children's) ends the pty
    if isinstance(proc, int):
        return proc
    # A signal that came while the command was being started may have missed it: pass it
    # on (at worst the command sees it twice).
    missed = _received.copy()
    for signum in missed:
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:
            break
    pidfd = os.pidfd_open(proc.pid)
    out = _Output(1)
    if _relay(master, pidfd, out) and _received:
        _hand_over(master, out)
    returncode = proc.wait()
    return SIGNAL_BASE - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    # Everything went out through os.write: nothing is left to flush, and skipping the
    # interpreter's teardown takes a few milliseconds off every pty job.
    os._exit(main(sys.argv))
