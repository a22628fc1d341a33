"""Balance request scopes: starting point, checkpoint or time range, paging (DESIGN.md §2.3).

Derive takes them as query strings and compare as JSON; both end as a :class:`BalanceQuery`.
A checkpoint cannot be combined with a period, a date range or ``asOf``
(``INVALID_SCOPE_COMBINATION``), nor can two kinds of time scope be combined.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from trueup.core.compare import ClaimedWindow
from trueup.core.deltas import check_account_id
from trueup.core.errors import InvalidScopeError, ValidationError
from trueup.core.periods import parse_period, period_end, period_of
from trueup.core.strict_json import describe
from trueup.core.timestamps import MAX_TIME, format_canonical, format_wire, parse_rfc3339
from trueup.core.unknown_names import refuse_unknown

__all__ = [
    "COMPARE_FIELDS",
    "DERIVE_PARAMS",
    "MAX_BALANCE",
    "MAX_DELTA_PAGE",
    "WINDOW_FIELDS",
    "BalanceQuery",
    "CompareRequest",
    "parse_compare_body",
    "parse_customer_query",
    "parse_derive_query",
    "parse_integer_text",
    "parse_month_range",
    "parse_one_month",
    "resolve_checkpoint_type",
]

MAX_BALANCE = 10**30
"""Largest magnitude accepted for a claimed or starting balance (exact: JSON has no limit)."""
MAX_OFFSET = 10**12
"""The largest ``offset`` a page may start at."""

MAX_DELTA_PAGE = 10**7
"""The last page of deltas the customer view shows (the customer list's last page too)."""

DERIVE_PARAMS = (
    "startingBalance",
    "startingCheckpoint",
    "startingCheckpointType",
    "limit",
    "offset",
    "order",
    "period",
    "timePreset",
    "startDate",
    "endDate",
    "asOf",
)
"""The query parameters :func:`parse_derive_query` reads: the derive route passes these on,
and declares the same for its OpenAPI document and its refusal of others (a test holds the
two equal, so a parameter declared on the route and not read here fails it, rather than being
taken and ignored)."""

WINDOW_FIELDS = ("period", "netChange")
"""The fields of one stated monthly net (``yourWindows``/``theirWindows`` of a compare)."""

COMPARE_FIELDS = (
    "customerId",
    "yourBalance",
    "theirBalance",
    "startingBalance",
    "startingCheckpoint",
    "startingCheckpointType",
    "period",
    "timePreset",
    "startDate",
    "endDate",
    "asOf",
    "yourWindows",
    "theirWindows",
)
"""The fields of a compare body: the seed's, then ours. Any other is refused, not ignored."""

_INTEGER_TEXT = re.compile(r"^[+-]?[0-9]+$")
_MAX_DIGITS = 64
"""Digits beyond any bound here: longer integer text is out of range without converting it."""
_DATE_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_EARLIEST_DATE = "1970-01-01"
"""The first date a scope may name, as :func:`~trueup.core.timestamps.parse_rfc3339` takes."""
_CHECKPOINT_TYPES = {
    "itemsRoot": "itemsRoot",
    "proofRoot": "itemsRoot",
    "anchorId": "anchorId",
    "recordId": "anchorId",
}


@dataclass(frozen=True, slots=True)
class BalanceQuery:
    """What to derive: a starting balance plus either a checkpoint or a time range.

    ``start``/``end`` are canonical timestamps (end exclusive); ``checkpoint_type`` is
    ``itemsRoot`` or ``anchorId`` after aliases are resolved.
    """

    starting_balance: int = 0
    checkpoint: str | None = None
    checkpoint_type: str = "itemsRoot"
    start: str | None = None
    end: str | None = None
    period: str | None = None
    limit: int = 100
    offset: int = 0
    descending: bool = False


@dataclass(frozen=True, slots=True)
class CompareRequest:
    customer_id: str
    your_balance: int
    their_balance: int
    query: BalanceQuery
    your_windows: tuple[ClaimedWindow, ...] | None
    their_windows: tuple[ClaimedWindow, ...] | None


def parse_integer_text(value: str, field: str, bound: int = MAX_BALANCE) -> int:
    """An integer written in decimal (a query string); no fraction, exponent or spaces."""
    return _integer_text(value, field, -bound, bound, f"must be at most {bound} in magnitude")


def _integer_text(value: str, field: str, low: int, high: int, out_of_range: str) -> int:
    """Decimal integer text within ``[low, high]``: 400 ``must be an integer`` for other text,
    ``out_of_range`` (with the value) for an integer outside, however many digits it has."""
    if not _INTEGER_TEXT.fullmatch(value):
        raise ValidationError(field, f"must be an integer, got {describe(value)}")
    if len(value.lstrip("+-")) > _MAX_DIGITS:
        raise ValidationError(field, f"{out_of_range}, got {describe(value)}")
    number = int(value)
    if not low <= number <= high:
        raise ValidationError(field, f"{out_of_range}, got {number}")
    return number


def _json_integer(value: object, field: str, bound: int = MAX_BALANCE) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {describe(value)}")
    if abs(value) > bound:
        # Shown whole up to the digits a query parameter is shown with, cut short beyond them.
        shown = str(value) if len(str(abs(value))) <= _MAX_DIGITS else describe(value)
        raise ValidationError(field, f"must be at most {bound} in magnitude, got {shown}")
    return value


def resolve_checkpoint_type(value: str | None) -> str:
    if value is None or value == "":
        return "itemsRoot"
    resolved = _CHECKPOINT_TYPES.get(value)
    if resolved is None:
        raise ValidationError(
            "startingCheckpointType",
            f"must be itemsRoot or anchorId (or proofRoot, recordId), got {describe(value)}",
        )
    return resolved


def _boundary(value: object, field: str) -> str:
    """A date (``YYYY-MM-DD``, midnight UTC) or an RFC 3339 date-time, canonical."""
    if isinstance(value, str) and _DATE_ONLY.fullmatch(value):
        # Told as sent, not as the midnight it would have stood for.
        if value < _EARLIEST_DATE:
            raise ValidationError(field, f"must be in 1970 or later, got {describe(value)}")
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(field, f"is not a valid date: {describe(value)}") from exc
        value = f"{value}T00:00:00Z"
    return format_canonical(parse_rfc3339(value, field))


def _as_of_end(as_of: object) -> str:
    """The exclusive end of an ``asOf`` scope: deltas that occurred at or before that instant."""
    moment = parse_rfc3339(as_of, "asOf")
    try:
        return format_canonical(moment + timedelta(microseconds=1))
    except OverflowError:  # the very end of year 9999: after every stored time, still a time scope
        return MAX_TIME


def _time_scope(
    period: object, preset: object, start: object, end: object, as_of: object, now: datetime
) -> tuple[str | None, str | None, str | None]:
    """``(start, end, period)`` of the time scope asked for, or all ``None``."""
    given = {
        name
        for name, value in (
            ("period", period),
            ("timePreset", preset),
            ("startDate", start),
            ("endDate", end),
            ("asOf", as_of),
        )
        if value is not None
    }
    if period is not None:
        if given - {"period"}:
            raise InvalidScopeError(
                "period", f"cannot be combined with {', '.join(sorted(given - {'period'}))}"
            )
        year, month = parse_period(period, "period")
        label = f"{year:04d}-{month:02d}"
        return f"{label}-01T00:00:00.000000Z", period_end(label), label
    if as_of is not None:
        if given - {"asOf"}:
            raise InvalidScopeError("asOf", f"cannot be combined with {', '.join(sorted(given - {'asOf'}))}")
        return None, _as_of_end(as_of), None
    if preset is not None:
        if preset == "current_month":
            if start is not None or end is not None:
                raise InvalidScopeError("timePreset", "current_month takes no startDate or endDate")
            label = format_canonical(now)[:7]
            return f"{label}-01T00:00:00.000000Z", period_end(label), None
        if preset != "custom":
            raise ValidationError("timePreset", f"must be current_month or custom, got {describe(preset)}")
        if start is None or end is None:
            raise ValidationError("timePreset", "custom requires both startDate and endDate")
    elif (start is None) != (end is None):
        raise ValidationError(
            "startDate" if start is None else "endDate", "startDate and endDate must be given together"
        )
    if start is None or end is None:
        return None, None, None
    lower, upper = _boundary(start, "startDate"), _boundary(end, "endDate")
    if lower >= upper:
        raise ValidationError("endDate", "must be after startDate (the end is exclusive)")
    return lower, upper, None


def _paging(limit: object, offset: object, order: object) -> tuple[int, int, bool]:
    size = 100 if limit is None else _integer_text(str(limit), "limit", 1, 1000, "must be between 1 and 1000")
    skip = (
        0
        if offset is None
        else _integer_text(str(offset), "offset", 0, MAX_OFFSET, f"must be between 0 and {MAX_OFFSET}")
    )
    if order not in (None, "asc", "desc"):
        raise ValidationError("order", f"must be asc or desc, got {describe(order)}")
    return size, skip, order == "desc"


def _checkpoint(value: object, kind: object) -> tuple[str | None, str]:
    if kind is not None and not isinstance(kind, str):
        raise ValidationError("startingCheckpointType", f"must be a string, got {describe(kind)}")
    if value == "":
        # An empty stored checkpoint read as "none" would replay every delta on top of a
        # startingBalance that already counts them: a wrong balance, silently.
        raise ValidationError(
            "startingCheckpoint",
            "must not be empty: omit it to start from the beginning of the log, or pass the "
            "latestCheckpoint of an earlier reply",
        )
    if value is None:
        if kind not in (None, ""):
            resolve_checkpoint_type(kind)
        return None, "itemsRoot"
    if not isinstance(value, str) or len(value) > 200:
        raise ValidationError(
            "startingCheckpoint", f"must be a string of at most 200 characters, got {describe(value)}"
        )
    return value, resolve_checkpoint_type(kind)


def _scope(
    values: Mapping[str, Any], now: datetime
) -> tuple[str | None, str, str | None, str | None, str | None]:
    """``(checkpoint, its type, start, end, period)``: a checkpoint or a time scope, not both."""
    checkpoint, kind = _checkpoint(values.get("startingCheckpoint"), values.get("startingCheckpointType"))
    start, end, period = _time_scope(
        values.get("period"),
        values.get("timePreset"),
        values.get("startDate"),
        values.get("endDate"),
        values.get("asOf"),
        now,
    )
    if checkpoint is not None and (start is not None or end is not None):
        raise InvalidScopeError(
            "startingCheckpoint", "cannot be combined with period, timePreset, startDate/endDate or asOf"
        )
    return checkpoint, kind, start, end, period


def parse_customer_query(params: Mapping[str, str], now: datetime) -> BalanceQuery:
    """The customer view's query string, as PacSpace's SDK sends it: ``period`` (the month its
    totals and deltas are of; all months by default), ``deltaPage`` (from 1) and ``deltaLimit``
    (1-1000, default 20) for the page of its deltas, the most recently sealed first."""
    start, end, period = _months_asked({"period": params.get("period")}, now)
    size = _integer_text(params.get("deltaLimit", "20"), "deltaLimit", 1, 1000, "must be between 1 and 1000")
    bound = f"must be between 1 and {MAX_DELTA_PAGE}"
    page = _integer_text(params.get("deltaPage", "1"), "deltaPage", 1, MAX_DELTA_PAGE, bound)
    return BalanceQuery(
        start=start, end=end, period=period, limit=size, offset=(page - 1) * size, descending=True
    )


def _months_asked(values: Mapping[str, Any], now: datetime) -> tuple[str | None, str | None, str | None]:
    """:func:`_time_scope` of the parameters that name months (``asOf`` names an instant)."""
    get = values.get
    return _time_scope(get("period"), get("timePreset"), get("startDate"), get("endDate"), None, now)


def parse_month_range(values: Mapping[str, Any], now: datetime) -> tuple[str, str] | None:
    """The calendar months a listing covers, ``(first, last)`` inclusive, from ``period``, or
    from ``timePreset`` and ``startDate``/``endDate`` read as derive reads them; ``None`` when
    none is given. A month is in the range when any instant of it is (the end is exclusive):
    ``startDate=2026-01-15&endDate=2026-03-01`` is January and February."""
    start, end, period = _months_asked(values, now)
    if period is not None:
        return period, period
    if start is None or end is None:
        return None
    last_instant = parse_rfc3339(end, "endDate") - timedelta(microseconds=1)
    return period_of(start), period_of(last_instant)


def parse_one_month(values: Mapping[str, Any], now: datetime) -> str:
    """The one calendar month (``YYYY-MM``) a period lock or a receipt is for: ``period``, or
    ``timePreset=current_month``, or ``startDate``/``endDate`` (``timePreset=custom`` or none)
    that are exactly the first instants of a month and of the next, as PacSpace's SDK sends a
    month. Anything else is a 400: a lock or a receipt always covers a whole month, and one for
    the month a partial range falls in would not be what was asked for."""
    start, end, period = _months_asked(values, now)
    if period is not None:
        return period
    if start is None or end is None:
        raise ValidationError("period", "is required (YYYY-MM)")
    month = period_of(start)
    first, after = f"{month}-01T00:00:00.000000Z", period_end(month)
    if start != first or end != after:
        # December 9999 has no next month to end at: only its period names it.
        dates = "" if after == MAX_TIME else f" (for {month}: {month}-01 and {after[:10]})"
        raise ValidationError(
            "startDate" if start != first else "endDate",
            "a period lock or receipt covers one whole calendar month: startDate and endDate must "
            f"be the first instants of a month and of the next{dates}, or give period={month}",
        )
    return month


def parse_derive_query(params: Mapping[str, str], now: datetime) -> BalanceQuery:
    """The derive route's query string. ``now`` decides ``timePreset=current_month``."""
    starting = params.get("startingBalance")
    checkpoint, kind, start, end, period = _scope(params, now)
    limit, offset, descending = _paging(params.get("limit"), params.get("offset"), params.get("order"))
    return BalanceQuery(
        # An empty value is a 400, as for limit: taken as 0 it would derive another balance.
        starting_balance=0 if starting is None else parse_integer_text(str(starting), "startingBalance"),
        checkpoint=checkpoint,
        checkpoint_type=kind,
        start=start,
        end=end,
        period=period,
        limit=limit,
        offset=offset,
        descending=descending,
    )


def _windows(value: object, field: str) -> tuple[ClaimedWindow, ...] | None:
    if value is None or value == []:  # an empty list states nothing, not "every month was 0"
        return None
    if not isinstance(value, list) or len(value) > 600:
        got = f"{len(value):,} entries" if isinstance(value, list) else describe(value)
        raise ValidationError(field, f"must be an array of at most 600 {{period, netChange}}, got {got}")
    windows = []
    for index, entry in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(entry, dict):
            raise ValidationError(where, f"must be an object, got {describe(entry)}")
        refuse_unknown(entry, WINDOW_FIELDS, "field", within=where, taker="a monthly net")
        if "period" not in entry:
            raise ValidationError(f"{where}.period", "is required")
        if "netChange" not in entry:
            raise ValidationError(f"{where}.netChange", "is required")
        year, month = parse_period(entry["period"], f"{where}.period")
        windows.append(
            ClaimedWindow(f"{year:04d}-{month:02d}", _json_integer(entry["netChange"], f"{where}.netChange"))
        )
    return tuple(windows)


def parse_compare_body(document: Any, now: datetime) -> CompareRequest:
    """The compare route's JSON body (seed fields plus ``period`` and per-month nets)."""
    if not isinstance(document, dict):
        raise ValidationError("body", f"must be a JSON object, got {describe(document)}")
    refuse_unknown(document, COMPARE_FIELDS, "field")
    # startingBalance too, as the seed's table has it: a party that left it out was compared
    # from 0, and told that both balances were wrong.
    for required in ("customerId", "yourBalance", "theirBalance", "startingBalance"):
        if required not in document:
            raise ValidationError(required, "is required")
    customer_id = check_account_id(document["customerId"], "customerId")
    your = _json_integer(document["yourBalance"], "yourBalance")
    their = _json_integer(document["theirBalance"], "theirBalance")
    starting = _json_integer(document["startingBalance"], "startingBalance")
    checkpoint, kind, start, end, period = _scope(document, now)
    query = BalanceQuery(
        starting_balance=starting,
        checkpoint=checkpoint,
        checkpoint_type=kind,
        start=start,
        end=end,
        period=period,
    )
    windows = {field: _windows(document.get(field), field) for field in ("yourWindows", "theirWindows")}
    for field, claimed in windows.items():
        for index, window in enumerate(claimed or ()):
            # A month the comparison does not cover: it would be reported as if it were.
            if (end is not None and f"{window.period}-01T00:00:00.000000Z" >= end) or (
                start is not None and window.period < start[:7]
            ):
                raise ValidationError(
                    f"{field}[{index}].period",
                    f"{window.period} is outside the compared time scope "
                    f"({format_wire(start) if start else '…'} to {format_wire(end) if end else '…'}, "
                    "end exclusive)",
                )
    return CompareRequest(customer_id, your, their, query, windows["yourWindows"], windows["theirWindows"])
