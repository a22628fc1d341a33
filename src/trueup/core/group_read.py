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

__all__ = ["GroupRead", "SharedReadError"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReadError(Exception):
    """What a thread gets when the read made for it by another thread failed; its cause is
    that read's error (each waiting thread raises its own, so no traceback grows with every
    thread that raises it, and an interrupt of the reading thread stays that thread's)."""


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
    A read that raises raises in the thread that made it, and :class:`SharedReadError` in the
    others it was made for. A waiting thread that is interrupted leaves the queue, or passes its
    turn to read on: nobody is left waiting for a read that never comes.
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
            try:
                ask.answered.wait()
            except BaseException:
                self._leave(ask)
                raise
        if ask.reads:  # this thread's turn: its own key is among those waiting
            self._read_for_waiting()
        if ask.error is not None:
            raise ask.error
        return ask.value

    def _leave(self, ask: _Ask[K, V]) -> None:
        """``ask``'s thread stops waiting: out of the queue, or its turn to read passed on."""
        with self._lock:
            if ask in self._waiting:
                self._waiting.remove(ask)
            if ask.reads:  # made the next reader, it will not read: the next in line does
                ask.reads = False
                self._pass_turn()

    def _pass_turn(self) -> None:
        """With the lock held: the first thread waiting makes the next read, or none is made."""
        if self._waiting:
            self._waiting[0].reads = True
            self._waiting[0].answered.set()
        else:
            self._reading = False

    def _read_for_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self.reads += 1
            found = self._read([ask.key for ask in batch])
            values = [found.get(ask.key) for ask in batch]
        except BaseException as exc:  # noqa: BLE001 - raised in each thread the read was for
            for ask in batch:
                if ask.reads:  # this thread's own
                    ask.error = exc
                else:
                    ask.error = SharedReadError(f"the shared read failed: {exc}")
                    ask.error.__cause__ = exc
        else:
            for ask, value in zip(batch, values, strict=True):
                ask.value = value
        finally:
            with self._lock:  # the next read starts before this one's answers are handed out
                self._pass_turn()
            for ask in batch:
                ask.reads = False
                ask.answered.set()
