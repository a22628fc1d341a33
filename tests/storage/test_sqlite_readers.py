"""SQLite reader connections: one per thread, and none left open for threads that have ended."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from trueup.storage.sqlite import SQLiteEngine


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _read_once(engine: SQLiteEngine) -> None:
    with engine.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM t") == 1


def test_threads_that_end_leave_no_reader_connection_open(tmp_path: Path) -> None:
    # The HTTP handlers' worker pool ends threads idle for 10 s and starts new ones under the next
    # burst: each read on a new thread opens a connection, which stayed open after its thread ended.
    engine = SQLiteEngine(tmp_path / "trueup.db")
    try:
        with engine.write() as tx:
            tx.execute("CREATE TABLE t (n INTEGER)")
            tx.execute("INSERT INTO t VALUES (1)")
        _read_once(engine)
        before = _open_fds()
        for _ in range(50):
            thread = threading.Thread(target=_read_once, args=(engine,))
            thread.start()
            thread.join()
        assert _open_fds() - before <= 4, "one or two threads' connections at most, not fifty"
    finally:
        engine.close()


def test_a_live_thread_keeps_its_reader_connection(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "trueup.db")
    read_again = threading.Event()
    others_done = threading.Event()
    failures: list[BaseException] = []

    def long_lived() -> None:
        try:
            _read_once(engine)
            read_again.set()
            others_done.wait(30)
            _read_once(engine)  # its connection, made before the others ended, is still open
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    try:
        with engine.write() as tx:
            tx.execute("CREATE TABLE t (n INTEGER)")
            tx.execute("INSERT INTO t VALUES (1)")
        keeper = threading.Thread(target=long_lived)
        keeper.start()
        assert read_again.wait(30)
        for _ in range(5):
            thread = threading.Thread(target=_read_once, args=(engine,))
            thread.start()
            thread.join()
        others_done.set()
        keeper.join(30)
        assert failures == []
    finally:
        engine.close()


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_reading_threads_each_cache_a_few_mib_not_as_much_as_the_writer(tmp_path: Path) -> None:
    # Every reading thread keeps its own connection and page cache for as long as it lives (the
    # HTTP handlers' pool has up to 40): with the writer's 64 MiB each, 40 threads deriving
    # random customers of a 292 MiB database held 2.3 GiB. Five threads that each read all
    # 24 MiB of a table now hold about 8 MiB of it each.
    engine = SQLiteEngine(tmp_path / "trueup.db")
    scanned = threading.Barrier(6)
    release = threading.Event()
    failures: list[BaseException] = []

    def scan() -> None:
        try:
            with engine.read() as tx:
                assert tx.scalar("SELECT SUM(length(b)) FROM big") == 6_000 * 4_000
            scanned.wait(30)
            release.wait(30)
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    try:
        with engine.write() as tx:
            tx.execute("CREATE TABLE big (b BLOB)")
            tx.executemany("INSERT INTO big VALUES (randomblob(4000))", [() for _ in range(6_000)])
        before = _resident_mib()
        threads = [threading.Thread(target=scan) for _ in range(5)]
        for thread in threads:
            thread.start()
        scanned.wait(30)
        grown = _resident_mib() - before
        release.set()
        for thread in threads:
            thread.join(30)
        assert failures == []
        assert grown < 60, f"five readers hold {grown:.0f} MiB (at 64 MiB a connection: about 120)"
    finally:
        release.set()
        engine.close()
