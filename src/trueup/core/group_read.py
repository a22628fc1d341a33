"""One read for every thread that asks at once, each answered from a read that began after it
asked: the group commit's idea, for reads that must be fresh.

The webhook dispatcher's workers read each delivery again just before sending it (its endpoint
may have been deleted while it waited for a worker). One read transaction a delivery cost 3-8
ms on PostgreSQL with 8 workers sharing the pool; with :class:`GroupRead` the workers that
ask while a read is under way wait for the next one, which takes all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupRead"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Ask(Generic[K, V]):
    """One thread's question: its key, then its answer (or the read's error), or its turn to read."""

    __slots__ = ("answered", "error", "key", "reads", "value")

    def __init__(self, key: K) -> None:
        self.key = key
        self.value: V | None = None
        self.error: BaseException | None = None
        self.reads = False
        """Set when this thread is to make the next read (for itself and whoever waits)."""
        self.answered = threading.Event()


class GroupRead(Generic[K, V]):
    """``current(key)`` is what ``read`` finds for ``key`` (``None`` when it finds nothing), from a
    call of ``read`` that began after ``current`` was called.

    A thread that finds no read under way makes one, for itself and every thread waiting; the
    threads that ask meanwhile wait, and the first of them makes the next read, for all of them.
    A read that raises raises in every thread it was made for.
    """

    def __init__(self, read: Callable[[Sequence[K]], Mapping[K, V]]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._waiting: list[_Ask[K, V]] = []
        self._reading = False
        self.reads = 0
        """How many reads were made (each for one or more keys)."""

    def current(self, key: K) -> V | None:
        ask: _Ask[K, V] = _Ask(key)
        with self._lock:
            self._waiting.append(ask)
            if not self._reading:
                self._reading = ask.reads = True
        if not ask.reads:
            ask.answered.wait()
        if ask.reads:  # this thread's turn: its own key is among those waiting
            self._read_for_waiting()
        if ask.error is not None:
            raise ask.error
        return ask.value

    def _read_for_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        self.reads += 1
        try:
            found = self._read([ask.key for ask in batch])
        except BaseException as exc:  # noqa: BLE001 - raised in each thread the read was for; never
            for ask in batch:  # leaves the threads that wait for the next read waiting for good
                ask.error = exc
        else:
            for ask in batch:
                ask.value = found.get(ask.key)
        with self._lock:  # the next read starts before this one's answers are handed out
            if self._waiting:
                self._waiting[0].reads = True
                self._waiting[0].answered.set()
            else:
                self._reading = False
        for ask in batch:
            ask.reads = False
            ask.answered.set()
