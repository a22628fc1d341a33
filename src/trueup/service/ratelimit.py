"""Per-API-key rate limits: token buckets, with defaults and per-key overrides in settings.

One process (SQLite) keeps its buckets in memory; on PostgreSQL the buckets live in the
database so the limit holds across every API process and host.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from trueup.core.errors import RateLimitedError
from trueup.service.settings import RateLimit, parse_overrides
from trueup.storage.ratelimits import RateLimitStore

__all__ = ["RateLimit", "RateLimiter", "parse_overrides"]


_LONGEST_WAIT_S = 86_400.0


class RateLimiter:
    """Checks one request of a key against its bucket; raises :class:`RateLimitedError`."""

    def __init__(
        self,
        default: RateLimit,
        overrides: Mapping[str, RateLimit],
        shared: RateLimitStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = default
        self._overrides = dict(overrides)
        self._shared = shared
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether checks go to the database (and so should not run on the event loop)."""
        return self._shared is not None

    def limit_for(self, key_id: str) -> RateLimit:
        return self._overrides.get(key_id, self._default)

    def check(self, key_id: str) -> None:
        limit = self.limit_for(key_id)
        if not limit.enabled:
            return
        wait = (
            self._shared.take(key_id, limit.rate_per_s, limit.burst)
            if self._shared is not None
            else self._take_local(key_id, limit)
        )
        if wait > 0:
            # A rate so small that a token takes longer than a day (or forever, for 1e-320/s)
            # is told as a day: Retry-After stays a number a client can act on.
            seconds = max(1, math.ceil(min(wait, _LONGEST_WAIT_S)))
            raise RateLimitedError(
                f"rate limit of {limit.rate_per_s:g} requests/s (burst {limit.burst}) for this API key "
                f"exceeded; retry in {seconds} s",
                seconds,
            )

    def _take_local(self, key_id: str, limit: RateLimit) -> float:
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(key_id, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - updated) * limit.rate_per_s)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / limit.rate_per_s
