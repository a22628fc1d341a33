"""Backups and restores of a whole database, as an operator takes and puts them back, for the
tests of the guard against a rolled-back log (SQLite: the file, PostgreSQL: every row)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

__all__ = ["back_up", "restore"]

_BACKUP_PREFIX = "backup_"


def back_up(url: str, to: Path) -> None:
    """Copy the database at ``url`` as it stands. SQLite: SQLite's online backup into the file
    ``to`` (docs/operations.md); PostgreSQL: every table of the schema into a ``backup_<name>``
    table beside it (``to`` unused: the test's schema is dropped afterwards, copies and all)."""
    path = _sqlite_path(url)
    if path is not None:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(to)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        for table in _tables(conn):
            conn.execute(f"DROP TABLE IF EXISTS {_BACKUP_PREFIX}{table}")
            conn.execute(f"CREATE TABLE {_BACKUP_PREFIX}{table} AS SELECT * FROM {table}")


def restore(url: str, backup: Path) -> None:
    """Put the copy :func:`back_up` took back in place of the database (every Trueup process of
    it stopped). SQLite: the file, without the write-ahead log of the later database beside it;
    PostgreSQL: every table emptied and filled again from its copy, in one transaction."""
    path = _sqlite_path(url)
    if path is not None:
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        path.write_bytes(backup.read_bytes())
        return
    with psycopg.connect(url) as conn:
        tables = _tables(conn)
        conn.execute(f"TRUNCATE {', '.join(tables)}")
        # The rows go back table by table, whatever their foreign keys (as pg_restore's data
        # section does): a consistent copy satisfies them all once every table is back.
        conn.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            conn.execute(f"INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {_BACKUP_PREFIX}{table}")


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        """SELECT table_name FROM information_schema.tables
           WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name NOT LIKE %s ORDER BY table_name""",
        (f"{_BACKUP_PREFIX}%",),
    ).fetchall()
    return [str(name) for (name,) in rows]
