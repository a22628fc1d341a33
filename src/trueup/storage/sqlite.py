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
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from trueup.storage import sqlite_checkpoint as checkpoints
from trueup.storage.engine import Engine, Leadership, Tx
from trueup.storage.errors import StorageUnavailableError
from trueup.storage.sqlite_lock import WriterTurn, open_lock_file
from trueup.storage.sqlite_tx import SQLiteDialect, SQLiteTx, storage_error

__all__ = ["SQLiteDialect", "SQLiteEngine"]

log = logging.getLogger(__name__)

_WAL = "PRAGMA journal_mode=WAL"  # set first, by _enter_wal
_PRAGMAS = (
    # FULL: the WAL is fsynced at every commit, so a 202 survives power loss and kill -9.
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA temp_store=MEMORY",
    # The writer never copies the WAL back into the database file itself: Checkpointer does.
    "PRAGMA wal_autocheckpoint=0",
    # After a burst, a WAL that grew large is cut back to this size when it restarts.
    "PRAGMA journal_size_limit=67108864",
)
_WRITER_CACHE_KIB = 65_536
"""The writer's page cache (``cache_size``): a seal updates many index pages of the deltas."""
_READER_CACHE_KIB = 8_192
"""Each reading thread's page cache. A page it misses is read from the file, usually from the
operating system's cache, which all connections share; a cache per connection as large as the
writer's took the process to 2.3 GiB in 20 s of 40 threads deriving random customers of a
292 MiB database (382 MiB at 8 MiB each), for no more derives a second."""
_WRITER_WAIT_S = 30.0
"""How long a write waits for another process's turn at the writer before a 503: as long as
SQLite's own busy timeout (``busy_timeout``), which the cross-process lock stands in for."""
_CACHED_STATEMENTS = 256
"""Prepared statements each connection keeps (Python's default is 128): room for the bulk
statements' power-of-two shapes beside the ordinary ones."""


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


def _roll_back(conn: sqlite3.Connection) -> None:
    """End a failed transaction, if SQLite has not ended it itself: on some errors (a disk
    full, say) it rolls back on its own, and a ROLLBACK then raises "no transaction is active",
    which would hide the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SQLiteEngine(Engine):
    """A SQLite database file. ``path`` is created with its parent directory if missing."""

    def __init__(
        self,
        path: Path,
        checkpoint_interval_s: float = checkpoints.INTERVAL_S,
        wal_restart_pages: int = checkpoints.RESTART_PAGES,
        checkpoint_wal: bool = True,
    ) -> None:
        """``checkpoint_wal=False``: no checkpoint thread, for a command that only reads (an
        audit) beside a server that keeps the WAL itself; its rounds would race the server's."""
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                # Deltas, salts and webhook secrets live here: owner-only, and SQLite gives its
                # -wal and -shm files the database file's permissions.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:  # a file where its directory should be, a read-only mount, …
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
            raise StorageUnavailableError(
                f"cannot create the SQLite database sqlite:///{path}: {exc.strerror or exc}{where}"
            ) from exc
        self.path = path
        self.url = f"sqlite:///{path}"
        self.dialect = SQLiteDialect()
        self._write_lock = _FairLock()
        self._writer = self._connect()
        try:
            self._writer_lock = WriterTurn(path.with_name(f"{path.name}.writer.lock"), _WRITER_WAIT_S)
        except OSError as exc:
            self._writer.close()
            raise StorageUnavailableError(f"cannot open the writer lock beside {path}: {exc}") from exc
        self._local = threading.local()
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}
        """Each thread's reader connection, by its thread, so that :meth:`close` closes them all
        and a thread that has ended has its connection closed (:meth:`read`)."""
        self._readers_lock = threading.Lock()
        self.wal_finishing_passes = 0
        """Passes a writer made when a checkpoint round asked, and that copied the whole WAL: the
        transaction after each starts the WAL over, unless a reader still holds an older
        snapshot (:mod:`trueup.storage.sqlite_checkpoint`)."""
        self._checkpointer = checkpoints.Checkpointer(self._connect, checkpoint_interval_s, wal_restart_pages)
        if checkpoint_wal:
            self._checkpointer.start()

    def _connect(self, cache_kib: int = _WRITER_CACHE_KIB) -> sqlite3.Connection:
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
            conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        except sqlite3.Error as exc:
            raise storage_error(exc, f"cannot open SQLite database {self.path}: ") from exc
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, begin: str) -> Iterator[Tx]:
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc) from exc
        try:
            yield SQLiteTx(conn)
        except BaseException:
            _roll_back(conn)
            raise
        if not conn.in_transaction:  # SQLite rolled it back after an error that a caller caught
            raise StorageUnavailableError("the transaction was rolled back by SQLite after an error")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _roll_back(conn)
            raise storage_error(exc, "commit failed: ") from exc

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write_lock, self._writer_turn():
            if (asked := self._checkpointer.take_restart()) is not None:
                self._finish_checkpoint(asked)
            with self._transaction(self._writer, "BEGIN IMMEDIATE") as tx:
                yield tx

    def checkpoint_round(self) -> None:
        """A round of the WAL checkpointer now, from the calling thread (see
        :mod:`trueup.storage.sqlite_checkpoint`; tests run rounds at chosen moments)."""
        self._checkpointer.round_now()

    def _finish_checkpoint(self, asked: float) -> None:
        """Copy the last of a long WAL while no writer can append, so that the transaction
        after it starts the WAL over (:mod:`trueup.storage.sqlite_checkpoint`)."""
        try:
            busy, pages, copied = checkpoints.passive_checkpoint(self._writer)
        except sqlite3.Error as exc:  # the write goes ahead; a later round asks again
            log.warning("WAL checkpoint before a write failed: %s", exc)
            return
        if busy:  # another checkpoint is copying: the next writer tries, while the ask stands
            self._checkpointer.put_back(asked)
        elif copied == pages > 0:
            self.wal_finishing_passes += 1

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for this process's turn to write, across processes (``--workers``), at most
        ``_WRITER_WAIT_S`` (:mod:`trueup.storage.sqlite_lock`)."""
        self._writer_lock.acquire()
        try:
            yield
        finally:
            self._writer_lock.release()

    @contextmanager
    def read(self, wait_s: float | None = None) -> Iterator[Tx]:  # wait_s: no pool to wait for here
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(_READER_CACHE_KIB)
            self._local.conn = conn
            with self._readers_lock:
                # Worker pools end idle threads and start new ones (the HTTP handlers' pool after
                # 10 s idle), and a connection kept only here would stay open for good: two file
                # descriptors and up to cache_size of pages per thread that ever read. One still
                # in a transaction is some other thread's read, joined (a generator finished
                # elsewhere): it is closed on a later call, once that read has ended.
                ended = [
                    thread
                    for thread, reader in self._readers.items()
                    if not thread.is_alive() and not reader.in_transaction
                ]
                for thread in ended:
                    self._readers.pop(thread).close()
                self._readers[threading.current_thread()] = conn
        if conn.in_transaction:
            # A read nested in another read on this thread joins the outer snapshot.
            yield SQLiteTx(conn)
            return
        with self._transaction(conn, "BEGIN") as tx:
            yield tx

    def try_leader_lock(self, name: str) -> AbstractContextManager[Leadership]:
        return _file_lock(self._role_lock_path(name))

    def leader_held(self, name: str, tx: Tx) -> bool | None:
        return _file_locked(self._role_lock_path(name))

    def _role_lock_path(self, name: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{name}.lock")

    def damage(self, limit: int = 5) -> list[str]:
        with self.read() as tx:
            found = [str(row[0]) for row in tx.execute(f"PRAGMA integrity_check({int(limit)})")]
        return [] if found == ["ok"] else found

    def close(self) -> None:
        if self._checkpointer.ident is not None:  # started
            self._checkpointer.stop()
        with self._readers_lock:
            for conn in self._readers.values():
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
            self._writer_lock.close()


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
    with open(open_lock_file(path), "a+b") as handle:  # owner-only, as open_lock_file says why
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield Leadership(False)
            return
        try:
            yield Leadership(True, lambda: _same_file(handle.fileno(), path))
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _file_locked(path: Path) -> bool | None:
    """Whether a process holds the exclusive lock of :func:`_file_lock` on ``path`` (``None``
    when the file cannot be opened to ask: another user's, say).

    Asked with a shared lock, let go at once: it never conflicts with another asker, and a
    process taking the role at that very moment is refused once and takes it at its next try
    (a standby asks every second, and logs that another process holds the role). No lock
    file: nobody has held the role yet.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # not blocking on a FIFO put there
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock (ENOLCK): not known
        return None
    finally:
        os.close(fd)  # lets go of the shared lock, if taken
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
