"""Seal sizes: a seal takes at most its limit, and the loop takes more while a backlog lasts."""

from __future__ import annotations

from tests.service.conftest import principal_for, write
from trueup.sequencer.loop import FullBatchTrigger, next_seal_limit
from trueup.service.container import Services


def test_a_seal_takes_at_most_its_limit_in_acceptance_order(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": i + 1} for i in range(5)])
    first = services.sealer.seal_once(2)
    assert first is not None and (first.sealed_count, first.head.size) == (2, 2)
    rest = services.sealer.seal_once(10)
    assert rest is not None and (rest.sealed_count, rest.head.size) == (3, 5)
    assert services.sealer.seal_once(10) is None
    keys = [services.storage.writes.record_at_leaf(who.tenant_id, i) for i in range(5)]
    assert [record.key for record in keys if record] == ["k0", "k1", "k2", "k3", "k4"]


def test_the_seal_limit_follows_twice_what_the_last_seal_took_within_its_bounds() -> None:
    taken = (1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 12_000, 5_000, 300, 0)
    limits = [next_seal_limit(n, batch_size=1_000, max_batch_size=16_000) for n in taken]
    # A seal that drained the queue but took thousands keeps the next one large.
    assert limits == [2_000, 4_000, 8_000, 16_000, 16_000, 16_000, 16_000, 10_000, 1_000, 1_000]


def test_the_full_batch_trigger_fires_once_per_batch_and_starts_over_at_a_seal() -> None:
    trigger = FullBatchTrigger(batch_size=10)
    assert [trigger.add(n) for n in (4, 5, 1, 9)] == [False, False, True, False]
    trigger.reset()  # a seal started: the 9 waiting are in it
    assert [trigger.add(n) for n in (9, 1)] == [False, True]
    assert trigger.add(25) is True  # one wake-up, however far past the batch
