"""The embedded SQLite backend: one file, WAL, ``synchronous=FULL``, one writer.

All writes go through a single connection guarded by a lock (and, across processes, by a
``flock`` on ``trueup.db.writer.lock``), so SQLite never sees two writers; the group committer
above batches many requests into each of its transactions, so they share one fsync. Reads use
one connection per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

from trueup.storage.engine import BulkUpdate, BulkUpsert, Dialect, Engine, Leadership, Row, Tx
from trueup.storage.errors import IntegrityConflictError, StorageUnavailableError

__all__ = ["SQLiteDialect", "SQLiteEngine"]

log = logging.getLogger(__name__)

_WAL = "PRAGMA journal_mode=WAL"  # set first, by _enter_wal
_PRAGMAS = (
    # FULL: the WAL is fsynced at every commit, so a 202 survives power loss and kill -9.
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
    # The writer never copies the WAL back into the database file itself: _Checkpointer does.
    "PRAGMA wal_autocheckpoint=0",
    # After a burst, a WAL that grew large is cut back to this size when it restarts.
    "PRAGMA journal_size_limit=67108864",
)
_CHECKPOINT_INTERVAL_S = 2.0
"""Seconds between checkpoints: rarely enough that a page written many times is copied once."""

_CACHED_STATEMENTS = 256
"""Prepared statements each connection keeps (Python's default is 128): room for the bulk
statements' power-of-two shapes beside the ordinary ones."""

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


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """SQLite's errors as the engine contract's: a constraint, or the database unavailable."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise IntegrityConflictError(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        raise StorageUnavailableError(str(exc)) from exc


class _SQLiteTx(Tx):
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

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
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


class _FairLock:
    """A lock handed over in arrival order.

    ``threading.Lock`` lets the thread that releases it take it straight back, so a group
    committer with requests always waiting starved the sequencer of the writer: sealing stopped
    while the queue of accepted deltas grew by hundreds of thousands. Taking turns in order
    keeps sealing in step with acceptance.
    """

    def __init__(self) -> None:
        self._turns = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._turns:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._turns.wait()

    def __exit__(self, *exc: object) -> None:
        with self._turns:
            self._serving += 1
            self._turns.notify_all()


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database file, from a connection of its own.

    By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: the
    writer then copies pages and fsyncs the database file while every other write waits (with
    this thread instead, a seal's commit measured 2.8 instead of 8.6 µs per leaf). A PASSIVE
    checkpoint never blocks the writer or the readers; what a reader still needs is copied on a
    later round. Durability does not depend on it: every commit is fsynced into the WAL.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval_s: float) -> None:
        super().__init__(name="trueup-sqlite-checkpoint", daemon=True)
        self._connect = connect
        self._interval = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            conn = self._connect()
        except StorageUnavailableError:
            log.exception("cannot open the WAL checkpoint connection; the WAL will grow until restart")
            return
        try:
            while not self._stop_event.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy with another process's checkpoint, disk full…
                    log.warning("WAL checkpoint failed, retrying: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def _roll_back(conn: sqlite3.Connection) -> None:
    """End a failed transaction, if SQLite has not ended it itself: on some errors (a disk
    full, say) it rolls back on its own, and a ROLLBACK then raises "no transaction is active",
    which would hide the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SQLiteEngine(Engine):
    """A SQLite database file. ``path`` is created with its parent directory if missing."""

    def __init__(self, path: Path, checkpoint_interval_s: float = _CHECKPOINT_INTERVAL_S) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Deltas, salts and webhook secrets live here: owner-only, and SQLite gives its
            # -wal and -shm files the database file's permissions.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.path = path
        self.url = f"sqlite:///{path}"
        self.dialect = SQLiteDialect()
        self._write_lock = _FairLock()
        self._writer = self._connect()
        try:
            self._writer_lock_fd = os.open(
                path.with_name(f"{path.name}.writer.lock"), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError as exc:
            self._writer.close()
            raise StorageUnavailableError(f"cannot open the writer lock beside {path}: {exc}") from exc
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._checkpointer = _Checkpointer(self._connect, checkpoint_interval_s)
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=30.0,
                cached_statements=_CACHED_STATEMENTS,
            )
            _enter_wal(conn)
            for pragma in _PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, begin: str) -> Iterator[Tx]:
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(str(exc)) from exc
        try:
            yield _SQLiteTx(conn)
        except BaseException:
            _roll_back(conn)
            raise
        if not conn.in_transaction:  # SQLite rolled it back after an error that a caller caught
            raise StorageUnavailableError("the transaction was rolled back by SQLite after an error")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _roll_back(conn)
            raise StorageUnavailableError(f"commit failed: {exc}") from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock, self._writer_turn(), self._transaction(self._writer, "BEGIN IMMEDIATE") as tx:
            yield tx

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for this process's turn to write, across processes (``--workers``).

        SQLite's own lock makes a second writer poll with growing sleeps (up to 100 ms each),
        which under load turns into second-long stalls. A blocking ``flock`` on a lock file is
        woken by the kernel the moment the holder lets go (or dies), so writers of several
        processes take turns as promptly as the threads of one process do.
        """
        try:
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks, say
            raise StorageUnavailableError(f"cannot take the SQLite writer lock: {exc}") from exc
        try:
            yield
        finally:
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        if conn.in_transaction:
            # A read nested in another read on this thread joins the outer snapshot.
            yield _SQLiteTx(conn)
            return
        with self._transaction(conn, "BEGIN") as tx:
            yield tx

    def try_leader_lock(self, name: str) -> AbstractContextManager[Leadership]:
        return _file_lock(self.path.with_name(f"{self.path.name}.{name}.lock"))

    def close(self) -> None:
        self._checkpointer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
            os.close(self._writer_lock_fd)


def _enter_wal(conn: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """Switch a new database file to WAL (a no-op once it is).

    The switch needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy timeout, to connections making it at the same moment: processes starting
    together on a new file (`serve --workers`, the test of it) failed 13 times in 200 tries. So
    the switch is retried here until the first connection has made it.
    """
    deadline = time.monotonic() + timeout_s
    conn.execute("PRAGMA busy_timeout=0")  # retried here instead; _PRAGMAS sets it again after
    while True:
        try:
            conn.execute(_WAL)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        else:
            return


@contextmanager
def _file_lock(path: Path) -> Iterator[Leadership]:
    """An exclusive, non-blocking lock on ``path``, released when the holder exits or dies.

    Held for as long as the file is the one at ``path``: a lock file deleted (or replaced)
    under its holder lets the next process create and lock another, so the holder asks."""
    with path.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield Leadership(False)
            return
        try:
            yield Leadership(True, lambda: _same_file(handle.fileno(), path))
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
