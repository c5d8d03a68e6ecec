"""Rows, goals, the printed table and ``results.md``.

Every number the suite reports is a :class:`Row`: a measured value, optionally the
baseline it was measured against in the same run (so a ratio can be formed), and
optionally a goal. Rows that could not be measured carry ``missing`` (for example
"panel missing") instead of a value; a goal on such a row counts as missed under
``--check``, because an unmeasured claim is not a met one.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Goal:
    """An upper bound on a row's value or on its ratio to the baseline.

    ``on`` is ``"value"`` or ``"ratio"``; ``limit`` is inclusive.
    """

    on: str
    limit: float

    def text(self, unit: str) -> str:
        if self.on == "ratio":
            return f"goal ratio <= {self.limit:g}"
        return f"goal <= {_fmt(self.limit, unit)}"


@dataclass
class Row:
    """One line of the table: ``name: value (baseline, ratio, goal)``."""

    name: str
    value: float | None = None
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    goal: Goal | None = None
    repeats: int = 1
    missing: str = ""  # why there is no value, e.g. "n/a (panel missing)"
    text: str = ""  # a non-numeric value, e.g. "blocked (64 KiB after 10 s)"
    note: str = ""  # one line of context printed under the table
    error: str = ""  # the case crashed: shown instead of a value, counts as a missed goal

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """True/False for a row with a goal, None for an informational row."""
        if self.error:
            return False
        if self.goal is None:
            return None
        measured = self.ratio if self.goal.on == "ratio" else self.value
        if measured is None:
            return False
        return measured <= self.goal.limit

    def line(self) -> str:
        if self.error:
            return f"{self.name}: ERROR {self.error}"
        if self.missing:
            value = self.missing
        elif self.text:
            value = self.text
        else:
            value = _fmt(self.value, self.unit)
        parts = []
        if self.baseline is not None:
            parts.append(f"{self.baseline_label} {_fmt(self.baseline, self.unit)}".strip())
            ratio = self.ratio
            parts.append(f"ratio {ratio:.2f}" if ratio is not None else "ratio -")
        else:
            parts.append("no baseline")
        if self.goal is not None:
            verdict = {True: "met", False: "MISSED"}[bool(self.met)]
            parts.append(f"{self.goal.text(self.unit)}: {verdict}")
        else:
            parts.append("no goal")
        return f"{self.name}: {value} ({', '.join(parts)}) [N={self.repeats}]"


def median(values: list[float]) -> float:
    """The median of ``values`` (the suite's only summary statistic for repeats)."""
    return statistics.median(values)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values``, ``fraction`` in [0, 1]."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for threshold, factor, name in _SCALES.get(unit, ()):
        if abs(value) >= threshold:
            value, unit = value / factor, name
            break
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value)} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


# unit -> (threshold, factor, shown unit): the first threshold the value reaches wins.
# Bytes are decimal (kB, MB), as the goals in the issue are.
_SCALES = {
    "s": ((0.1, 1, "s"), (0, 1e-3, "ms")),
    "ms": ((1000, 1000, "s"), (0, 1, "ms")),
    "B": ((1e9, 1e9, "GB"), (1e6, 1e6, "MB"), (1e3, 1e3, "kB"), (0, 1, "B")),
}


def machine() -> dict[str, str]:
    """Cores, memory, kernel and Python of this machine (for ``results.md``)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": f"{os.cpu_count()} ({model or 'unknown model'})",
        "memory": f"{mem_kib / (1 << 20):.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "os": _os_release(),
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def table(rows: list[Row]) -> str:
    """The printed table: one line per row, then the notes."""
    lines = [row.line() for row in rows]
    notes = [f"  - {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def write_results(
    path: Path, rows: list[Row], started: datetime.datetime, seconds: float, command: str
) -> None:
    """Write ``results.md``: machine, date, how it was run, the table."""
    info = machine()
    missed = [row.name for row in rows if row.met is False]
    out = [
        "# jobmagic benchmark results",
        "",
        "Written by `benchmarks/run.py`; do not edit by hand. Ratios are against baselines",
        "measured side by side in the same run (see `benchmarks/README.md`).",
        "",
        f"- date: {started.isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- total run time: {seconds:.0f} s",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "```",
        table(rows),
        "```",
        "",
        f"Goals missed: {', '.join(missed) if missed else 'none'}.",
        "",
    ]
    path.write_text("\n".join(out))
