"""Resource limits a job runs under, and the usage figures read of a running job.

``Limits`` is part of a :class:`~jobmagic.core.spec.JobSpec`: checked once, when made.
Sizes are bytes; people write them as ``512M`` or ``4G`` (powers of 1024) or plain bytes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_ONE_DECIMAL = 10
#: Below this a job cannot even start a shell: a smaller memory limit is refused.
MIN_MEMORY = 1 << 20
#: A job is its wrapper's subshell plus the command: fewer processes cannot run anything.
MIN_PIDS = 2


def parse_size(value: object) -> int:
    """Bytes from ``value``: an int, or text such as ``"512M"``, ``"1.5G"``, ``"4096"``.

    K, M, G and T are powers of 1024 (``"4G"`` is 4 GiB); ``KiB``/``KB`` spellings are
    accepted alike.

    Raises
    ------
    ValueError
        For text that is not a size, or a size that is not a whole number > 0 of bytes.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # ValueError, not TypeError: callers report every bad limit alike, as bad input.
        raise ValueError(f"a size is bytes or text such as '512M' or '4G', not {value!r}")  # noqa: TRY004
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None and value.strip().startswith("-"):
            raise ValueError(f"a size must be more than 0 bytes, not {value!r}")
        if match is None:
            raise ValueError(
                f"cannot read {value!r} as a size: write bytes, or a number with K, M, G "
                "or T (powers of 1024), such as 512M or 4G"
            )
        number = float(match.group(1)) * _UNITS[match.group(2).upper()]
    else:
        number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"a size must be more than 0 bytes, not {value!r}")
    return int(number)


def format_size(size: float | None) -> str:
    """``1.2 GiB``, ``512 MiB``, ``900 KiB``, ``12 B``; ``-`` for None."""
    if size is None:
        return "-"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            # One decimal below 10 (1.5 GiB), none above (512 MiB).
            text = (
                f"{value:.1f}" if value < _ONE_DECIMAL and value != int(value) else f"{value:.0f}"
            )
            return f"{text} {unit}"
    return f"{int(size)} B"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a job may use; None means no limit of that kind.

    Parameters
    ----------
    memory:
        Bytes of memory (RAM) its processes may use together (``512M``, ``4G``, bytes).
        Going over it ends the job: the kernel's OOM killer kills it.
    cpus:
        How many CPUs' worth of time its processes may use together (``1.5``: one and a
        half cores); a job that wants more is slowed down, not killed.
    pids:
        How many processes (and threads) it may have at once; forks beyond it fail.

    Raises
    ------
    ValueError
        A size that cannot be read or is below 1 MiB, ``cpus`` that is not a number > 0,
        ``pids`` that is not a whole number >= 2.
    """

    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None

    def __post_init__(self) -> None:
        if self.memory is not None:
            memory = parse_size(self.memory)
            if memory < MIN_MEMORY:
                raise ValueError(
                    f"a memory limit of {format_size(memory)} leaves no room to start a "
                    f"shell; give at least {format_size(MIN_MEMORY)} (such as 256M)"
                )
            object.__setattr__(self, "memory", memory)
        if self.cpus is not None:
            cpus = self.cpus
            if isinstance(cpus, bool) or not isinstance(cpus, int | float | str):
                raise ValueError(f"cpus is a number of CPUs > 0 such as 1.5, not {cpus!r}")
            try:
                number = float(cpus)
            except ValueError:
                raise ValueError(
                    f"cpus is a number of CPUs > 0 such as 1.5, not {cpus!r}"
                ) from None
            if not math.isfinite(number) or number <= 0:
                raise ValueError(f"cpus is a number of CPUs > 0 such as 1.5, not {cpus!r}")
            object.__setattr__(self, "cpus", number)
        if self.pids is not None:
            pids = self.pids
            if isinstance(pids, bool) or not isinstance(pids, int) or pids < MIN_PIDS:  # type: ignore[redundant-expr]
                raise ValueError(
                    f"pids is a whole number of processes >= {MIN_PIDS} (the job's shell "
                    f"and its command), not {pids!r}"
                )

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.memory, self.cpus, self.pids))

    def more_cpus_than_machine(self) -> bool:
        """True when ``cpus`` asks for more than this machine has (allowed: it never binds)."""
        return self.cpus is not None and self.cpus > (os.cpu_count() or 1)

    def describe(self) -> str:
        """``memory 512 MiB, cpus 1.5, pids 100``; ``none`` without limits."""
        parts = []
        if self.memory is not None:
            parts.append(f"memory {format_size(self.memory)}")
        if self.cpus is not None:
            parts.append(f"cpus {self.cpus:g}")
        if self.pids is not None:
            parts.append(f"pids {self.pids}")
        return ", ".join(parts) or "none"


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a job uses or used, as far as its backend can tell; None: not known.

    Attributes
    ----------
    memory:
        Bytes in use now (running jobs only; page cache it can give back left out).
    peak_memory:
        The most bytes it has used at once.
    cpu_seconds:
        CPU time its processes have used, user plus system, in seconds.
    cpu_percent:
        Its CPU use since the previous reading (or its start), 100 per busy core; running
        jobs only.
    """

    memory: int | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None
    cpu_percent: float | None = None

    def with_rate(
        self, previous: tuple[float, float] | None, now: float, since: float | None
    ) -> Usage:
        """Add ``cpu_percent``, worked out from a ``(when, cpu_seconds)`` reading before.

        Without an earlier reading the rate is worked out since ``since`` (the start).
        """
        if self.cpu_seconds is None:
            return self
        if previous is None:
            if since is None:
                return self
            previous = (since, 0.0)
        elapsed = now - previous[0]
        if elapsed <= 0:
            return self
        percent = max(0.0, (self.cpu_seconds - previous[1]) / elapsed * 100)
        return Usage(self.memory, self.peak_memory, self.cpu_seconds, percent)
