"""RFC 3339 timestamps: parsing at the edge and the one canonical stored form.

Trueup stores every time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds, fixed width),
so stored times sort as strings and a delta's period is the first seven characters.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from trueup.core.errors import ValidationError
from trueup.core.json_text import quoted
from trueup.core.strict_json import describe

__all__ = [
    "MAX_TIME",
    "MIN_TIME",
    "format_canonical",
    "format_wire",
    "format_wire_ms",
    "parse_canonical",
    "parse_rfc3339",
]

# RFC 3339 §5.6 date-time, with the common relaxations a JSON client sends ('z', ' ' for 'T').
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_MIN_YEAR = 1970

MIN_TIME = "0000"
MAX_TIME = "9999-12-31T23:59:59.999999Z~"
"""Bounds of a time range in stored form: before and after every stored time (``~`` sorts after
``Z``), for a range open at one end."""


def _quoted(value: str) -> str:
    """``value`` as the JSON string it was sent as (cut short at 40 characters), as the other
    messages show a value (:func:`~trueup.core.strict_json.describe`)."""
    return quoted(value, 40)


def parse_rfc3339(value: object, field: str) -> datetime:
    """Parse an RFC 3339 date-time with an explicit offset into an aware UTC datetime.

    Fractions of any length are accepted and truncated to microseconds. A leap second
    (``23:59:60`` in UTC, at any offset) is taken as ``23:59:59.999999``. Raises
    :class:`ValidationError` naming ``field`` for anything else (naive times, dates alone,
    years before 1970, a trailing newline).
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an RFC 3339 date-time string, got {describe(value)}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValidationError(
            field,
            f"must be an RFC 3339 date-time with offset, e.g. 2026-02-10T14:30:00Z, got {_quoted(value)}",
        )
    fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
    offset = match.group(8).upper()
    # A leap second (RFC 3339 §5.7, second 60) has no datetime of its own: it is kept as the
    # last microsecond before it, so it stays in its minute, day and month.
    leap = match.group(6) == "60"
    second, fraction = ("59", "999999") if leap else (match.group(6), fraction)
    text = (
        f"{match.group(1)}-{match.group(2)}-{match.group(3)}T{match.group(4)}:{match.group(5)}:"
        f"{second}.{fraction}{'+00:00' if offset == 'Z' else offset}"
    )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid date-time: {_quoted(value)}") from exc
    try:
        parsed = moment.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC,
        # 0001-01-01T00:00:00+01:00 in the year 0
        bound = "9999 or earlier in UTC" if moment.year == 9999 else f"{_MIN_YEAR} or later"
        raise ValidationError(field, f"must be in {bound}, got {_quoted(value)}") from exc
    if leap and (parsed.hour, parsed.minute) != (23, 59):
        raise ValidationError(
            field, f"has second 60, which only a leap second at 23:59 UTC has, got {_quoted(value)}"
        )
    if parsed.year < _MIN_YEAR:
        raise ValidationError(field, f"must be in {_MIN_YEAR} or later, got {_quoted(value)}")
    return parsed


def format_canonical(moment: datetime) -> str:
    """The stored form: UTC, microseconds, ``Z``. ``moment`` must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError("format_canonical needs an aware datetime")
    # isoformat gives "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" at a third less than strftime.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def parse_canonical(text: str) -> datetime:
    """Inverse of :func:`format_canonical` for values read back from storage."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_wire(canonical: str) -> str:
    """The form shown to clients: the canonical form without a zero fraction.

    ``2026-02-10T14:30:00.000000Z`` → ``2026-02-10T14:30:00Z`` (as the seed pages show);
    a non-zero fraction is kept at microsecond precision.
    """
    if canonical.endswith(".000000Z"):
        return canonical[:-8] + "Z"
    return canonical


def format_wire_ms(timestamp_ms: int) -> str:
    """A tree head's time as the API shows it: RFC 3339, UTC, milliseconds."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"
