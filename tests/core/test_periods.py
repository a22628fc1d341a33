"""Periods: UTC months as ``YYYY-MM``, their names in words and their order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trueup.core.errors import ValidationError
from trueup.core.periods import (
    next_period,
    parse_period,
    period_end,
    period_label,
    period_of,
    previous_period,
)
from trueup.core.timestamps import MAX_TIME


def test_period_of_takes_the_utc_month_of_an_offset_time() -> None:
    assert period_of("2026-03-01T00:30:00+01:00") == "2026-02"
    assert period_of("2026-02-28T23:30:00-01:00") == "2026-03"
    assert period_of("2026-02-10T14:30:00Z") == "2026-02"


def test_period_of_accepts_an_aware_datetime_and_refuses_a_naive_one() -> None:
    tz = timezone(timedelta(hours=-5))
    assert period_of(datetime(2026, 12, 31, 20, 0, tzinfo=tz)) == "2027-01"
    assert period_of(datetime(2026, 2, 1, tzinfo=UTC)) == "2026-02"
    with pytest.raises(ValidationError, match="occurredAt: must carry a UTC offset"):
        period_of(datetime(2026, 2, 1))  # a naive value is the point


def test_period_of_refuses_a_time_without_offset_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"^createdAt: must be an RFC 3339"):
        period_of("2026-02-10T14:30:00", field="createdAt")
    with pytest.raises(ValidationError, match=r"^createdAt: must be an RFC 3339"):
        period_of("2026-02-10T14:30:00Z\n", field="createdAt")


def test_period_label_names_the_month_in_english() -> None:
    assert period_label("2026-02") == "February 2026"
    assert period_label("1999-12") == "December 1999"


def test_next_period_rolls_over_the_year() -> None:
    assert next_period("2026-02") == "2026-03"
    assert next_period("2026-12") == "2027-01"
    with pytest.raises(ValidationError, match="has no next period"):
        next_period("9999-12")


def test_previous_period_rolls_back_over_the_year() -> None:
    assert previous_period("2026-03") == "2026-02"
    assert previous_period("2027-01") == "2026-12"
    assert all(next_period(previous_period(p)) == p for p in ("1970-02", "2026-01", "9999-12"))
    with pytest.raises(ValidationError, match="has no previous period"):
        previous_period("1970-01")


def test_period_end_is_the_next_month_s_start_or_after_every_time() -> None:
    assert period_end("2026-12") == "2027-01-01T00:00:00.000000Z"
    assert period_end("9999-11") == "9999-12-01T00:00:00.000000Z"
    assert period_end("9999-12") == MAX_TIME > "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-2", "must be YYYY-MM"),
        ("2026-02-01", "must be YYYY-MM"),
        ("2026-02\n", "must be YYYY-MM"),  # `$` alone would let a trailing newline through
        ("२०२६-02", "must be YYYY-MM"),  # non-ASCII digits are not digits here
        ("2026-00", "month must be 01 to 12"),
        ("2026-13", "month must be 01 to 12"),
        ("1969-12", "year must be 1970 to 9999"),
        (202602, "must be a YYYY-MM string, got 202602"),
    ],
)
def test_parse_period_rejects_malformed_periods_naming_the_field(value: object, problem: str) -> None:
    with pytest.raises(ValidationError, match=f"^windows\\[2\\].period: {problem}"):
        parse_period(value, "windows[2].period")


@given(st.integers(1970 * 12, 9999 * 12 + 10))
def test_periods_sort_as_strings_in_time_order(index: int) -> None:
    year, month = divmod(index, 12)
    period = f"{year:04d}-{month + 1:02d}"
    after = next_period(period)
    assert parse_period(period) == (year, month + 1)
    assert period < after
    assert period_of(datetime(year, month + 1, 1, tzinfo=UTC)) == period
