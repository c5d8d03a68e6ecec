"""Run the jobmagic benchmark suite: ``make bench`` (``CHECK=1`` adds ``--check``).

Prints one table, each row ``name: value (baseline, ratio, goal) [N=repeats]``, and
writes ``benchmarks/results.md`` with the machine and the date. See README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/run.py`

from benchmarks.harness import Context, ram_root, sweep_leftovers
from benchmarks.report import Goal, Row, machine, table, write_results

CASES = [
    "spawn",
    "throughput",
    "follow",
    "scale",
    "responsiveness",
    "traffic",
    "alternatives",
    "queue",
    "limits",
    "server",
    "push",
    "logview",
    "tsp",
    "ray",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a goal is missed (or could not be measured)",
    )
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(CASES)}")
    parser.add_argument(
        "--repeats-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every case's repeat count (e.g. 0.5 for a quick look)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parent / "results.md",
        help="where to write the results (default: benchmarks/results.md)",
    )
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.only.split(",") if c.strip()] or CASES
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return args


def run_case(name: str, ctx: Context) -> list[Row]:
    """One case's rows; a case that crashes becomes one row saying so (a missed goal)."""
    module = importlib.import_module(f"benchmarks.case_{name}")
    try:
        return module.run(ctx)
    except Exception as exc:  # noqa: BLE001 - report and go on with the other cases
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [Row(name, error=f"{type(exc).__name__}: {first_line}"[:200])]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now().astimezone()
    began = time.monotonic()
    info = machine()
    print(
        f"jobmagic benchmarks, {started:%Y-%m-%d %H:%M}: {info['cores']} cores, "
        f"{info['memory']}, {info['kernel']}, Python {info['python']}",
        flush=True,
    )
    print("each row: name: value (baseline, ratio, goal) [N = repeats, medians]", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="jobmagic-bench-"))
    ctx = Context(tmp=tmp, scale=args.repeats_scale, ram=ram_root(needed=4 << 30))
    rows: list[Row] = []
    try:
        for name in args.cases:
            case_began = time.monotonic()
            print(f"... {name}", end="", flush=True)
            case_rows = run_case(name, ctx)
            print(f" ({time.monotonic() - case_began:.0f} s)", flush=True)
            rows += case_rows
    finally:
        leftovers = sweep_leftovers(ctx.token)
        for root in (tmp, ctx.ram):
            if root:
                shutil.rmtree(root, ignore_errors=True)
    if leftovers:
        rows.append(
            Row(
                "cleanup: processes left by the run",
                len(leftovers),
                "pids",
                goal=Goal("value", 0),
                note="; ".join(leftovers[:5]),
            )
        )
    seconds = time.monotonic() - began
    print()
    print(table(rows))
    missed = [row.name for row in rows if row.met is False]
    print(
        f"\ngoals: {sum(1 for r in rows if r.met)} met, {len(missed)} missed; total {seconds:.0f} s"
    )
    command = shlex.join(["benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    write_results(args.results, rows, started, seconds, command)
    print(f"wrote {args.results}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
