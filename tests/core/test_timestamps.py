"""The canonical time form every stored timestamp has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trueup.core.timestamps import format_canonical, parse_canonical

_ZONES = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES)


@given(_MOMENTS)
def test_the_canonical_form_is_utc_with_microseconds(moment: datetime) -> None:
    text = format_canonical(moment)
    assert text == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_canonical(text) == moment


def test_the_canonical_form_keeps_a_zero_fraction_and_pads_the_year() -> None:
    assert format_canonical(datetime(2026, 2, 10, 14, 30, tzinfo=UTC)) == "2026-02-10T14:30:00.000000Z"
    plus_two = datetime(2026, 1, 1, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_canonical(plus_two) == "2025-12-31T23:00:00.000005Z"
    assert format_canonical(datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=UTC)) == "0987-06-05T04:03:02.000001Z"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_canonical(datetime(2026, 1, 1))
