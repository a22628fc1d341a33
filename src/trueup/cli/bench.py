"""``trueup bench``: the benchmark report (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short run (under 2 minutes)")
    parser.parse_args(argv)
    print("trueup bench: the benchmark harness is not built yet (see docs/benchmarks.md)",
          file=sys.stderr)
    return 2
