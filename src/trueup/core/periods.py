"""Periods: the UTC calendar months (``YYYY-MM``) that deltas, summaries and checkpoints use.

A delta's period is the UTC month of its ``occurredAt``. Period strings are fixed width, so
they sort as strings in time order (``"2026-02" < "2026-10" < "2027-01"``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from trueup.core.errors import ValidationError
from trueup.core.strict_json import describe
from trueup.core.timestamps import MAX_TIME, parse_rfc3339

__all__ = ["next_period", "parse_period", "period_end", "period_label", "period_of", "previous_period"]

_PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_MIN_YEAR = 1970  # no delta can be older (see trueup.core.timestamps)
_MAX_YEAR = 9999
# Fixed English names: calendar.month_name follows the process locale, a report must not.
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def parse_period(value: object, field: str = "period") -> tuple[int, int]:
    """Split a ``YYYY-MM`` period into ``(year, month)``.

    Accepts years 1970 to 9999 and months 01 to 12, ASCII digits only. Raises
    :class:`ValidationError` naming ``field`` for anything else (``"2026-2"``, ``"2026-13"``,
    a non-string).
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a YYYY-MM string, got {describe(value)}")
    match = _PERIOD.fullmatch(value)
    if match is None:
        raise ValidationError(field, f"must be YYYY-MM, e.g. 2026-02, got {describe(value[:40])}")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise ValidationError(field, f"month must be 01 to 12, got {describe(value)}")
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        raise ValidationError(field, f"year must be {_MIN_YEAR} to {_MAX_YEAR}, got {describe(value)}")
    return year, month


def period_of(moment: str | datetime, field: str = "occurredAt") -> str:
    """The UTC month (``YYYY-MM``) of an RFC 3339 string or a timezone-aware datetime.

    ``"2026-03-01T00:30:00+01:00"`` is ``"2026-02"``: the month is taken after converting to
    UTC. Raises :class:`ValidationError` naming ``field`` for a naive datetime or a string that
    is not an RFC 3339 date-time with offset.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValidationError(field, "must carry a UTC offset, got a naive datetime")
        utc = moment.astimezone(UTC)
    else:
        utc = parse_rfc3339(moment, field)
    return f"{utc.year:04d}-{utc.month:02d}"


def period_label(period: str) -> str:
    """The period in words, as reports print it: ``"2026-02"`` → ``"February 2026"``."""
    year, month = parse_period(period)
    return f"{_MONTH_NAMES[month - 1]} {year}"


def period_end(period: str) -> str:
    """Where ``period`` ends, exclusive, as canonical text: the first instant of the next
    month, or for ``"9999-12"`` a bound after every time (which has no next month)."""
    year, month = parse_period(period)
    if (year, month) == (_MAX_YEAR, 12):
        return MAX_TIME
    return f"{next_period(period)}-01T00:00:00.000000Z"


def next_period(period: str) -> str:
    """The month after ``period``: ``"2026-12"`` → ``"2027-01"``.

    Raises :class:`ValidationError` for an invalid period or for ``"9999-12"``.
    """
    year, month = parse_period(period)
    if month == 12:
        if year == _MAX_YEAR:
            raise ValidationError("period", f"{describe(period)} has no next period")
        return f"{year + 1:04d}-01"
    return f"{year:04d}-{month + 1:02d}"


def previous_period(period: str) -> str:
    """The month before ``period``: ``"2027-01"`` → ``"2026-12"``.

    Raises :class:`ValidationError` for an invalid period or for ``"1970-01"``.
    """
    year, month = parse_period(period)
    if month == 1:
        if year == _MIN_YEAR:
            raise ValidationError("period", f"{describe(period)} has no previous period")
        return f"{year - 1:04d}-12"
    return f"{year:04d}-{month - 1:02d}"
