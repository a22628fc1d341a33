"""A fresh PostgreSQL schema for one benchmark run, dropped afterwards.

The server is ``TRUEUP_BENCH_DATABASE_URL``, else ``TRUEUP_TEST_DATABASE_URL``, else the local
``postgresql://postgres@127.0.0.1:5432/test``. Each schema is reached through a URL whose
``search_path`` names it, so the server and the reference write into separate, empty copies
of the schema. When no server answers, callers report the PostgreSQL rows as skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["base_url", "durability", "fresh_schema", "server_version", "unreachable_reason"]

_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    return (
        os.environ.get("TRUEUP_BENCH_DATABASE_URL")
        or os.environ.get("TRUEUP_TEST_DATABASE_URL")
        or _DEFAULT_URL
    )


def unreachable_reason(url: str) -> str | None:
    """``None`` when ``url`` answers; otherwise why not, for the report."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {url}: {first_line}"


def server_version(url: str) -> str:
    """The server's version as ``MAJOR.MINOR`` (from the connection, no query)."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        number = conn.info.server_version
    return f"{number // 10000}.{number % 10000}"


def durability(url: str) -> str:
    """The server's ``fsync`` and ``synchronous_commit`` settings, as the report quotes them
    (``fsync on, synchronous_commit on``): with either off, a 202 is not durable."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        fsync = conn.execute("SHOW fsync").fetchone()
        synchronous = conn.execute("SHOW synchronous_commit").fetchone()
    shown = (row[0] if row else "unknown" for row in (fsync, synchronous))
    return "fsync {}, synchronous_commit {}".format(*shown)


@contextmanager
def fresh_schema(url: str, label: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a new, empty schema; the schema is dropped on exit."""
    schema = f"trueup_bench_{label}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
