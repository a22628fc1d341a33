"""The canonical time form every stored timestamp has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trueup.core.errors import ValidationError
from trueup.core.timestamps import format_canonical, parse_canonical, parse_rfc3339

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


def test_a_fraction_of_any_length_is_taken_to_the_microsecond() -> None:
    for fraction in (".1", ".123456", ".123456789", ".1234567891234"):
        parsed = parse_rfc3339(f"2026-02-10T14:30:00{fraction}Z", "occurredAt")
        assert format_canonical(parsed) == f"2026-02-10T14:30:00.{fraction[1:7].ljust(6, '0')}Z"


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
        ("2015-07-01T01:29:60+01:30", "2015-06-30T23:59:59.999999Z"),  # its own month, in UTC
        ("2016-12-31T18:59:60-05:00", "2016-12-31T23:59:59.999999Z"),
    ],
)
def test_a_leap_second_is_the_last_microsecond_of_its_minute(value: str, canonical: str) -> None:
    """RFC 3339 §5.7: second 60 is a leap second; it stays in its UTC minute, day and month."""
    assert format_canonical(parse_rfc3339(value, "occurredAt")) == canonical


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "9999-12-31T23:59:59-23:59",
            'occurredAt: must be in 9999 or earlier in UTC, got "9999-12-31T23:59:59-23:59"',
        ),
        ("2026-02-30T00:00:00Z", 'occurredAt: is not a valid date-time: "2026-02-30T00:00:00Z"'),
        ("1969-12-31T23:59:59Z", 'occurredAt: must be in 1970 or later, got "1969-12-31T23:59:59Z"'),
        (
            "0001-01-01T00:00:00+00:01",
            'occurredAt: must be in 1970 or later, got "0001-01-01T00:00:00+00:01"',
        ),
        ("2026-02-10T14:30:00.Z", "occurredAt: must be an RFC 3339 date-time with offset"),
        ("2016-12-31T22:59:60Z", "occurredAt: has second 60, which only a leap second at 23:59 UTC has"),
        ("2016-12-31T23:59:60+01:00", "occurredAt: has second 60, which only a leap second at 23:59 UTC"),
        ("2016-12-31T23:58:60Z", "occurredAt: has second 60, which only a leap second at 23:59 UTC has"),
        ("2016-12-31T23:59:61Z", 'occurredAt: is not a valid date-time: "2016-12-31T23:59:61Z"'),
    ],
)
def test_a_time_out_of_range_or_malformed_is_named_for_what_it_is(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rfc3339(value, "occurredAt")
    assert caught.value.message.startswith(message)
