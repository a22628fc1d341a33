"""Options every command shares: where the data lives."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from trueup.service.settings import Settings, check_database_url

__all__ = ["add_storage_options", "configure_logging", "settings_from"]


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory for the SQLite file and the key files (env TRUEUP_DATA_DIR; default ./data)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="sqlite:///path or postgresql://user@host/db (env TRUEUP_DATABASE_URL; "
        "default: SQLite in the data directory)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given."""
    settings = Settings.from_env()
    if getattr(args, "data_dir", None) is not None:
        settings = replace(settings, data_dir=args.data_dir)
    if getattr(args, "database_url", None):
        settings = replace(settings, database_url=check_database_url(args.database_url, "--database-url"))
    return settings


def configure_logging(level: str = "info") -> None:
    """Log lines with their time, level and logger, at ``level`` and above. httpx's one INFO
    line per request (each webhook attempt) is left out: the dispatcher records every attempt."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
