"""200,000 deltas for one customer: the kept figures equal a plain sum, whatever the scope."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from trueup.service.container import open_services
from trueup.service.keys import Principal
from trueup.service.settings import Settings
from trueup.storage.write_drafts import DeltaDraft, WriteDraft

COUNT = 200_000


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_200k_deltas_match_a_plain_sum(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=url))
    try:
        issued = services.keys.create("big")
        who: Principal = services.keys.authenticate(issued.key)
        rng = random.Random(20261125)
        amounts = [rng.choice([-1, 1]) * rng.randint(1, 1_000_000_000) for _ in range(COUNT)]
        months = [f"2025-{rng.randint(1, 12):02d}" for _ in range(COUNT)]
        for start in range(0, COUNT, 5_000):
            items = [
                DeltaDraft(
                    key=f"k{i}",
                    customer_id="whale",
                    amount=amounts[i],
                    reason="",
                    metadata=None,
                    occurred_at=f"{months[i]}-15T00:00:00.000000Z",
                    explicit_time=True,
                    salt=i.to_bytes(16, "big"),
                )
                for i in range(start, min(COUNT, start + 5_000))
            ]
            [result] = services.storage.writes.commit(
                [
                    WriteDraft(
                        tenant_id=who.tenant_id,
                        request_id=f"req_{start:020d}",
                        source="writes",
                        accepted_at="2025-12-31T00:00:00.000000Z",
                        items=items,
                    )
                ]
            )
            assert not isinstance(result, Exception)
        while services.sealer.seal_once() is not None:
            pass

        whole = services.balances.derive(who, "whale", {"limit": "1000", "offset": "150000"})
        assert whole.balance == sum(amounts)
        assert whole.summary.count == COUNT
        assert [d.amount for d in whole.deltas] == amounts[150_000:151_000]
        for month in whole.summary.months:
            in_month = [a for a, m in zip(amounts, months, strict=True) if m == month.period]
            assert (month.credits, month.debits, month.count) == (
                sum(a for a in in_month if a > 0),
                sum(a for a in in_month if a < 0),
                len(in_month),
            )
        tail = services.balances.derive(
            who, "whale", {"startingCheckpoint": "a_123456", "startingCheckpointType": "anchorId"}
        )
        assert tail.balance == sum(amounts[123_457:])
        assert tail.summary.count == COUNT - 123_457
        march = services.balances.derive(who, "whale", {"period": "2025-03", "order": "desc", "limit": "5"})
        in_march = [a for a, m in zip(amounts, months, strict=True) if m == "2025-03"]
        assert march.balance == sum(in_march)
        assert [d.amount for d in march.deltas] == in_march[::-1][:5]
    finally:
        services.close()
