"""The write path's random bytes: from os.urandom in blocks, every byte handed out once."""

from __future__ import annotations

import os

import pytest

from trueup.service import entropy
from trueup.service.entropy import EntropyPool


class CountingUrandom:
    """Stands in for os.urandom with bytes that never repeat, counting the calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._next = 0

    def __call__(self, size: int) -> bytes:
        self.calls.append(size)
        # 4-byte big-endian counters: every 4-byte word handed out is distinct.
        words = [(self._next + i).to_bytes(4, "big") for i in range(size // 4)]
        self._next += size // 4
        return b"".join(words)


def test_takes_are_consecutive_slices_of_one_block_then_a_fresh_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = CountingUrandom()
    monkeypatch.setattr(entropy.os, "urandom", source)
    pool = EntropyPool(block=64)
    taken = [pool.take(16) for _ in range(4)]  # exactly one block
    assert source.calls == [64]
    assert b"".join(taken) == b"".join(i.to_bytes(4, "big") for i in range(16))
    tail = pool.take(20)  # does not fit what is left (nothing): a new block, from its start
    assert source.calls == [64, 64]
    assert tail == b"".join(i.to_bytes(4, "big") for i in range(16, 21))
    # 44 bytes remain; a take of 48 leaves them unused rather than splitting across blocks.
    assert pool.take(48) == b"".join(i.to_bytes(4, "big") for i in range(32, 44))
    assert source.calls == [64, 64, 64]


def test_large_and_empty_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    source = CountingUrandom()
    monkeypatch.setattr(entropy.os, "urandom", source)
    pool = EntropyPool(block=64)
    assert len(pool.take(1_000)) == 1_000
    assert source.calls == [1_000]  # larger than a block: straight from the system
    assert pool.take(0) == b""
    with pytest.raises(ValueError, match="negative"):
        pool.take(-1)
    with pytest.raises(ValueError, match="positive"):
        EntropyPool(block=0)


def test_real_bytes_do_not_repeat_across_many_takes() -> None:
    pool = EntropyPool(block=4_096)
    salts = [pool.take(16) for _ in range(10_000)]  # about 40 blocks
    assert len(set(salts)) == len(salts)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_hand_out_the_parents_bytes() -> None:
    entropy.random_bytes(16)  # the module pool now holds the rest of a block
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
