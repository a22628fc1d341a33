"""Random bytes for the write path, drawn from the operating system in blocks.

Every accepted delta takes 16 bytes of salt and every request 7 bytes for its id. Asking the
kernel for them per request costs a system call, during which CPython lets go of the
interpreter lock: on a busy server the event loop then waits for the group-commit thread to
hand the lock back before it can answer the next request (py-spy showed the event loop in
``os.urandom`` for 13 % of its samples under the single-item load). The pool asks for 64 KiB
at a time instead and hands every byte out exactly once.

The bytes are those of :func:`os.urandom`; nothing is derived or reused. A child process made
with ``fork`` starts with an empty pool, so parent and child never hand out the same bytes.
Unused bytes wait in memory until taken; a virtual machine restored twice from one snapshot
would hand out the same pooled bytes in both copies (at most one block), where the kernel's
generator is reseeded on restore.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["EntropyPool", "random_bytes"]


class EntropyPool:
    """Bytes from ``source`` (:func:`os.urandom`), fetched ``block`` at a time, each handed
    out once. Takes larger than a quarter of a block (a big batch's salts) go straight to the
    source: one system call per such request costs nothing, and wastes no part of a block."""

    def __init__(self, block: int = 65_536, source: Callable[[int], bytes] = os.urandom) -> None:
        if block <= 0:
            raise ValueError("block must be positive")
        self._block = block
        self._source = source
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        """``size`` fresh random bytes."""
        if size < 0:
            raise ValueError("size must not be negative")
        if size > self._block // 4:
            return self._source(size)
        with self._lock:
            if self._offset + size > len(self._buffer):
                self._buffer = self._source(self._block)
                self._offset = 0
            start = self._offset
            self._offset = start + size
            return self._buffer[start : start + size]

    def forget(self) -> None:
        """Drop the unused bytes (the process-wide pool does so in a child after ``fork``)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0


_POOL = EntropyPool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_bytes(size: int) -> bytes:
    """``size`` fresh random bytes from the process's pool."""
    return _POOL.take(size)
