"""SQLite's side of the engine contract inside one transaction: statements, bulk inserts,
updates and upserts carried many rows per statement, savepoints, and SQLite's errors mapped to
the contract's. :mod:`trueup.storage.sqlite` opens the connections and hands these out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from trueup.storage.engine import BulkUpdate, BulkUpsert, Dialect, Row, Tx
from trueup.storage.errors import (
    IntegrityConflictError,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
)

__all__ = ["SQLiteDialect", "SQLiteTx", "damaged", "storage_error"]

_MAX_PARAMETERS = 8_000
"""Parameters per multi-row statement (about 600 deltas), under SQLite's own limit (32,766
by default since 3.32; the smaller of the two is used)."""


class SQLiteDialect(Dialect):
    name = "sqlite"
    _TOKENS: ClassVar[dict[str, str]] = {
        "{BLOB}": "BLOB",
        "{BIGINT}": "INTEGER",
        "{SERIAL_PK}": "INTEGER PRIMARY KEY",
        "{WITHOUT_ROWID}": "WITHOUT ROWID",
    }

    def ddl(self, template: str) -> str:
        for token, value in self._TOKENS.items():
            template = template.replace(token, value)
        return template


_NO_ROOM = {
    "SQLITE_FULL": "",
    # Said as "disk I/O error", which does not say why: SQLite could not grow the -shm file
    # beside a WAL database, which on a full file system is the first thing to fail.
    "SQLITE_IOERR_SHMSIZE": " (no room to grow the -shm file: the disk is full)",
}
"""SQLite's errors (by their extended names) that mean the disk has no room left, and what to
add to their text to say so."""


def damaged(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database file is damaged, or is no database at all."""
    name: str = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


def storage_error(exc: sqlite3.Error, context: str = "") -> StorageError:
    """``exc`` as the storage layer's error, ``context`` before its text; a full disk as
    :class:`StorageFullError`, so that clients and logs are told the disk is full, and a damaged
    file as :class:`StorageCorruptError`, which no retry mends."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in _NO_ROOM:
        return StorageFullError(f"{context}{exc}{_NO_ROOM[name]}")
    if damaged(exc):
        return StorageCorruptError(f"{context}the database file is damaged: {exc}")
    return StorageUnavailableError(f"{context}{exc}")


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """SQLite's errors as the engine contract's: a constraint, the database unavailable, or
    its file damaged."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise IntegrityConflictError(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        raise storage_error(exc) from exc
    except sqlite3.DatabaseError as exc:
        if not damaged(exc):
            raise  # a statement this code got wrong: not the database's state
        raise storage_error(exc) from exc


class SQLiteTx(Tx):
    """A transaction (or a read snapshot) on one connection, with the bulk statements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with _mapped_errors():
            return self._conn.execute(sql, params).fetchall()

    def _changes(self, sql: str, params: Sequence[Any]) -> int:
        """Run one statement; return the number of rows it changed."""
        with _mapped_errors():
            return max(0, self._conn.execute(sql, params).rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        with _mapped_errors():
            return max(0, self._conn.executemany(sql, rows).rowcount)

    # Bulk statements carry many rows each, not one step per row as ``executemany`` does. Each
    # step lets go of the GIL, and a thread that wants it back while the event loop is busy
    # waits up to the interpreter's switch interval (5 ms) for it. Inside the writer lock that
    # wait holds up every writer (a group commit of 30 single-item requests, 1 ms of work,
    # held the lock for 7-11 ms under load). Fewer steps also make bulk work cheaper on its own:
    # committing 1,000-delta drafts went from about 66,000 to 95,000-107,000 rows/s.

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        kinds: Sequence[str] | None = None,  # PostgreSQL's concern (Tx.insert_rows)
    ) -> None:
        into = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        for part, values in self._parts(len(columns), rows):
            self.execute(into + values, [value for row in part for value in row])

    def _update_rows(self, bulk: BulkUpdate) -> int:
        # The new values get names of their own (_k, _0, _1 ...), as on PostgreSQL, so the
        # column names in `only_if` can only mean the stored row's. (A subquery, not a WITH:
        # the sqlite3 module gives a statement that starts with WITH no row count.)
        table, key = bulk.table, bulk.key
        names = ", ".join(f"column{i + 2} AS _{i}" for i in range(len(bulk.columns)))
        sets = ", ".join(f"{name} = _v._{i}" for i, name in enumerate(bulk.columns))
        condition = f" AND ({bulk.only_if})" if bulk.only_if else ""
        updated = 0
        for part, values in self._parts(len(bulk.columns) + 1, bulk.rows):
            updated += self._changes(
                f"UPDATE {table} SET {sets} FROM (SELECT column1 AS _k, {names} FROM (VALUES {values})) "
                f"AS _v WHERE {table}.{key} = _v._k{condition}",
                [value for row in part for value in row],
            )
        return updated

    def _upsert_rows(self, bulk: BulkUpsert) -> None:
        sets = ", ".join(f"{name} = excluded.{name}" for name in bulk.update)
        into = f"INSERT INTO {bulk.table} ({', '.join(bulk.columns)}) VALUES "
        for part, values in self._parts(len(bulk.columns), bulk.rows):
            self.execute(
                f"{into}{values} ON CONFLICT ({', '.join(bulk.conflict)}) DO UPDATE SET {sets}",
                [value for row in part for value in row],
            )

    def _parts(
        self, width: int, rows: Sequence[Sequence[Any]]
    ) -> Iterator[tuple[Sequence[Sequence[Any]], str]]:
        """``rows`` in parts of at most :data:`_MAX_PARAMETERS` values (or SQLite's own limit,
        if lower), each with its ``(?, ?), (?, ?)`` list.

        Every part holds a power of two of rows: the largest that fits, then the rest taken
        apart in binary (30 rows are 16 + 8 + 4 + 2). Each row count is a statement of its own
        text, which the connection prepares and caches; with any count allowed, group commits and
        seals of varying sizes filled the cache with large statements (86 MiB of them at seals'
        sizes) and pushed the small, hot ones out.
        """
        limit = min(_MAX_PARAMETERS, self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        largest = 1 << ((max(1, limit // width)).bit_length() - 1)
        marks = "(" + ", ".join("?" * width) + ")"
        start = 0
        while start < len(rows):
            left = len(rows) - start
            size = largest if left >= largest else 1 << (left.bit_length() - 1)
            yield rows[start : start + size], ", ".join([marks] * size)
            start += size

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        # SQLite rolls a whole transaction back by itself on some errors (disk full, I/O): a
        # SAVEPOINT after that would open a transaction of its own, and its RELEASE commit it,
        # while the caller's transaction is gone. So a savepoint needs a live transaction, and
        # its statements fail as the storage layer's error, which no caller takes for one
        # request's own failure.
        if not self._conn.in_transaction:
            raise StorageUnavailableError("the transaction was rolled back by SQLite after an error")
        self._depth += 1
        name = f"sp{self._depth}"
        try:
            with _mapped_errors():
                self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                with _mapped_errors():
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                raise
            with _mapped_errors():
                self._conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1
