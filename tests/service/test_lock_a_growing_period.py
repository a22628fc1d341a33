"""Locking a period that late deltas keep streaming into."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.proof import period_proof_root
from trueup.service.audit import audit_log
from trueup.service.container import Services
from trueup.storage import checkpoints as checkpoints_module
from trueup.storage.engine import Tx


@pytest.mark.parametrize("late_month", ["2026-10", "2026-09"])
def test_a_period_that_grows_during_every_computation_is_still_locked(
    services: Services, monkeypatch: pytest.MonkeyPatch, late_month: str
) -> None:
    """A lock's figures are worked out beside the sealer; a seal adding a delta of the period
    meanwhile makes it compute them again. When that happens every time (a steady stream of
    late deltas into a large month), the lock must still be taken, not refused with a 503. A
    delta of a month before it counts as much: the lock's opening balance sums those months."""
    who = principal_for(services)
    october = "2026-10-15T00:00:00Z"
    write(services, who, {"key": "seed", "accountId": "c1", "bits": 5, "occurredAt": october})
    seal_all(services)

    engine = services.storage.engine
    real_write = engine.write
    writing = [0]

    @contextmanager
    def counted_write() -> Iterator[Tx]:
        writing[0] += 1
        try:
            with real_write() as tx:
                yield tx
        finally:
            writing[0] -= 1

    monkeypatch.setattr(engine, "write", counted_write)
    late: list[str] = []

    def a_late_delta_is_sealed_meanwhile(nonce: bytes, hashes: list[bytes]) -> bytes:
        if not writing[0]:  # computed beside the sealer: a seal of the period lands meanwhile
            key = f"late-{len(late)}"
            occurred_at = f"{late_month}-15T00:00:00Z"
            write(services, who, {"key": key, "accountId": "c1", "bits": 1, "occurredAt": occurred_at})
            seal_all(services)
            late.append(key)
        return period_proof_root(nonce, hashes)

    monkeypatch.setattr(checkpoints_module, "period_proof_root", a_late_delta_is_sealed_meanwhile)
    record, created = services.balances.lock_period(who, {"customerId": "c1", "period": "2026-10"})
    monkeypatch.undo()

    assert created and late  # the period did grow while the lock was worked out
    # The lock holds every delta of the month, and of those before it, sealed before it, and
    # nothing was sealed after.
    figures = (record.opening_balance, record.closing_balance, record.deltas_count)
    if late_month == "2026-10":
        assert figures == (0, 5 + len(late), 1 + len(late))
    else:
        assert figures == (len(late), 5 + len(late), 1)
    head = services.storage.log.head()
    assert head is not None and record.tree_size == head.size
    assert services.balances.lock_period(who, {"customerId": "c1", "period": "2026-10"}) == (record, False)
    assert audit_log(services.storage, services.log.verifier_key).ok
