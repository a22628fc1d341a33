"""The SQLite WAL is copied back and started over even while writes never pause."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

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


def _wal_generation(wal: Path) -> int:
    """The WAL header's checkpoint sequence number: SQLite adds one each time it starts over."""
    with wal.open("rb") as file:
        header = file.read(16)
    return int.from_bytes(header[12:16], "big")


def test_a_wal_written_without_a_pause_is_started_over(tmp_path: Path) -> None:
    # A PASSIVE checkpoint never reaches the end of a WAL that writers append to while it copies,
    # and SQLite starts the WAL over only after one has: under steady writes it grew without
    # bound. Here a thread writes without a pause while rounds run, as the checkpointer's would.
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=64)
    wal = tmp_path / "trueup.db-wal"
    largest = 0
    try:
        _table(engine)
        first = _wal_generation(wal)
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
            # Rounds spaced as the thread's are, rather than back to back: the writer's pass
            # would then mostly find the next round's checkpoint copying, and give way to it.
            done.wait(0.02)
        thread.join(timeout=60)
        largest = max(largest, wal.stat().st_size)
        restarts = _wal_generation(wal) - first
        with engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM t") == _WRITES * _ROWS
    finally:
        engine.close()
    appended = _WRITES * _ROWS * _PAD
    assert engine.wal_finishing_passes > 0
    assert restarts > 0, "the WAL was never started over"
    # Each round lets the WAL start over: it never holds more than a fraction of what was written
    # (2.3-4.0 MB of 19.2 MB here; without the writer's pass, 25.4 MB: more than was written).
    assert largest < appended // 2, f"the WAL reached {largest:,} bytes of {appended:,} written"


def test_a_round_on_a_short_wal_asks_nothing_of_the_writer(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=10_000)
    try:
        _table(engine)
        for n in range(20):
            _write(engine, n)
            engine.checkpoint_round()
        assert engine.wal_finishing_passes == 0
    finally:
        engine.close()


def test_an_ask_no_writer_took_soon_is_dropped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An idle process's first write must not copy what other processes appended meanwhile.
    now = [1_000.0]
    monkeypatch.setattr(sqlite_checkpoint, "time", SimpleNamespace(monotonic=lambda: now[0]))
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=8)
    try:
        _table(engine)
        _write(engine, 0)
        engine.checkpoint_round()
        now[0] += 1.0
        _write(engine, 1)
        assert engine.wal_finishing_passes == 0, "a stale ask was taken"
        engine.checkpoint_round()
        _write(engine, 2)
        assert engine.wal_finishing_passes == 1
        _write(engine, 3)
        assert engine.wal_finishing_passes == 1, "an ask is taken once"
    finally:
        engine.close()


def test_a_round_held_back_by_a_reader_asks_nothing_of_the_writer(tmp_path: Path) -> None:
    # The writer would otherwise copy, while it holds the writer's turn, all that was appended
    # since the reader began.
    engine = SQLiteEngine(tmp_path / "trueup.db", checkpoint_interval_s=3600, wal_restart_pages=8)
    try:
        _table(engine)
        _write(engine, 0)
        with engine.read() as tx:
            tx.scalar("SELECT COUNT(*) FROM t")  # a snapshot, held while the others write

            def more() -> None:
                for n in range(1, 200):  # about 1,800 pages, more than a round may leave
                    _write(engine, n)

            thread = threading.Thread(target=more)
            thread.start()
            thread.join(timeout=60)
            engine.checkpoint_round()
        _write(engine, 200)
        assert engine.wal_finishing_passes == 0
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
