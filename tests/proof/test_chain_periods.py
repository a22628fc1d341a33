"""``chain_periods``: a period starts where its customer's month before ends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trueup.proof import PeriodError, VerifiedPeriod, chain_periods

MAY = VerifiedPeriod(b"\x01" * 32, "ten_a", "c1", "2026-05", 2, 700, 300, 1000, 9, b"\x02" * 32)
JUNE = VerifiedPeriod(b"\x03" * 32, "ten_a", "c1", "2026-06", 3, 425, 1000, 1425, 12, b"\x04" * 32)


def test_a_period_that_starts_where_the_month_before_ends_chains() -> None:
    chain_periods(MAY, JUNE)
    december = replace(MAY, period="2025-12")
    chain_periods(december, replace(JUNE, period="2026-01"))  # over the year


@pytest.mark.parametrize(
    ("previous", "period", "problem"),
    [
        (
            MAY,
            replace(JUNE, starting_balance=999, ending_balance=1424),
            "period 2026-06 states a starting balance of 999, but period 2026-05 ends at 1000 (its starting "
            "balance 300 and its records' net change 700): a delta of 2026-05 or before is in one figure "
            "and not the other",
        ),
        (
            replace(MAY, period="2026-04"),
            JUNE,
            "the previous period is 2026-04, not the month before 2026-06",
        ),
        (JUNE, JUNE, "the previous period is 2026-06, not the month before 2026-06"),
        (JUNE, MAY, "the previous period is 2026-06, not the month before 2026-05"),
        (
            replace(MAY, period="9999-12"),
            JUNE,
            "the previous period is 9999-12, not the month before 2026-06",
        ),
        (
            replace(MAY, customer_id="c2"),
            JUNE,
            "the previous period is of customer 'c2' of tenant 'ten_a', this one of 'c1' of 'ten_a'",
        ),
        (
            replace(MAY, tenant="ten_b"),
            JUNE,
            "the previous period is of customer 'c1' of tenant 'ten_b', this one of 'c1' of 'ten_a'",
        ),
    ],
    ids=[
        "balances",
        "a month between",
        "the same month",
        "the month after",
        "no month after",
        "customer",
        "tenant",
    ],
)
def test_periods_that_do_not_chain_are_refused(
    previous: VerifiedPeriod, period: VerifiedPeriod, problem: str
) -> None:
    with pytest.raises(PeriodError) as refused:
        chain_periods(previous, period)
    assert str(refused.value) == problem
