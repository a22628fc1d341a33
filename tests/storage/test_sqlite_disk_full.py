"""SQLite's ways of saying its disk is full are the storage layer's StorageFullError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trueup.storage.errors import StorageFullError, StorageUnavailableError
from trueup.storage.sqlite import SQLiteEngine
from trueup.storage.sqlite_tx import storage_error


def test_a_commit_with_no_room_left_is_a_full_disk(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "t.db", checkpoint_wal=False)
    try:
        with engine.write() as tx:
            tx.execute("CREATE TABLE t (v BLOB)")
        pages = engine._writer.execute("PRAGMA page_count").fetchone()[0]
        engine._writer.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StorageFullError, match="database or disk is full"), engine.write() as tx:
            tx.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
        with engine.read() as tx:
            assert tx.execute("SELECT count(*) FROM t") == [(0,)]
    finally:
        engine.close()


def test_no_room_for_the_shm_file_is_said_to_be_a_full_disk() -> None:
    # What SQLite raises when a full file system leaves no room to grow the -shm file beside a
    # WAL database (a server started on a full disk): its own text says only "disk I/O error".
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"
    mapped = storage_error(error, "cannot open SQLite database x.db: ")
    assert isinstance(mapped, StorageFullError)
    assert str(mapped) == (
        "cannot open SQLite database x.db: disk I/O error (no room to grow the -shm file: the disk is full)"
    )
    other = sqlite3.OperationalError("disk I/O error")
    other.sqlite_errorname = "SQLITE_IOERR_READ"
    assert type(storage_error(other)) is StorageUnavailableError
