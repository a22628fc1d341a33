"""Token buckets shared by every API process on one PostgreSQL database.

One atomic upsert per request refills the key's bucket by the elapsed time (database clock,
so several hosts agree), takes a token when one is there, and says whether it did.
"""

from __future__ import annotations

from trueup.storage.engine import Engine

__all__ = ["RateLimitStore"]

_TAKE = """
INSERT INTO rate_buckets (key_id, tokens, updated_at, allowed)
VALUES (?, ? - 1, EXTRACT(EPOCH FROM clock_timestamp()), TRUE)
ON CONFLICT (key_id) DO UPDATE SET
    tokens = CASE
        WHEN LEAST(?, rate_buckets.tokens + (excluded.updated_at - rate_buckets.updated_at) * ?) >= 1
        THEN LEAST(?, rate_buckets.tokens + (excluded.updated_at - rate_buckets.updated_at) * ?) - 1
        ELSE LEAST(?, rate_buckets.tokens + (excluded.updated_at - rate_buckets.updated_at) * ?)
    END,
    allowed = LEAST(?, rate_buckets.tokens + (excluded.updated_at - rate_buckets.updated_at) * ?) >= 1,
    updated_at = excluded.updated_at
RETURNING tokens, allowed
"""


class RateLimitStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def take(self, key_id: str, rate_per_s: float, burst: int) -> float:
        """Take one token; return 0 when granted, else the seconds until one is available."""
        with self._engine.write() as tx:
            row = tx.one(
                _TAKE,
                (
                    key_id,
                    float(burst),
                    float(burst),
                    rate_per_s,
                    float(burst),
                    rate_per_s,
                    float(burst),
                    rate_per_s,
                    float(burst),
                    rate_per_s,
                ),
            )
        assert row is not None
        tokens, allowed = float(row[0]), bool(row[1])
        return 0.0 if allowed else max(0.0, (1.0 - tokens) / rate_per_s)
