"""Options every command shares: where the data lives."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from trueup.core.json_text import printable
from trueup.service.settings import Settings, check_database_url, without_password
from trueup.storage import sqlite_path

__all__ = [
    "LOG_LEVELS",
    "OneLineFormatter",
    "add_storage_options",
    "configure_logging",
    "port_number",
    "settings_from",
]


def _directory(text: str) -> Path:
    """``--data-dir``'s value: an empty one (an unset shell variable, say) was the working
    directory, where the environment's empty ``TRUEUP_DATA_DIR`` is the default ``./data``."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory, got an empty value")
    return Path(text)


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=_directory,
        default=None,
        help="directory for the SQLite file and the key files (env TRUEUP_DATA_DIR; default ./data)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db "
        "(env TRUEUP_DATABASE_URL; default: SQLite in the data directory)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given.

    ``--data-dir`` without ``--database-url`` while ``TRUEUP_DATABASE_URL`` is set chooses
    only the key files: the database stays the variable's. Where that is a SQLite file outside
    the directory, it is said on stderr: a command pointed at a restored copy's directory would
    otherwise read, and report on, another database without a word. A PostgreSQL URL with a
    data directory for the key files is the usual layout of several hosts, and goes unsaid.
    """
    settings = Settings.from_env()
    if getattr(args, "data_dir", None) is not None:
        settings = replace(settings, data_dir=args.data_dir)
        if (
            settings.database_url
            and not getattr(args, "database_url", None)
            and not _in(settings, args.data_dir)
        ):
            print(
                f"trueup: the database is TRUEUP_DATABASE_URL's ({without_password(settings.database_url)}), "
                f"not one in --data-dir {args.data_dir}, which gives the key files only; "
                "give --database-url, or unset the variable, to choose another",
                file=sys.stderr,
            )
    if getattr(args, "database_url", None):
        settings = replace(settings, database_url=check_database_url(args.database_url, "--database-url"))
    return settings


def _in(settings: Settings, data_dir: Path) -> bool:
    """Whether the database URL is not a SQLite file outside ``data_dir``: PostgreSQL, or the
    directory's own file, as the default would be."""
    database = sqlite_path(settings.resolved_database_url)
    return database is None or database.resolve() == (data_dir / "trueup.db").resolve()


def port_number(text: str) -> int:
    """A TCP port to listen on, 1-65535 (argparse type): a larger one would be taken modulo
    65536 by the resolver, and 0 would pick a port nobody is told of."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {text!r}")
    return port


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class OneLineFormatter(logging.Formatter):
    """Log lines whose message shows every character that does not print as ``\\uXXXX``: a
    path, header or id a client sent (a line feed, a line separator, a terminal's escape
    sequence) can neither start a forged line nor act on the terminal that shows it. A
    traceback, added after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure_logging(level: str | None = None) -> None:
    """Log lines with their time, level and logger, at ``level`` and above (by default the
    level ``trueup serve --log-level`` passes its child processes in ``TRUEUP_LOG_LEVEL``, else
    info). httpx's one INFO line per request (each webhook attempt) is left out: the dispatcher
    records every attempt."""
    if level is None:
        level = os.environ.get("TRUEUP_LOG_LEVEL", "info").lower()
        level = level if level in LOG_LEVELS else "info"
    # The process id tells the workers of `serve --workers` and its children apart.
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
