"""A month's pages, at every offset and in both orders, read the same deltas whether the page's
first delta is stepped to in the month's index or searched for by its position."""

from __future__ import annotations

import random

import pytest

from trueup.service.container import Services
from trueup.storage import balance_pages

from .conftest import principal_for, seal_all, write
from .test_balances import delta

MONTHS = ("2026-01", "2026-02", "2026-03")


def _history(services: Services) -> dict[str, list[int]]:
    """Deltas of customer "m" over three months in uneven runs (a month's leaves far apart, then
    side by side), between deltas of another customer, over several requests and seals.
    Returns each month's amounts in leaf order."""
    who = principal_for(services)
    rng = random.Random(20261204)
    by_month: dict[str, list[int]] = {month: [] for month in MONTHS}
    amount = 0
    for request in range(12):
        items = []
        for _ in range(rng.choice([1, 5, 40])):
            month = rng.choices(MONTHS, weights=[6, 1, 3] if request % 2 else [1, 8, 1])[0]
            amount += 1
            by_month[month].append(amount)
            items.append(delta(f"m{amount}", amount, f"{month}-10T00:00:00Z", customer="m"))
            if rng.random() < 0.5:
                items.append(delta(f"o{amount}", -1, f"{month}-11T00:00:00Z", customer="other"))
        write(services, who, *items)
        if request % 3 == 2:
            seal_all(services)
    seal_all(services)
    return by_month


@pytest.mark.parametrize("step_over_at_most", [0, 1, 1_000])
def test_every_page_of_every_month(
    services: Services, monkeypatch: pytest.MonkeyPatch, step_over_at_most: int
) -> None:
    monkeypatch.setattr(balance_pages, "STEP_OVER_AT_MOST", step_over_at_most)
    by_month = _history(services)
    who = principal_for(services)  # the same tenant: keys are per tenant name
    for month, amounts in by_month.items():
        assert len(amounts) > 10, month
        for order, expected in (("asc", amounts), ("desc", amounts[::-1])):
            for limit in (1, 7):
                for offset in range(len(amounts) + 2):
                    query = {"period": month, "limit": str(limit), "offset": str(offset), "order": order}
                    page = services.balances.derive(who, "m", query)
                    assert [d.amount for d in page.deltas] == expected[offset : offset + limit], query


def test_a_locked_period_s_pages_search_by_position(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(balance_pages, "STEP_OVER_AT_MOST", 0)
    by_month = _history(services)
    who = principal_for(services)
    services.balances.lock_period(who, {"customerId": "m", "period": "2026-01"})
    seal_all(services)
    record = services.balances.receipt(who, "m", {"period": "2026-01"})
    january = by_month["2026-01"]
    for offset in range(len(january) + 1):
        view = services.balances.period_view(record, 5, offset)
        assert [r.delta.amount for r in view.records] == january[offset : offset + 5], offset
