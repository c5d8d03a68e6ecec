"""Fresh processes, private job homes, process counters and cleanup for the cases.

A measured workload runs in a fresh Python subprocess (:func:`run_child`) so that
process-level counters (CPU time, RSS, threads) describe the workload and not the
harness. Every process the suite starts inherits ``JOBMAGIC_BENCH_RUN=<token>``;
:func:`sweep_leftovers` finds anything still carrying the token at the end and kills it,
so a failed case cannot leave jobs behind (and the run reports that it had to).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import inspect
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN_VAR = "JOBMAGIC_BENCH_RUN"  # noqa: S105 - an environment variable name, not a secret


class BenchError(RuntimeError):
    """Raised when a measured child process fails or overruns its time limit."""


@dataclass
class Context:
    """What every case gets: a private temp root, the run's token, the repeat scale."""

    tmp: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    scale: float = 1.0  # multiplies every case's repeat count (``--repeats-scale``)
    # A temp root in RAM (tmpfs), when there is one with room for the 1 GiB cases: there
    # the throughput ratio is jobmagic's overhead, not the shared disk's mood.
    ram: Path | None = None

    def repeats(self, default: int) -> int:
        return max(1, round(default * self.scale))

    def env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of a measured process: the repo on the path, a private home."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env[TOKEN_VAR] = self.token
        env["JOBMAGIC_HOME"] = str(home or self.tmp / "home-unused")
        env.pop("JPY_PARENT_PID", None)
        return env


@contextlib.contextmanager
def fresh_dir(ctx: Context, prefix: str, in_ram: bool = False) -> Iterator[Path]:
    """A new directory under the run's temp root, removed afterwards (job homes, files).

    ``in_ram`` puts it under ``ctx.ram`` when the run has one.
    """
    root = ctx.ram if in_ram and ctx.ram else ctx.tmp
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_child(
    ctx: Context, target: str, timeout: float = 120.0, in_ram: bool = False, **kwargs: object
) -> dict:
    """Run ``module:function(**kwargs)`` in a fresh interpreter with a fresh job home.

    The child's working directory and job home are a :func:`fresh_dir` (``in_ram`` as
    there). Returns the function's JSON-able result. The child is its own session, so on
    a timeout the whole tree is killed. Raises :class:`BenchError` on failure.
    """
    with fresh_dir(ctx, "child-", in_ram=in_ram) as workdir:
        home = workdir / "home"
        result = workdir / "result.json"
        log = workdir / "child.log"
        argv = [
            sys.executable,
            "-c",
            "from benchmarks.harness import _child_main; _child_main()",
            target,
            json.dumps(kwargs),
            str(result),
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=ctx.env(home),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                raise BenchError(f"{target} did not finish within {timeout:g} s") from None
            finally:
                _kill_group(proc.pid)  # anything the child left in its session
        if code != 0 or not result.exists():
            tail = log.read_text(errors="replace")[-2000:]
            last = (tail.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"{target} failed (exit {code}): {last}\n{tail}")
        return json.loads(result.read_text())


def ram_root(needed: int) -> Path | None:
    """A new directory on ``/dev/shm`` if it has ``needed`` bytes free, else None."""
    try:
        stat = os.statvfs("/dev/shm")  # noqa: S108 - mkdtemp below makes a private dir
    except OSError:
        return None
    if stat.f_bavail * stat.f_frsize < needed:
        return None
    return Path(tempfile.mkdtemp(prefix="jobmagic-bench-", dir="/dev/shm"))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _child_main() -> None:
    target, kwargs, result = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        value = func(**kwargs)
    except BaseException:  # noqa: BLE001 - the process boundary: report any failure, exit 1
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)
    result.write_text(json.dumps(value))
    # Measure functions clean up what they started; exiting hard skips interpreter-exit
    # hooks (jobmagic's own shutdown) that a bounded measurement may have given up on.
    sys.stdout.flush()
    os._exit(0)


# -- availability of the parts under test ---------------------------------------------


def engine_missing() -> str:
    """``""`` when ``jobmagic.WorkerService`` imports, else the text a row shows instead."""
    try:
        from jobmagic import WorkerService  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not measurable"
        return f"n/a (engine missing: {type(exc).__name__})"
    return ""


def panel_missing() -> str:
    """``""`` when the panel (``jobmagic.notebook.panel``) imports, else what a row shows."""
    missing = engine_missing()
    if missing:
        return missing
    try:
        from jobmagic.notebook.panel import JobPanel  # noqa: F401
    except Exception:  # noqa: BLE001
        return "n/a (panel missing)"
    return ""


def open_panel(service: object) -> object:
    """Create a ``JobPanel`` for ``service`` whatever its constructor's spelling."""
    from jobmagic.notebook.panel import JobPanel

    params = inspect.signature(JobPanel).parameters
    if "service" in params:
        return JobPanel(service=service)
    if params:
        return JobPanel(service)
    return JobPanel()


# -- process counters -----------------------------------------------------------------


def proc_status(field_name: str, pid: int | str = "self") -> int:
    """An integer field of ``/proc/PID/status`` (``VmRSS`` in KiB, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def rss_bytes() -> int:
    """Resident set size of this process in bytes (``VmRSS``)."""
    return proc_status("VmRSS") * 1024


def thread_count() -> int:
    """Threads of this process, native ones included (``/proc/self/status``)."""
    return proc_status("Threads")


def processes_in_groups(pgids: set[int]) -> list[int]:
    """Pids of live processes (zombies included) whose process group or session is listed."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in pgids or int(fields[3]) in pgids:
            found.append(int(entry))
    return found


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit (through a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def become_subreaper() -> None:
    """Adopt orphaned descendants (so ``!(cmd &)`` jobs can be waited for and reaped)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children(pid: int | str = "self") -> list[int]:
    """Direct children of ``pid`` (all threads)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, depth first."""
    out = []
    for child in children(pid):
        out.append(child)
        with contextlib.suppress(OSError):
            out += descendants(child)
    return out


def written_bytes(pid: int) -> int:
    """Bytes ``pid`` has passed to write() so far (``/proc/PID/io`` wchar)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def sweep_leftovers(token: str) -> list[str]:
    """Kill every process that still carries this run's token; describe what was found."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"{TOKEN_VAR}={token}".encode() in environ.split(b"\0"):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:80]
            found.append(f"{entry} {command}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
    return found
