"""The ``trueup`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trueup import __version__
from trueup.cli import keys, serve

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trueup", description="Trueup: a verifiable balance ledger")
    root.add_argument("--version", action="version", version=f"trueup {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    serve.register(commands)
    keys.register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
