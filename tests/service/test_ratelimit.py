"""Token buckets per API key: local (one process) and shared (PostgreSQL, many processes)."""

from __future__ import annotations

import time

import pytest

from trueup.core.errors import RateLimitedError
from trueup.service.ratelimit import RateLimit, RateLimiter, parse_overrides
from trueup.storage import open_storage
from trueup.storage.ratelimits import RateLimitStore

SLOW, FAST = "slowkeyslowkey23", "fastkeyfastkey45"  # key ids, as trueup keys list shows them


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(2.0, 3), {}, clock=clock)
    for _ in range(3):
        limiter.check("key")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("key")
    assert refused.value.retry_after_seconds == 1
    clock.now += 0.5  # one token back at 2/s
    limiter.check("key")
    with pytest.raises(RateLimitedError):
        limiter.check("key")
    limiter.check("other-key")  # buckets are per key


def test_overrides_and_disabled_limits() -> None:
    limiter = RateLimiter(RateLimit(0, 0), parse_overrides(f"{SLOW}=1/1, {FAST}=100/200"), clock=FakeClock())
    for _ in range(1000):
        limiter.check("unlimited")
    limiter.check(SLOW)
    with pytest.raises(RateLimitedError):
        limiter.check(SLOW)
    assert limiter.limit_for(FAST) == RateLimit(100.0, 200)
    with pytest.raises(ValueError, match="key=rate/burst"):
        parse_overrides(f"{SLOW}=x")
    assert parse_overrides(f"{SLOW}=0/0") == {SLOW: RateLimit(0.0, 0)}  # 0 turns a key's limit off
    # A rate alone bursts to the rate, at least 1 (docs/configuration.md).
    assert parse_overrides(f"{SLOW}=50, {FAST}=0.5") == {SLOW: RateLimit(50.0, 50), FAST: RateLimit(0.5, 1)}


def test_an_override_must_name_a_key_by_its_id() -> None:
    """Any other name matches no key, so its limit would be ignored without a word."""
    with pytest.raises(ValueError, match=r"'slow' is not a key id \(16 characters"):
        parse_overrides("slow=1/1")
    with pytest.raises(ValueError, match=rf"'{SLOW.upper()}' is not a key id"):
        parse_overrides(f"{SLOW.upper()}=1/1")
    secret = "A" * 43
    with pytest.raises(ValueError) as refused:
        parse_overrides(f"{FAST}=1/1, pk_live_{SLOW}.{secret}=5/10")
    assert str(refused.value).startswith(f"TRUEUP_RATE_LIMIT_OVERRIDES: pk_live_{SLOW}… is a whole API key")
    assert secret not in str(refused.value)
    for entry in (f"PK_LIVE_{SLOW}.{secret}=5/10", f"{SLOW}.{secret}=5/10"):  # any case; no prefix
        with pytest.raises(ValueError) as refused:
            parse_overrides(entry)
        assert "is a whole API key or holds its secret" in str(refused.value)
        assert secret not in str(refused.value)


@pytest.mark.parametrize("entry", ["k=-1/10", "k=nan/10", "k=inf/10", "k=1e400", "k=5/-1", "=5/5", " =5/5"])
def test_an_override_that_would_let_every_request_through_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"TRUEUP_RATE_LIMIT_OVERRIDES: .*key=rate/burst"):
        parse_overrides(entry)


def test_shared_buckets_hold_across_processes(pg_url: str) -> None:
    first, second = open_storage(pg_url), open_storage(pg_url)
    try:
        a, b = RateLimitStore(first.engine), RateLimitStore(second.engine)
        granted = [store.take("k1", 0.001, 4) == 0 for store in (a, b, a, b, a, b)]
        assert granted == [True, True, True, True, False, False]
        assert b.take("k1", 0.001, 4) > 100  # about 1000 s to the next token at 0.001/s
        assert a.take("k2", 0.001, 4) == 0
    finally:
        first.close()
        second.close()


def test_a_rate_too_small_to_wait_for_is_a_429_of_a_day_not_a_500() -> None:
    limiter = RateLimiter(RateLimit(0, 0), parse_overrides(f"{SLOW}=5e-324/1"), clock=FakeClock())
    limiter.check(SLOW)
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(SLOW)
    assert refused.value.retry_after_seconds == 86_400


@pytest.mark.parametrize(("rate", "pause_s"), [(1e308, 2.1), (5e-324, 0.0)])
def test_a_shared_bucket_at_an_extreme_rate_answers_rather_than_failing(
    pg_url: str, rate: float, pause_s: float
) -> None:
    # Each was a 500 for the key's requests: 1e308/s times the two seconds between requests
    # overflows PostgreSQL's double precision, and 5e-324/s times the fraction of a second
    # between two quick requests underflows it; both are refused there as "value out of range".
    storage = open_storage(pg_url)
    try:
        store = RateLimitStore(storage.engine)
        assert store.take("k", rate, 2) == 0
        if pause_s:
            time.sleep(pause_s)
        outcomes = [store.take("k", rate, 2) for _ in range(3)]
    finally:
        storage.close()
    if rate > 1:
        assert outcomes == [0.0, 0.0, 0.0]  # refilled at once: as good as no limit
    else:
        assert outcomes[0] == 0.0 and outcomes[1] > 86_400 and outcomes[2] > 86_400  # burst 2, then none


def test_a_shared_bucket_is_not_emptied_for_long_by_the_database_clock_stepping_back(pg_url: str) -> None:
    # The bucket's time moved an hour ahead of the database clock is what a step back of the
    # clock by an hour (an NTP correction, a failover to a server whose clock is late) leaves:
    # the elapsed time came out negative, took an hour's refill (36 tokens at 0.01/s) from
    # the bucket, and refused every request of the key for that hour and the next hour.
    storage = open_storage(pg_url)
    try:
        store = RateLimitStore(storage.engine)
        assert store.take("k", 0.01, 5) == 0
        with storage.engine.write() as tx:
            tx.execute("UPDATE rate_buckets SET updated_at = updated_at + 3600 WHERE key_id = ?", ("k",))
        granted = [store.take("k", 0.01, 5) == 0 for _ in range(4)]
        assert granted == [True, True, True, True]  # the rest of the burst, as before the step
        wait = store.take("k", 0.01, 5)
        assert 0 < wait <= 100  # then refused, as ever, until the next token at 0.01/s
    finally:
        storage.close()
