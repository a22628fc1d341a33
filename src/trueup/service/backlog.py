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
  ``Retry-After`` and nothing is stored. Pacing acts only below it. Reads, and replays of
  requests already stored, are unaffected by either.

The depth is a count over the queue's index, bounded by the level it is compared with (about
5 ms at 20,000 queued on PostgreSQL), read off the event loop by one task at a time while the
other requests use the last value: up to ``limit`` at most every ``refresh_s``, and up to
``pace`` every ``pace_refresh_s`` while writes are held. Held writes look again that often:
were they let go only every ``refresh_s``, the sequencer would drain the queue meanwhile and
wait for work.
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


class _QueueCount:
    """The number of queued deltas, counted no further than ``bound``, as last read.

    A read runs as a task of its own, so a request that started it and is then cancelled (its
    client went away) does not leave the value stale or a second count running beside it.
    """

    def __init__(self, log: LogStore, bound: int, clock: Callable[[], float]) -> None:
        self._log = log
        self._bound = bound
        self._clock = clock
        self.value = 0
        self._read_at: float | None = None
        self._reading: asyncio.Task[None] | None = None

    async def get(self, max_age_s: float) -> int:
        """The count, read again first if it is older than ``max_age_s`` and no read is under
        way; while one is, the last value."""
        stale = self._read_at is None or self._clock() - self._read_at >= max_age_s
        if stale and self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(_retrieve)
            await asyncio.shield(self._reading)
        return self.value

    async def _read(self) -> None:
        try:
            self.value = await asyncio.to_thread(self._log.queued_at_least, self._bound)
            self._read_at = self._clock()
        finally:
            self._reading = None


def _retrieve(task: asyncio.Task[None]) -> None:
    # A read whose request was cancelled meanwhile has no one to raise its error to (the
    # database unreachable, say): it is dropped here instead of being logged by the event loop
    # as never retrieved, and the next request reads again.
    if not task.cancelled():
        task.exception()


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
        self._limit = max(0, limit)
        self._pace = max(0, pace) if self._limit == 0 or pace < self._limit else 0
        self._max_wait_s = max_wait_s
        self._refresh_s = refresh_s
        self._pace_refresh_s = pace_refresh_s
        self._clock = clock
        self._sleep = sleep
        self._depth = _QueueCount(log, max(self._limit, self._pace), clock)
        self._pace_depth = _QueueCount(log, self._pace, clock)

    async def check(self) -> None:
        """Wait while at least ``pace`` deltas are queued (up to ``max_wait_s``); raise
        :class:`UnavailableError` while at least ``limit`` are."""
        if self._limit == 0 and self._pace == 0:
            return
        depth = await self._depth.get(self._refresh_s)
        self._refuse_if_full(depth)
        if self._pace == 0 or depth < self._pace:
            return
        started = self._clock()
        slept = False
        try:
            while depth >= self._pace and self._clock() - started < self._max_wait_s:
                await self._sleep(self._pace_refresh_s)
                slept = True
                self._refuse_if_full(await self._depth.get(self._refresh_s))
                depth = await self._pace_depth.get(self._pace_refresh_s)
        finally:
            if slept:
                PACED_WRITES.inc()
                PACED_SECONDS.inc(self._clock() - started)

    def _refuse_if_full(self, depth: int) -> None:
        if self._limit and depth >= self._limit:
            raise UnavailableError(
                f"the log is at least {self._limit:,} deltas behind its writes "
                f"(TRUEUP_MAX_QUEUE_DEPTH); nothing was stored, retry in a few seconds",
                retry_after_seconds=RETRY_AFTER_S,
            )
