"""SQLite writers of several processes (``serve --workers``) take turns through one file lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from trueup.storage.sqlite import SQLiteEngine
from trueup.storage.sqlite_tx import SQLiteTx


def _lock_is_held(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_transaction_holds_the_writer_lock_file_until_it_ends(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "trueup.db")
    lock = tmp_path / "trueup.db.writer.lock"
    try:
        assert not _lock_is_held(lock)
        with engine.write() as tx:
            tx.execute("CREATE TABLE t (n INTEGER)")
            assert _lock_is_held(lock)
        assert not _lock_is_held(lock)
        with pytest.raises(RuntimeError), engine.write():
            raise RuntimeError("rolled back")
        assert not _lock_is_held(lock), "a failed transaction lets go of the lock too"
    finally:
        engine.close()


def test_a_second_engine_waits_for_its_turn_and_then_sees_the_first_ones_rows(tmp_path: Path) -> None:
    first = SQLiteEngine(tmp_path / "trueup.db")
    second = SQLiteEngine(tmp_path / "trueup.db")  # its own lock file handle, as another process has
    with first.write() as tx:
        tx.execute("CREATE TABLE t (n INTEGER)")
    entered = threading.Event()
    seen: list[int] = []

    def other_writer() -> None:
        with second.write() as tx:
            entered.set()
            seen.append(int(tx.scalar("SELECT COUNT(*) FROM t")))
            tx.execute("INSERT INTO t VALUES (2)")

    try:
        with first.write() as tx:
            tx.execute("INSERT INTO t VALUES (1)")
            thread = threading.Thread(target=other_writer)
            thread.start()
            assert not entered.wait(0.3), "the second writer entered while the first held the turn"
        thread.join(timeout=30)
        assert entered.is_set()
        assert seen == [1]
        with first.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM t") == 2
    finally:
        first.close()
        second.close()


def test_the_wal_is_copied_back_by_the_checkpointer_not_by_the_writer(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=0.05)
    try:
        with engine.write() as tx:
            assert tx.scalar("PRAGMA wal_autocheckpoint") == 0
            tx.execute("CREATE TABLE t (n INTEGER, pad BLOB)")
        before = (tmp_path / "trueup.db").stat().st_size
        with engine.write() as tx:
            tx.executemany("INSERT INTO t VALUES (?, ?)", [(i, bytes(512)) for i in range(4_000)])
        # About 2 MB went into the WAL; the checkpointer copies it into the database file.
        deadline = time.monotonic() + 30
        while (tmp_path / "trueup.db").stat().st_size < before + 1_000_000:
            assert time.monotonic() < deadline, "the WAL was never checkpointed"
            time.sleep(0.01)
        with engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM t") == 4_000
    finally:
        engine.close()


def test_engines_opening_a_new_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    # SQLite refuses a concurrent switch to WAL at once ("database is locked"), without its
    # busy timeout: with four openers it did so in about one try in fifteen.
    errors: list[BaseException] = []
    for attempt in range(60):
        barrier = threading.Barrier(4)
        path = tmp_path / f"new-{attempt}.db"

        def open_and_close(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                SQLiteEngine(path).close()
            except BaseException as exc:  # collected, and asserted on below
                errors.append(exc)

        threads = [threading.Thread(target=open_and_close) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []


def test_bulk_statements_come_in_a_few_shapes_whatever_the_row_count(tmp_path: Path) -> None:
    # Each row count is a statement of its own text, prepared and cached per connection: parts
    # are powers of two, so a table gets a handful of shapes, not one per group or seal size.
    engine = SQLiteEngine(tmp_path / "trueup.db")
    try:
        with engine.write() as tx:
            assert isinstance(tx, SQLiteTx)
            for count in (1, 30, 615, 1_000, 7_777):
                rows = [(i, i, i) for i in range(count)]
                parts = [part for part, _ in tx._parts(3, rows)]
                sizes = [len(part) for part in parts]
                assert [row for part in parts for row in part] == rows
                assert all(size & (size - 1) == 0 and size * 3 <= 8_000 for size in sizes)
                assert sizes == sorted(sizes, reverse=True)
            shapes = {len(p) for n in range(1, 3_000) for p, _ in tx._parts(13, [(0,) * 13] * n)}
            assert len(shapes) <= 10
    finally:
        engine.close()


def test_an_error_after_sqlite_ended_the_transaction_itself_is_the_error_raised(tmp_path: Path) -> None:
    """On some errors (a disk full) SQLite rolls the whole transaction back itself; a ROLLBACK
    after it raised "cannot rollback - no transaction is active" in place of the real error."""
    engine = SQLiteEngine(tmp_path / "t.db")

    def fail_after_sqlite_rolled_back() -> None:
        with engine.write() as tx:
            tx.execute("CREATE TABLE t (x INTEGER)")
            tx.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
            raise OSError("database or disk is full")

    try:
        with pytest.raises(OSError, match=r"^database or disk is full$"):
            fail_after_sqlite_rolled_back()
        with engine.write() as tx:  # the connection is usable, and nothing was kept
            assert tx.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 't'") == 0
    finally:
        engine.close()
