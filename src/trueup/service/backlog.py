"""Backpressure: hold new deltas back, then refuse them, while the log is behind its writes.

Accepted deltas are durable whatever the queue holds, but a queue that grows without bound
means balances, proofs and ``verification.completed`` events that lag further and further.
Two levels, both counted in queued (accepted, unsealed) deltas:

- ``pace`` (``TRUEUP_QUEUE_PACE_DEPTH``): a write waits, before its group commit, until fewer
  deltas than that are queued, or for ``max_wait_s`` at most, and is then stored as usual. A
  client that sends its next request when the last one is answered is slowed to the rate the
  sequencer seals, so a sustained load keeps the lag to about ``pace`` deltas instead of
  filling the queue; a burst below it is taken at full speed.
- ``limit`` (``TRUEUP_MAX_QUEUE_DEPTH``): a write gets ``503 SERVICE_UNAVAILABLE`` with
  ``Retry-After`` and nothing is stored. Reads, and replays of requests already stored, are
  unaffected by either.

The depth is read at most every ``refresh_s`` per process, and every ``pace_refresh_s`` while
writes are held back (a count over the queue's index, bounded by the larger level; about 5 ms
at 20,000 queued on PostgreSQL), off the event loop, by one request at a time; the others use
the last value. Held writes look again that often: were they let go only every ``refresh_s``,
the sequencer would drain the queue meanwhile and wait for work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from trueup.core.errors import UnavailableError
from trueup.service.metrics import PACED_SECONDS, PACED_WRITES
from trueup.storage.log import LogStore

__all__ = ["QueueGuard"]

RETRY_AFTER_S = 2


class QueueGuard:
    def __init__(
        self,
        log: LogStore,
        limit: int,
        pace: int = 0,
        max_wait_s: float = 10.0,
        refresh_s: float = 0.5,
        pace_refresh_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._log = log
        self._limit = max(0, limit)
        self._pace = max(0, pace)
        self._max_wait_s = max_wait_s
        self._refresh_s = refresh_s
        self._pace_refresh_s = pace_refresh_s
        self._clock = clock
        self._sleep = sleep
        self._depth = 0
        self._read_at: float | None = None
        self._reading = False

    async def check(self) -> None:
        """Wait while at least ``pace`` deltas are queued (up to ``max_wait_s``); raise
        :class:`UnavailableError` while at least ``limit`` are."""
        if self._limit == 0 and self._pace == 0:
            return
        depth = await self._current_depth(self._refresh_s)
        self._refuse_if_full(depth)
        if self._pace == 0 or depth < self._pace:
            return
        started = self._clock()
        try:
            while depth >= self._pace and self._clock() - started < self._max_wait_s:
                await self._sleep(self._pace_refresh_s)
                depth = await self._current_depth(self._pace_refresh_s)
                self._refuse_if_full(depth)
        finally:
            PACED_WRITES.inc()
            PACED_SECONDS.inc(self._clock() - started)

    async def _current_depth(self, max_age_s: float) -> int:
        now = self._clock()
        stale = self._read_at is None or now - self._read_at >= max_age_s
        if stale and not self._reading:  # one reader at a time; the others use the last value
            self._reading = True
            try:
                bound = max(self._limit, self._pace)
                self._depth = await asyncio.to_thread(self._log.queued_at_least, bound)
            finally:
                self._reading = False
                self._read_at = self._clock()
        return self._depth

    def _refuse_if_full(self, depth: int) -> None:
        if self._limit and depth >= self._limit:
            raise UnavailableError(
                f"the log is at least {self._limit:,} deltas behind its writes "
                f"(TRUEUP_MAX_QUEUE_DEPTH); nothing was stored, retry in a few seconds",
                retry_after_seconds=RETRY_AFTER_S,
            )
