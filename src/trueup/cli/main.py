"""The ``trueup`` command.

Each subcommand lives in its own module, imported only when it runs, so ``trueup verify``
loads nothing but the standard library, ``cryptography`` and :mod:`trueup.proof`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
from collections.abc import Sequence

from trueup import __version__

__all__ = ["main"]

_NOT_UTF8 = re.compile("[\udc80-\udcff]")
"""What a byte that is not UTF-8 becomes in ``sys.argv`` (the ``surrogateescape`` handler)."""

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
    for position, arg in enumerate(args, 1):
        if _NOT_UTF8.search(arg):
            # Bytes that are not UTF-8 come through as lone surrogates (PEP 383): no id, key, path
            # or URL Trueup takes holds one, and each use of it would fail a different way.
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            print(f"trueup: argument {position} is not UTF-8 text: {shown}", file=sys.stderr)
            return 2
    if not args or args[0] not in COMMANDS:
        parser = _root_parser()
        if args:
            parser.parse_args(args[:1])  # prints --help/--version, or the usage error, and exits
        parser.print_help()
        return 2
    return _run(args[0], args[1:])


_UNWRITABLE = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO))
"""Errors of a write to a full or failing output (``> /dev/full``), said in one line."""


def _run(command: str, args: list[str]) -> int:
    """Run ``command``: its exit status, with a failure it reports in one line instead of a
    traceback (:func:`_known_failure`, an interrupt, an output that cannot be written)."""
    module = importlib.import_module(COMMANDS[command][0])
    try:
        code: int = module.run(args)
        sys.stdout.flush()  # here, where a reader gone away is seen, not at the interpreter's exit
    except BrokenPipeError:
        # The reader went away (`trueup proof … | head`): nobody is left to tell, so no
        # traceback, and nothing more is written to the closed pipe on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Ctrl-C while waiting (a server, a back-off, a database): the user asked to stop and
        # knows why; a traceback from wherever the wait was would only hide that line.
        print(f"trueup {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        print(f"trueup {command}: {exc}", file=sys.stderr)
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
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE and exc.filename is None:
        # stdout on a full disk: nothing more can be said there, and what is still buffered
        # goes nowhere rather than failing again at the interpreter's exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    storage = sys.modules.get("trueup.storage.errors")
    if storage is not None and isinstance(exc, storage.StorageError):
        # The database cannot be used (down, newer than this Trueup, in use by an older one
        # while a migration is due): exit 1, as serve's "cannot start".
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
