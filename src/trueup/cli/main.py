"""The ``trueup`` command.

Each subcommand lives in its own module, imported only when it runs, so ``trueup verify``
loads nothing but the standard library, ``cryptography`` and :mod:`trueup.proof`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from trueup import __version__

__all__ = ["main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("trueup.cli.serve", "run the API server (with the sequencer)"),
    "sequencer": ("trueup.cli.sequencer", "run only the sequencer (the one writer of the log)"),
    "dispatcher": ("trueup.cli.dispatcher", "run only the webhook dispatcher (delivers the outbox)"),
    "keys": ("trueup.cli.keys", "create, list and revoke API keys"),
    "audit": ("trueup.cli.audit", "rebuild the log and balances from stored deltas and compare"),
    "proof": ("trueup.cli.proof", "fetch an offline proof bundle of a delta through the API"),
    "verify": ("trueup.cli.verify", "check a proof bundle offline against a pinned key"),
    "verify-period": (
        "trueup.cli.verifyperiod",
        "check a period checkpoint's records through the API against a pinned key",
    ),
    "follow": (
        "trueup.cli.follow",
        "check through the API that the log only grew since the checkpoint you hold",
    ),
    "log-key": ("trueup.cli.logkey", "print the verifier key of this log's checkpoints"),
    "bench": ("trueup.cli.bench", "run the benchmark report"),
}


def _root_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trueup", description="Trueup: a verifiable balance ledger")
    root.add_argument("--version", action="version", version=f"trueup {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        parser = _root_parser()
        if not args:
            parser.print_help()
            return 2
        parser.parse_args(args[:1])  # prints --help/--version, or the usage error, and exits
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    try:
        code: int = module.run(args[1:])
        sys.stdout.flush()  # here, where a reader gone away is seen, not at the interpreter's exit
    except BrokenPipeError:
        # The reader went away (`trueup proof … | head`): nobody is left to tell, so no
        # traceback, and nothing more is written to the closed pipe on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        print(f"trueup {args[0]}: {exc}", file=sys.stderr)
        return known
    return code


def _known_failure(exc: Exception) -> int | None:
    """The exit status of a failure the command reports in one line, not a traceback; ``None``
    for any other. Looked up, not imported: `trueup verify` loads neither the settings nor the
    storage."""
    settings = sys.modules.get("trueup.service.settings")
    if settings is not None and isinstance(exc, settings.SettingsError):
        return 2  # a TRUEUP_* variable that cannot be used
    files = sys.modules.get("trueup.service.files")
    if files is not None and isinstance(exc, files.SecretFileError):
        return 1  # the signing key or the key pepper is missing, unreadable or not this log's
    storage = sys.modules.get("trueup.storage.errors")
    if storage is not None and isinstance(exc, storage.StorageError):
        # The database cannot be used (down, newer than this Trueup, in use by an older one
        # while a migration is due): exit 1, as serve's "cannot start".
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
