"""The SQLite WAL is copied back and started over even while writes never pause."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from trueup.storage import sqlite_checkpoint
from trueup.storage.sqlite import SQLiteEngine

_WRITES = 600
_ROWS = 16
_PAD = 2_000  # bytes per row: a write appends about 9 pages to the WAL


def _table(engine: SQLiteEngine) -> None:
    with engine.write() as tx:
        tx.execute("CREATE TABLE t (n INTEGER, pad BLOB)")


def _write(engine: SQLiteEngine, n: int) -> None:
    with engine.write() as tx:
        tx.executemany("INSERT INTO t VALUES (?, ?)", [(n, os.urandom(_PAD)) for _ in range(_ROWS)])


def test_a_wal_written_without_a_pause_is_started_over(tmp_path: Path) -> None:
    # A PASSIVE checkpoint never reaches the end of a WAL that writers append to while it copies,
    # and SQLite starts the WAL over only after one has: under steady writes it grew without
    # bound. Here a thread writes without a pause while rounds run one after another.
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=64)
    wal = tmp_path / "trueup.db-wal"
    largest = 0
    try:
        _table(engine)
        done = threading.Event()

        def writer() -> None:
            try:
                for n in range(_WRITES):
                    _write(engine, n)
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        while not done.is_set():
            engine.checkpoint_round()
            largest = max(largest, wal.stat().st_size)
        thread.join(timeout=60)
        largest = max(largest, wal.stat().st_size)
        with engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM t") == _WRITES * _ROWS
    finally:
        engine.close()
    appended = _WRITES * _ROWS * _PAD
    assert engine.wal_restarts > 0
    # Each round lets the WAL start over: it never holds more than a fraction of what was written.
    assert largest < appended // 4, f"the WAL reached {largest:,} bytes of {appended:,} written"


def test_a_round_on_a_short_wal_asks_nothing_of_the_writer(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=10_000)
    try:
        _table(engine)
        for n in range(20):
            _write(engine, n)
            engine.checkpoint_round()
        assert engine.wal_restarts == 0
    finally:
        engine.close()


def test_an_ask_no_writer_took_soon_is_dropped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An idle process's first write must not copy what other processes appended meanwhile.
    now = [1_000.0]
    monkeypatch.setattr(sqlite_checkpoint.time, "monotonic", lambda: now[0])
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=8)
    try:
        _table(engine)
        _write(engine, 0)
        engine.checkpoint_round()
        now[0] += 1.0
        _write(engine, 1)
        assert engine.wal_restarts == 0, "a stale ask was taken"
        engine.checkpoint_round()
        _write(engine, 2)
        assert engine.wal_restarts == 1
        _write(engine, 3)
        assert engine.wal_restarts == 1, "an ask is taken once"
    finally:
        engine.close()


def test_rounds_come_sooner_while_they_find_the_wal_long() -> None:
    interval = sqlite_checkpoint.INTERVAL_S
    busy = sqlite_checkpoint.BUSY_PAGES
    assert sqlite_checkpoint.next_wait(0, interval) == interval
    assert sqlite_checkpoint.next_wait(busy - 1, interval) == interval
    assert sqlite_checkpoint.next_wait(busy, interval) == sqlite_checkpoint.BUSY_INTERVAL_S
    assert interval > sqlite_checkpoint.BUSY_INTERVAL_S
    assert sqlite_checkpoint.next_wait(busy, 0.05) == 0.05, "never slower than asked"
