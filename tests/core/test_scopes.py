"""Scopes of derive and compare: a bad value is a 400 that names its field and shows the value as
JSON spells it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from trueup.core.compare import ClaimedWindow
from trueup.core.errors import InvalidScopeError, ValidationError
from trueup.core.scopes import parse_compare_body, parse_derive_query, parse_month_range, parse_one_month
from trueup.core.strict_json import describe

NOW = datetime(2026, 3, 1, tzinfo=UTC)
BODY = {"customerId": "cust-1", "yourBalance": 5, "theirBalance": 4, "startingBalance": 0}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"startingCheckpointType": [1]}, "startingCheckpointType: must be a string, got an array"),
        (
            {"startingCheckpoint": "chk_x", "startingCheckpointType": 7},
            "startingCheckpointType: must be a string, got 7",
        ),
        ({"period": 202602}, "period: must be a YYYY-MM string, got 202602"),
        (
            {"theirWindows": [{"period": None, "netChange": 1}]},
            "theirWindows[0].period: must be a YYYY-MM string, got null",
        ),
        ({"period": {"y": 2026}}, "period: must be a YYYY-MM string, got an object"),
        (
            {"theirWindows": [{"period": "2026-01", "netChange": 1}] * 601},
            "theirWindows: must be an array of at most 600 {period, netChange}, got 601 entries",
        ),
        (  # a month the comparison does not cover would be reported as if it were
            {"period": "2026-01", "theirWindows": [{"period": "2026-02", "netChange": 5}]},
            "theirWindows[0].period: 2026-02 is outside the compared time scope "
            "(2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z, end exclusive)",
        ),
        (
            {
                "asOf": "2026-01-15T00:00:00Z",
                "yourWindows": [{"period": "2026-01", "netChange": 1}] * 2
                + [{"period": "2026-02", "netChange": 1}],
            },
            "yourWindows[2].period: 2026-02 is outside the compared time scope "
            "(… to 2026-01-15T00:00:00.000001Z, end exclusive)",
        ),
        (
            {
                "timePreset": "custom",
                "startDate": "2026-01-15",
                "endDate": "2026-03-01",
                "theirWindows": [{"period": "2025-12", "netChange": 1}],
            },
            "theirWindows[0].period: 2025-12 is outside the compared time scope "
            "(2026-01-15T00:00:00Z to 2026-03-01T00:00:00Z, end exclusive)",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_named_as_json_spells_it(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_compare_body({**BODY, **extra}, NOW)
    assert caught.value.message == message


def test_an_empty_list_of_windows_states_nothing() -> None:
    """Else it would claim every month was 0, and every month with entries would be flagged."""
    parsed = parse_compare_body({**BODY, "yourWindows": [], "theirWindows": []}, NOW)
    assert (parsed.your_windows, parsed.their_windows) == (None, None)


def test_windows_inside_the_scope_or_without_one_are_taken() -> None:
    inside = [{"period": p, "netChange": 1} for p in ("2026-01", "2026-02")]
    custom = {"timePreset": "custom", "startDate": "2026-01-15", "endDate": "2026-03-01"}
    assert len(parse_compare_body({**BODY, **custom, "theirWindows": inside}, NOW).their_windows or ()) == 2
    anywhere = [{"period": "1999-01", "netChange": 1}, {"period": "2099-12", "netChange": 1}]
    assert len(parse_compare_body({**BODY, "yourWindows": anywhere}, NOW).your_windows or ()) == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # The bound named is the one that applies, whatever the number of digits.
        ({"limit": "10000000"}, "limit: must be between 1 and 1000, got 10000000"),
        ({"limit": "0"}, "limit: must be between 1 and 1000, got 0"),
        ({"limit": "9" * 80}, f"limit: must be between 1 and 1000, got {describe('9' * 80)}"),
        ({"offset": "-1"}, "offset: must be between 0 and 1000000000000, got -1"),
        ({"limit": ""}, 'limit: must be an integer, got ""'),
        # An empty startingBalance is not 0: taken as 0 it would derive another balance.
        ({"startingBalance": ""}, 'startingBalance: must be an integer, got ""'),
        (
            {"startingBalance": "1" + "0" * 31},
            f"startingBalance: must be at most {10**30} in magnitude, got 1{'0' * 31}",
        ),
        (
            {"startingBalance": "-" + "1" * 40},
            f"startingBalance: must be at most {10**30} in magnitude, got -{'1' * 40}",
        ),
        (  # too long to be worth converting: shown as text, cut short
            {"startingBalance": "-" + "1" * 80},
            f"startingBalance: must be at most {10**30} in magnitude, got {describe('-' + '1' * 80)}",
        ),
    ],
)
def test_derive_names_the_bound_an_integer_parameter_misses(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_derive_query(query, NOW)
    assert caught.value.message == message


def test_derive_takes_a_starting_balance_of_thirty_one_digits() -> None:
    assert parse_derive_query({"startingBalance": "-" + "9" * 30}, NOW).starting_balance == -(10**30 - 1)


@pytest.mark.parametrize(
    "parse",
    [
        lambda values: parse_derive_query(values, NOW),
        lambda values: parse_compare_body(
            {"customerId": "c", "yourBalance": 1, "theirBalance": 2, "startingBalance": 0, **values}, NOW
        ),
    ],
    ids=["derive", "compare"],
)
def test_an_empty_starting_checkpoint_is_refused_not_read_as_none(parse: Any) -> None:
    """A stored checkpoint that came out empty, read as "none", would replay every delta on top
    of a startingBalance that already counts them."""
    for values in (
        {"startingCheckpoint": ""},
        {"startingCheckpoint": "", "startingCheckpointType": "anchorId"},
    ):
        with pytest.raises(ValidationError, match=r"^startingCheckpoint: must not be empty: omit it"):
            parse(values)


@pytest.mark.parametrize("field", ["customerId", "yourBalance", "theirBalance", "startingBalance"])
def test_compare_needs_each_field_the_seed_marks_required(field: str) -> None:
    """Compared from a starting balance of 0 that nobody gave, two right balances came out
    "both wrong": a missing ``startingBalance`` is a 400, as each other required field is."""
    body = {key: value for key, value in BODY.items() if key != field}
    with pytest.raises(ValidationError, match=rf"^{field}: is required$"):
        parse_compare_body(body, NOW)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"yourBalance": 10**30 + 1},
            f"yourBalance: must be at most {10**30} in magnitude, got {10**30 + 1}",
        ),
        (
            {"theirBalance": -(10**40)},
            f"theirBalance: must be at most {10**30} in magnitude, got {-(10**40)}",
        ),
        (
            {"startingBalance": 2 * 10**64},
            f"startingBalance: must be at most {10**30} in magnitude, got {describe(2 * 10**64)}",
        ),
        (
            {"theirWindows": [{"period": "2026-02", "netChange": 10**31}]},
            f"theirWindows[0].netChange: must be at most {10**30} in magnitude, got {10**31}",
        ),
    ],
)
def test_compare_names_the_balance_beyond_its_bound(values: dict[str, object], message: str) -> None:
    """As derive names the startingBalance it refuses: the message says what was sent."""
    with pytest.raises(ValidationError) as caught:
        parse_compare_body({**BODY, **values}, NOW)
    assert caught.value.message == message


@pytest.mark.parametrize("field", ["startDate", "endDate"])
def test_an_impossible_date_is_told_as_it_was_sent(field: str) -> None:
    # It was quoted as the midnight it would have stood for, '2026-02-30T00:00:00Z', a value
    # the caller never sent.
    query = {"timePreset": "custom", "startDate": "2026-02-01", "endDate": "2026-03-01", field: "2026-02-30"}
    with pytest.raises(ValidationError) as caught:
        parse_derive_query(query, NOW)
    assert caught.value.message == f'{field}: is not a valid date: "2026-02-30"'


@pytest.mark.parametrize("day", ["1969-12-31", "0001-01-01", "0000-01-01"])
def test_a_date_before_1970_is_told_as_it_was_sent(day: str) -> None:
    # It was quoted as the midnight it would have stood for ('1969-12-31T00:00:00Z'), and a year
    # 0000 as no valid date, where a date-time of 0001 was refused for its year.
    query = {"timePreset": "custom", "startDate": day, "endDate": "2026-03-01"}
    with pytest.raises(ValidationError) as caught:
        parse_derive_query(query, NOW)
    assert caught.value.message == f'startDate: must be in 1970 or later, got "{day}"'


@pytest.mark.parametrize(
    ("values", "months"),
    [
        ({}, None),
        ({"period": "2026-02"}, ("2026-02", "2026-02")),
        ({"timePreset": "current_month"}, ("2026-03", "2026-03")),
        ({"startDate": "2026-01-15", "endDate": "2026-03-01"}, ("2026-01", "2026-02")),
        (
            {"timePreset": "custom", "startDate": "2026-01-01", "endDate": "2026-03-01T00:00:00.000001Z"},
            ("2026-01", "2026-03"),
        ),
        (
            {"startDate": "2025-12-31T23:00:00-01:00", "endDate": "2026-01-01T00:00:01Z"},
            ("2026-01", "2026-01"),
        ),
    ],
)
def test_a_listing_covers_every_month_any_instant_of_which_is_in_range(
    values: dict[str, str], months: tuple[str, str] | None
) -> None:
    assert parse_month_range(values, NOW) == months


@pytest.mark.parametrize(
    ("values", "month"),
    [
        ({"period": "2026-02"}, "2026-02"),
        ({"timePreset": "current_month"}, "2026-03"),
        ({"timePreset": "custom", "startDate": "2026-01-01", "endDate": "2026-02-01"}, "2026-01"),
        ({"startDate": "2026-12-01T00:00:00Z", "endDate": "2027-01-01T00:00:00.000Z"}, "2026-12"),
    ],
)
def test_a_lock_or_a_receipt_names_one_whole_month(values: dict[str, str], month: str) -> None:
    assert parse_one_month(values, NOW) == month


def test_a_lock_or_a_receipt_refuses_what_is_not_one_whole_month() -> None:
    with pytest.raises(ValidationError, match=r"^period: is required \(YYYY-MM\)$"):
        parse_one_month({}, NOW)
    with pytest.raises(ValidationError) as part:
        parse_one_month({"startDate": "2026-01-10", "endDate": "2026-02-01"}, NOW)
    assert str(part.value) == (
        "startDate: a period lock or receipt covers one whole calendar month: startDate and endDate "
        "must be the first instants of a month and of the next (for 2026-01: 2026-01-01 and "
        "2026-02-01), or give period=2026-01"
    )
    with pytest.raises(ValidationError, match=r"^endDate: a period lock"):
        parse_one_month({"startDate": "2026-01-01", "endDate": "2026-03-01"}, NOW)  # two months
    with pytest.raises(ValidationError) as last_month:  # it has no next month: period names it
        parse_one_month({"startDate": "9999-12-01", "endDate": "9999-12-31"}, NOW)
    assert str(last_month.value) == (
        "endDate: a period lock or receipt covers one whole calendar month: startDate and endDate "
        "must be the first instants of a month and of the next, or give period=9999-12"
    )
    assert parse_one_month({"period": "9999-12"}, NOW) == "9999-12"
    with pytest.raises(InvalidScopeError, match=r"^period: cannot be combined with timePreset"):
        parse_one_month({"period": "2026-01", "timePreset": "current_month"}, NOW)
    with pytest.raises(ValidationError, match=r"^timePreset: must be current_month or custom"):
        parse_month_range({"timePreset": "last_month"}, NOW)


def test_a_compare_body_field_nothing_reads_is_refused_and_the_one_meant_named() -> None:
    body = {"customerId": "c", "yourBalance": 1, "theirBalance": 2, "startingBalance": 0}
    with pytest.raises(ValidationError) as misspelt:
        parse_compare_body({**body, "peroid": "2026-02"}, NOW)
    assert str(misspelt.value).startswith(
        "peroid: unknown field; did you mean period? this route takes customerId, yourBalance,"
    )
    with pytest.raises(
        ValidationError, match=r"^startingcheckpoint: unknown field; did you mean startingCheckpoint\?"
    ):
        parse_compare_body({**body, "startingcheckpoint": "a_1"}, NOW)
    with pytest.raises(ValidationError, match=r"^mode: unknown field; this route takes customerId"):
        parse_compare_body({**body, "mode": "strict"}, NOW)
    assert parse_compare_body({**body, "period": "2026-02"}, NOW).query.period == "2026-02"


def test_a_field_of_a_stated_monthly_net_that_nothing_reads_is_refused_by_its_path() -> None:
    """A misspelt ``netChange`` was ignored and its window refused as missing it at best; an
    extra field (a note, a currency) was ignored with a 200 that did not weigh it."""
    body = {"customerId": "c", "yourBalance": 1, "theirBalance": 2, "startingBalance": 0}
    windows = [{"period": "2026-01", "netChange": 1}, {"period": "2026-02", "netchange": 1}]
    with pytest.raises(ValidationError) as misspelt:
        parse_compare_body({**body, "theirWindows": windows}, NOW)
    assert str(misspelt.value) == (
        "theirWindows[1].netchange: unknown field; did you mean netChange? a monthly net takes "
        "period, netChange"
    )
    extra = [{"period": "2026-01", "netChange": 1, "currency": "EUR"}]
    with pytest.raises(ValidationError, match=r"^yourWindows\[0\]\.currency: unknown field; a monthly net"):
        parse_compare_body({**body, "yourWindows": extra}, NOW)
    taken = parse_compare_body({**body, "theirWindows": windows[:1]}, NOW)
    assert taken.their_windows == (ClaimedWindow("2026-01", 1),)
