"""Backpressure: refuse new deltas while the log is too far behind its writes.

Accepted deltas are durable whatever the queue holds, but a queue that grows without bound
means balances, proofs and ``verification.completed`` events that lag further and further.
When more than ``limit`` deltas wait to be sealed, write requests get ``503
SERVICE_UNAVAILABLE`` with ``Retry-After`` until the sequencer catches up; reads, and replays
of requests already stored, are unaffected. The depth is read at most every ``refresh_s`` per
process (a bounded count over the queue's index), off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from trueup.core.errors import UnavailableError
from trueup.storage.log import LogStore

__all__ = ["QueueGuard"]

RETRY_AFTER_S = 2


class QueueGuard:
    def __init__(
        self,
        log: LogStore,
        limit: int,
        refresh_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._limit = limit
        self._refresh_s = refresh_s
        self._clock = clock
        self._depth = 0
        self._read_at: float | None = None
        self._reading = False

    async def check(self) -> None:
        """Raise :class:`UnavailableError` while at least ``limit`` deltas are queued."""
        if self._limit <= 0:
            return
        now = self._clock()
        stale = self._read_at is None or now - self._read_at >= self._refresh_s
        if stale and not self._reading:  # one reader at a time; the others use the last value
            self._reading = True
            try:
                self._depth = await asyncio.to_thread(self._log.queued_at_least, self._limit)
            finally:
                self._reading = False
                self._read_at = self._clock()
        if self._depth >= self._limit:
            raise UnavailableError(
                f"the log is at least {self._limit:,} deltas behind its writes "
                f"(TRUEUP_MAX_QUEUE_DEPTH); nothing was stored, retry in a few seconds",
                retry_after_seconds=RETRY_AFTER_S,
            )
