"""Token buckets shared by every API process on one PostgreSQL database.

One atomic upsert per request refills the key's bucket by the elapsed time (database clock,
so several hosts agree), takes a token when one is there, and says whether it did. Time that
went backwards (the database clock stepped back) refills nothing: taken as it came, it emptied
the bucket by the step's worth of tokens and refused the key for that long.
"""

from __future__ import annotations

from trueup.storage.engine import Engine

__all__ = ["RateLimitStore"]

_REFILLED = "LEAST(?, rate_buckets.tokens + GREATEST(excluded.updated_at - rate_buckets.updated_at, 0) * ?)"
"""The bucket's tokens now, at most the burst: time gone backwards counts as none."""

_TAKE = f"""
INSERT INTO rate_buckets (key_id, tokens, updated_at, allowed)
VALUES (?, ? - 1, EXTRACT(EPOCH FROM clock_timestamp()), TRUE)
ON CONFLICT (key_id) DO UPDATE SET
    tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
    allowed = {_REFILLED} >= 1,
    updated_at = excluded.updated_at
RETURNING tokens, allowed
"""


_FASTEST_PER_S = 1e12
_SLOWEST_PER_S = 1e-12
"""The rates the refill is computed at, at most and at least. PostgreSQL refuses
``double precision`` arithmetic that overflows or underflows ("value out of range"), so a
rate of 1e308/s (the elapsed time times it) or of 5e-324/s (a fraction of a second times it)
answered the key's requests with a 500. No client sends 1e12 requests a second, and a bucket refilled at
1e-12/s gains a token in 31,000 years: the limit is the same, the arithmetic stays in range
(the wait told a refused request is still reckoned at the configured rate)."""


class RateLimitStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def take(self, key_id: str, rate_per_s: float, burst: int) -> float:
        """Take one token; return 0 when granted, else the seconds until one is available."""
        refill = min(max(rate_per_s, _SLOWEST_PER_S), _FASTEST_PER_S)
        with self._engine.write() as tx:
            row = tx.one(
                _TAKE,
                (
                    key_id,
                    float(burst),
                    float(burst),
                    refill,
                    float(burst),
                    refill,
                    float(burst),
                    refill,
                    float(burst),
                    refill,
                ),
            )
        assert row is not None
        tokens, allowed = float(row[0]), bool(row[1])
        return 0.0 if allowed else max(0.0, (1.0 - tokens) / rate_per_s)
