"""``trueup bench [--quick]``: the benchmark report (DESIGN.md §6; see trueup.bench)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup bench",
        description="measure the DESIGN.md §6 figures against references from the same run, "
        "print one table and write it to OUT/latest.md and OUT/latest.json",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the short run: smaller sizes, 5-second loads, the default deployment only (under 2 minutes)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/out"),
        help="directory for latest.md and latest.json (default: bench/out)",
    )
    args = parser.parse_args(argv)
    try:  # now, not after a quarter of an hour of measuring
        args.out.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(args.out, os.W_OK) else "not writable"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is not None:
        print(f"trueup bench: cannot write to --out {args.out}: {problem}", file=sys.stderr)
        return 2
    # Imported here: the harness pulls in the server's whole stack, other commands need none of it.
    from trueup.bench import FULL, QUICK, run_benchmarks  # noqa: PLC0415

    # SIGTERM unwinds like Ctrl-C, so the servers the harness started are stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    report = run_benchmarks(QUICK if args.quick else FULL, args.out)
    return 1 if any(row.verdict == "error" for row in report.rows) else 0


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
