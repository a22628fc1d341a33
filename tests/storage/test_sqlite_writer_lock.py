"""The SQLite writer's turn across processes (``trueup.storage.sqlite_lock``): a holder that
never lets go (a stopped process) costs a write a 503 after the wait, not a hang; one that lets
go during the wait hands the turn over at once; a turn that comes after its writer gave up is
let go. Another process is stood for by another open of the lock file, which ``flock`` treats
as another holder."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trueup.storage import StorageUnavailableError
from trueup.storage.sqlite import SQLiteEngine
from trueup.storage.sqlite_lock import WriterTurn


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SQLiteEngine]:
    opened = SQLiteEngine(tmp_path / "t.db")
    with opened.write() as tx:
        tx.execute("CREATE TABLE t (n INTEGER)")
    yield opened
    opened.close()


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[int]:
    """The writer lock file as another process holds it: a descriptor of its own, locked."""
    fd = os.open(tmp_path / "t.db.writer.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield fd
    os.close(fd)


def _wait_until_asked(turn: WriterTurn) -> None:
    deadline = time.monotonic() + 30  # a safety net: the writer asks at once
    while not turn._wanted:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_holder_that_never_lets_go_is_a_503_after_the_wait_then_writes_go_on(
    engine: SQLiteEngine, other_process: int
) -> None:
    engine._writer_lock._wait_s = 0.2
    with (
        pytest.raises(
            StorageUnavailableError, match=r"writer lock \(t\.db\.writer\.lock\) was held by another"
        ),
        engine.write() as tx,
    ):
        tx.execute("INSERT INTO t VALUES (1)")
    fcntl.flock(other_process, fcntl.LOCK_UN)
    engine._writer_lock._wait_s = 30.0
    with engine.write() as tx:
        tx.execute("INSERT INTO t VALUES (2)")
    with engine.read() as tx:
        assert tx.execute("SELECT n FROM t") == [(2,)]
    # The turn the waiting thread got after its writer gave up was let go: others can take it.
    deadline = time.monotonic() + 30  # a safety net: it lets go at once
    while True:
        try:
            fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            assert time.monotonic() < deadline, "the abandoned turn was never let go"
            time.sleep(0.001)


def test_a_holder_that_lets_go_during_the_wait_hands_the_turn_over(
    engine: SQLiteEngine, other_process: int
) -> None:
    def let_go() -> None:
        _wait_until_asked(engine._writer_lock)
        fcntl.flock(other_process, fcntl.LOCK_UN)

    releaser = threading.Thread(target=let_go)
    releaser.start()
    with engine.write() as tx:  # waits for the other holder, then writes
        tx.execute("INSERT INTO t VALUES (3)")
    releaser.join(30)
    with pytest.raises(BlockingIOError), engine.write():  # held while writing; given back after
        fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with engine.read() as tx:
        assert tx.execute("SELECT n FROM t") == [(3,)]


def test_writes_queued_behind_one_that_gave_up_are_refused_at_once_not_each_after_the_wait(
    engine: SQLiteEngine, other_process: int
) -> None:
    """Four writes of one process behind a stopped holder: the first waits, the rest are
    refused at once (each waiting the whole wait in turn made the fourth wait four times it)."""
    engine._writer_lock._wait_s = 0.3
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            with engine.write() as tx:
                tx.execute("INSERT INTO t VALUES (9)")
        except StorageUnavailableError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert (
        sorted(message.split(" by another")[0][-18:] for message in outcomes)
        == sorted(["writer.lock) was held"] * 1 + ["writer.lock) is still held"] * 3)
        or len(outcomes) == 4
    )
    assert sum("was held by another process for 0.3 s" in m for m in outcomes) == 1
    assert sum("is still held by another process, which a write before" in m for m in outcomes) == 3
    fcntl.flock(other_process, fcntl.LOCK_UN)
    deadline = time.monotonic() + 30  # a safety net: the waiting thread lets go at once
    while True:
        try:
            with engine.write() as tx:
                tx.execute("INSERT INTO t VALUES (10)")
            break
        except StorageUnavailableError:
            assert time.monotonic() < deadline, "writes never went on after the holder let go"
            time.sleep(0.01)
    with engine.read() as tx:
        assert tx.execute("SELECT n FROM t") == [(10,)]


def test_a_lock_the_file_system_refuses_is_said_and_the_next_write_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    turn = WriterTurn(tmp_path / "w.lock", 30.0)
    holder = os.open(tmp_path / "w.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    real_flock = fcntl.flock
    calls = {"blocking": 0}

    def failing(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the waiting thread's blocking call
            calls["blocking"] += 1
            if calls["blocking"] == 1:
                raise OSError(37, "No locks available")
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", failing)
    with pytest.raises(StorageUnavailableError, match=r"cannot take the SQLite writer lock: \[Errno 37\]"):
        turn.acquire()
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    turn.acquire()  # a new waiting thread, or the fast path: the lock is free now
    turn.release()
    turn.close()
