"""The write path's random bytes: from os.urandom in blocks, every byte handed out once."""

from __future__ import annotations

import os
import threading

import pytest

from trueup.service import entropy
from trueup.service.entropy import EntropyPool


class CountingSource:
    """Bytes that never repeat (4-byte counters), with the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._next = 0

    def __call__(self, size: int) -> bytes:
        self.calls.append(size)
        words = [(self._next + i).to_bytes(4, "big") for i in range(size // 4)]
        self._next += size // 4
        return b"".join(words)


def words(start: int, stop: int) -> bytes:
    return b"".join(i.to_bytes(4, "big") for i in range(start, stop))


def test_takes_are_consecutive_slices_of_one_block_then_a_fresh_block() -> None:
    source = CountingSource()
    pool = EntropyPool(block=64, source=source)
    taken = [pool.take(16) for _ in range(4)]  # exactly one block
    assert source.calls == [64]
    assert b"".join(taken) == words(0, 16)
    assert pool.take(12) == words(16, 19)  # nothing left: a new block, from its start
    assert source.calls == [64, 64]
    # 52 bytes remain; three takes of 16 fit, the fourth does not and starts a new block
    # rather than joining two.
    assert [pool.take(16) for _ in range(3)] == [words(19, 23), words(23, 27), words(27, 31)]
    assert pool.take(16) == words(32, 36)
    assert source.calls == [64, 64, 64]


def test_takes_over_a_quarter_block_go_straight_to_the_source() -> None:
    source = CountingSource()
    pool = EntropyPool(block=64, source=source)
    assert pool.take(16) == words(0, 4)  # a quarter: from a block
    assert pool.take(20) == words(16, 21)  # more: its own call, the block is kept
    assert pool.take(16) == words(4, 8)
    assert source.calls == [64, 20]
    assert pool.take(0) == b""
    with pytest.raises(ValueError, match="negative"):
        pool.take(-1)
    with pytest.raises(ValueError, match="positive"):
        EntropyPool(block=0)


def test_threads_never_get_the_same_bytes() -> None:
    pool = EntropyPool(block=4_096)
    results: list[list[bytes]] = [[] for _ in range(8)]

    def take(out: list[bytes]) -> None:
        for _ in range(5_000):
            out.append(pool.take(16))

    threads = [threading.Thread(target=take, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    salts = [salt for out in results for salt in out]
    assert len(salts) == 40_000
    assert len(set(salts)) == len(salts)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_hand_out_the_parents_bytes() -> None:
    entropy._POOL.forget()
    entropy.random_bytes(16)  # the process pool now holds the rest of a fresh block
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes and leave at once
        try:
            os.write(write_end, entropy.random_bytes(16))
        finally:
            os._exit(0)
    os.close(write_end)
    child_bytes = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    parent_bytes = entropy.random_bytes(16)
    assert len(child_bytes) == 16
    assert child_bytes != parent_bytes
