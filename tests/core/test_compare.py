"""Compare and localise (DESIGN.md §2.4): the seed example, every explanation, the bounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trueup.core.compare import (
    ClaimedWindow,
    CompareResult,
    DeltaRef,
    MonthNet,
    compare_balances,
    to_wire,
)
from trueup.core.errors import ValidationError


@dataclass
class ListFinder:
    """The finder contract over a plain list, counting the deltas it hands out."""

    deltas: Sequence[DeltaRef]
    handed_out: int = 0
    calls: list[tuple[str, object, int]] = field(default_factory=list)

    def by_amount(self, amount: int, limit: int) -> Sequence[DeltaRef]:
        self.calls.append(("by_amount", amount, limit))
        return self._newest_first([d for d in self.deltas if d.delta == amount], limit)

    def in_month(self, period: str, limit: int) -> Sequence[DeltaRef]:
        self.calls.append(("in_month", period, limit))
        return self._newest_first([d for d in self.deltas if d.period == period], limit)

    def _newest_first(self, found: list[DeltaRef], limit: int) -> list[DeltaRef]:
        assert limit >= 1, "the core never asks for zero rows"
        page = sorted(found, key=lambda d: d.leaf_index, reverse=True)[:limit]
        self.handed_out += len(page)
        return page


def ledger(*items: tuple[str, int]) -> list[DeltaRef]:
    """Deltas in leaf order from ``(occurredAt, amount)``; reasons name the leaf."""
    return [
        DeltaRef(i, f"a_{i}", amount, when[:7], when, f"entry {i}") for i, (when, amount) in enumerate(items)
    ]


def month_nets(deltas: Sequence[DeltaRef]) -> list[MonthNet]:
    totals: dict[str, tuple[int, int, int]] = {}
    for d in deltas:
        credits, debits, count = totals.get(d.period, (0, 0, 0))
        totals[d.period] = (credits + max(d.delta, 0), debits + min(d.delta, 0), count + 1)
    return [MonthNet(p, c, d, c + d, n) for p, (c, d, n) in sorted(totals.items())]


def compare(
    deltas: Sequence[DeltaRef],
    *,
    yours: int,
    theirs: int,
    starting: int = 0,
    finder: ListFinder | None = None,
    **options: object,
) -> CompareResult:
    return compare_balances(
        customer_id="cust_12345",
        neutral_balance=starting + sum(d.delta for d in deltas),
        your_balance=yours,
        their_balance=theirs,
        months=month_nets(deltas),
        finder=finder or ListFinder(deltas),
        **options,  # type: ignore[arg-type]  # the tests pass only the documented options
    )


def report_of(result: CompareResult) -> dict[str, object]:
    report = to_wire(result)["discrepancyReport"]
    assert isinstance(report, dict)
    return report


def windows_of(result: CompareResult) -> list[tuple[str, str, int, list[tuple[int, str]]]]:
    """(party, period, difference, [(leafIndex, explanation)]) per window, in report order."""
    assert result.report is not None
    return [
        (w.party, w.period, w.difference, [(c.leaf_index, c.explanation) for c in w.candidates])
        for w in result.report.windows
    ]


SEED = ledger(("2026-02-03T10:00:00Z", -1000), ("2026-02-17T09:30:00Z", -500))
HISTORY = ledger(
    ("2026-01-05T08:00:00Z", 300),
    ("2026-01-20T08:00:00Z", 200),
    ("2026-02-05T08:00:00Z", -700),
    ("2026-03-02T08:00:00Z", 300),
    ("2026-03-09T08:00:00Z", -40),
)  # neutral 60 from 0
SHARE = "Share this report with the counterparty."
REVIEW = "Review your own records."


def test_compare_reproduces_the_seed_example_exactly() -> None:
    result = compare(SEED, starting=50000, yours=48500, theirs=49000)

    assert to_wire(result) == {
        "customerId": "cust_12345",
        "neutralBalance": 48500,
        "matchesYours": True,
        "matchesTheirs": False,
        "discrepancyReport": {
            "amount": 500,
            "resolution": "Your balance is correct. The counterparty is overstated by 500.",
            "divergentParty": "theirs",
            "windowsToReview": [
                {
                    "period": "2026-02",
                    "expectedNet": -1500,
                    "theirNet": -1000,
                    "difference": 500,
                    "party": "theirs",
                    "candidates": [
                        {
                            "anchorId": "a_1",
                            "leafIndex": 1,
                            "delta": -500,
                            "occurredAt": "2026-02-17T09:30:00Z",
                            "reason": "entry 1",
                            "explanation": "missing",
                        }
                    ],
                }
            ],
            "recommendation": (
                "Share this report with the counterparty. The discrepancy originates in the "
                "February 2026 period where a 500-unit debit was not reflected in their records."
            ),
            "yourDifference": 0,
            "theirDifference": 500,
        },
    }


def test_compare_has_no_report_key_when_both_balances_match() -> None:
    result = compare(SEED, starting=50000, yours=48500, theirs=48500)

    assert result.report is None
    assert to_wire(result) == {
        "customerId": "cust_12345",
        "neutralBalance": 48500,
        "matchesYours": True,
        "matchesTheirs": True,
    }


def test_compare_asks_the_finder_nothing_when_both_balances_match() -> None:
    finder = ListFinder(SEED)
    compare(SEED, starting=50000, yours=48500, theirs=48500, finder=finder)
    assert finder.calls == []


def test_compare_finds_missed_debit_in_your_records() -> None:
    result = compare(HISTORY, yours=60 + 700, theirs=60)
    report = report_of(result)

    assert windows_of(result) == [("yours", "2026-02", 700, [(2, "missing")])]
    assert report["resolution"] == (
        "The counterparty's balance is correct. Your balance is overstated by 700."
    )
    assert report["divergentParty"] == "yours"
    assert report["recommendation"] == (
        f"{REVIEW} The discrepancy originates in the February 2026 period where a 700-unit "
        "debit was not reflected in your records."
    )


def test_compare_finds_missed_credit_in_their_records() -> None:
    result = compare(HISTORY, yours=60, theirs=60 - 200)
    report = report_of(result)

    assert windows_of(result) == [("theirs", "2026-01", -200, [(1, "missing")])]
    assert report["resolution"] == "Your balance is correct. The counterparty is understated by 200."
    assert report["recommendation"] == (
        f"{SHARE} The discrepancy originates in the January 2026 period where a 200-unit "
        "credit was not reflected in their records."
    )
    window = report["windowsToReview"][0]  # type: ignore[index]
    assert (window["expectedNet"], window["theirNet"]) == (500, 300)


def test_compare_finds_a_debit_counted_twice_in_their_records() -> None:
    result = compare(HISTORY, yours=60, theirs=60 - 40)

    assert windows_of(result) == [("theirs", "2026-03", -40, [(4, "duplicated")])]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in the March 2026 period where a 40-unit debit "
        "was counted twice in their records."
    )


def test_compare_finds_a_credit_counted_twice_in_your_records() -> None:
    result = compare(HISTORY, yours=60 + 200, theirs=60)

    assert windows_of(result) == [("yours", "2026-01", 200, [(1, "duplicated")])]
    assert report_of(result)["recommendation"] == (
        f"{REVIEW} The discrepancy originates in the January 2026 period where a 200-unit "
        "credit was counted twice in your records."
    )


def test_compare_finds_a_sign_flipped_debit_in_their_records() -> None:
    result = compare(HISTORY, yours=60, theirs=60 + 1400)

    assert windows_of(result) == [("theirs", "2026-02", 1400, [(2, "sign_flipped")])]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in the February 2026 period where a 700-unit "
        "debit was recorded as a credit in their records."
    )


def test_compare_finds_a_sign_flipped_credit_in_your_records() -> None:
    result = compare(HISTORY, yours=60 - 400, theirs=60)

    assert windows_of(result) == [("yours", "2026-01", -400, [(1, "sign_flipped")])]
    assert report_of(result)["recommendation"] == (
        f"{REVIEW} The discrepancy originates in the January 2026 period where a 200-unit "
        "credit was recorded as a debit in your records."
    )


def test_compare_never_calls_an_odd_difference_a_sign_flip() -> None:
    finder = ListFinder(HISTORY)
    compare(HISTORY, yours=60, theirs=60 + 41, finder=finder)
    assert [amount for name, amount, _ in finder.calls if name == "by_amount"] == [-41, 41]


def test_compare_names_every_month_holding_an_explaining_delta_most_recent_first() -> None:
    result = compare(HISTORY, yours=60, theirs=60 - 300)

    assert windows_of(result) == [
        ("theirs", "2026-03", -300, [(3, "missing")]),
        ("theirs", "2026-01", -300, [(0, "missing")]),
    ]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in one of 2 periods, March 2026 or January 2026, "
        "each holding a delta that explains it exactly; in March 2026, a 300-unit credit was "
        "not reflected in their records."
    )


def test_compare_lists_every_explanation_a_month_offers() -> None:
    deltas = ledger(("2026-04-01T00:00:00Z", -500), ("2026-04-02T00:00:00Z", 500))
    result = compare(deltas, yours=0, theirs=500)

    assert windows_of(result) == [("theirs", "2026-04", 500, [(1, "duplicated"), (0, "missing")])]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in the April 2026 period where a 500-unit credit "
        "was counted twice in their records or a 500-unit debit was not reflected in their "
        "records."
    )


def test_compare_localises_both_parties_when_both_are_wrong() -> None:
    result = compare(HISTORY, yours=60 + 40, theirs=60 - 200)
    report = report_of(result)

    assert report["amount"] == 240
    assert report["divergentParty"] == "both"
    assert (report["yourDifference"], report["theirDifference"]) == (40, -200)
    assert windows_of(result) == [
        ("yours", "2026-03", 40, [(4, "missing")]),
        ("theirs", "2026-01", -200, [(1, "missing")]),
    ]
    assert report["resolution"] == (
        "Neither balance is correct. Your balance is overstated by 40 and the counterparty is "
        "understated by 200."
    )
    assert report["recommendation"] == (
        "Share this report with the counterparty and review your own records. On your side, "
        "the discrepancy originates in the March 2026 period where a 40-unit debit was not "
        "reflected in your records. On their side, the discrepancy originates in the January "
        "2026 period where a 200-unit credit was not reflected in their records."
    )


def test_compare_reports_both_wrong_the_same_way_with_amount_zero() -> None:
    result = compare(SEED, starting=50000, yours=49000, theirs=49000)
    report = report_of(result)

    assert (report["amount"], report["divergentParty"]) == (0, "both")
    assert [w[0] for w in windows_of(result)] == ["yours", "theirs"]


def test_compare_finds_two_missed_deltas_of_one_month() -> None:
    result = compare(HISTORY, yours=60, theirs=60 - 500)

    assert windows_of(result) == [("theirs", "2026-01", -500, [(1, "pair_missing"), (0, "pair_missing")])]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in the January 2026 period where a 200-unit "
        "credit and a 300-unit credit were not reflected in their records."
    )


def test_compare_finds_two_deltas_of_one_month_counted_twice() -> None:
    result = compare(HISTORY, yours=60 + 260, theirs=60)

    assert windows_of(result) == [("yours", "2026-03", 260, [(4, "pair_duplicated"), (3, "pair_duplicated")])]
    assert report_of(result)["recommendation"] == (
        f"{REVIEW} The discrepancy originates in the March 2026 period where a 40-unit debit "
        "and a 300-unit credit were each counted twice in your records."
    )


def test_compare_does_not_pair_deltas_across_months() -> None:
    # -700 (February) + 300 (March) would explain +400 but lie in different months.
    result = compare(HISTORY, yours=60, theirs=60 + 400)
    assert windows_of(result) == []


def test_compare_does_not_offer_a_missing_and_a_duplicated_delta_as_a_pair() -> None:
    # Missing 200 and counting 300 twice would give +100; mixed pairs are not searched.
    result = compare(HISTORY, yours=60, theirs=60 + 100)
    assert windows_of(result) == []


def test_compare_prefers_a_single_delta_to_any_pair() -> None:
    deltas = ledger(
        ("2026-05-01T00:00:00Z", -200),
        ("2026-05-02T00:00:00Z", -300),
        ("2026-05-03T00:00:00Z", -500),
    )
    result = compare(deltas, yours=-1000, theirs=-500)
    assert windows_of(result) == [("theirs", "2026-05", 500, [(2, "missing")])]


def test_compare_does_not_advise_narrowing_a_search_that_covered_every_delta() -> None:
    """Nothing explains it and nothing went unsearched: a narrower scope holds fewer deltas and
    would find nothing either, so the report sends the caller to the starting point and to
    stated nets, not to a later checkpoint."""
    for time_scoped in (False, True):
        result = compare(HISTORY, yours=60, theirs=60 + 12345, time_scoped=time_scoped)
        report = report_of(result)

        assert report["windowsToReview"] == []
        assert report["recommendation"] == (
            f"{SHARE} No single delta, and no pair of deltas within one month, explains the 12345 "
            "by which their balance is overstated. Every verified delta in the compared scope was "
            "searched, so a narrower scope would find none either; check the agreed starting "
            "balance and the scope, or send their per-month nets as theirWindows to find the "
            "periods that differ."
        )


def test_compare_over_a_scope_with_no_delta_does_not_advise_narrowing_it() -> None:
    """A period with no verified delta: no narrower scope could hold one, so the report does
    not send the caller to a shorter date range or a later checkpoint, which it said it was in."""
    for time_scoped in (True, False):
        result = compare([], yours=5, theirs=0, time_scoped=time_scoped)
        assert report_of(result)["recommendation"] == (
            f"{REVIEW} No verified delta is in the compared scope, so none explains the 5 by which "
            "your balance is overstated. Check the agreed starting balance and the scope, or send "
            "your per-month nets as yourWindows."
        )


def test_compare_says_when_the_work_bound_stopped_the_search() -> None:
    finder = ListFinder(HISTORY)
    result = compare(HISTORY, yours=60 - 12345, theirs=60, finder=finder, max_pair_checks=7)

    assert report_of(result)["recommendation"] == (
        f"{REVIEW} No single delta, and no pair of deltas within one month, explains the 12345 "
        "by which your balance is understated. The search stopped at its work limit before every "
        "month was checked. To narrow it, pass a later locked period's checkpoint as "
        "startingCheckpoint, or compare one period (period=YYYY-MM), or send your per-month nets as "
        "yourWindows."
    )
    assert finder.handed_out <= 7


def test_compare_says_so_when_the_work_bound_cut_short_a_search_that_found_something() -> None:
    """April's pair explains it, and so would December's, which the bound left unsearched:
    the month found is named, and the report does not read as if every month was checked."""
    busy = [(f"2026-{m:02d}-{i % 28 + 1:02d}T00:00:{i % 60:02d}Z", 1) for m in (1, 2, 3) for i in range(60)]
    deltas = ledger(
        ("2025-12-05T00:00:00Z", 400),
        ("2025-12-06T00:00:00Z", 600),
        *busy,
        ("2026-04-02T00:00:00Z", 300),
        ("2026-04-03T00:00:00Z", 700),
    )
    neutral = sum(d.delta for d in deltas)
    found = (
        f"{SHARE} The discrepancy originates in the April 2026 period where a 700-unit credit and a "
        "300-unit credit were not reflected in their records. The search stopped at its work limit "
        "before every month was checked, so other months may explain it too; "
    )
    result = compare(deltas, yours=neutral, theirs=neutral - 1000, max_pair_checks=500)
    assert [w[1] for w in windows_of(result)] == ["2026-04"]
    assert report_of(result)["recommendation"] == (
        found + "pass a later locked period's checkpoint as startingCheckpoint, or compare one period "
        "(period=YYYY-MM) to narrow the search."
    )
    # under a time scope, to which no checkpoint can be added, the advice is a shorter scope
    scoped = compare(deltas, yours=neutral, theirs=neutral - 1000, max_pair_checks=500, time_scoped=True)
    assert report_of(scoped)["recommendation"] == (
        found + "compare over a shorter time scope (one period=YYYY-MM) to narrow the search."
    )
    whole = compare(deltas, yours=neutral, theirs=neutral - 1000)  # the default bound reaches December
    assert "work limit" not in str(report_of(whole)["recommendation"])


def test_compare_spends_no_more_work_than_allowed_per_wrong_party() -> None:
    deltas = ledger(*((f"2026-06-{day:02d}T00:00:00Z", 1000 + day) for day in range(1, 29)))
    neutral = sum(d.delta for d in deltas)
    for bound in (0, 1, 5, 30, 100):
        one_wrong, both_wrong = ListFinder(deltas), ListFinder(deltas)
        compare(deltas, yours=neutral, theirs=1, finder=one_wrong, max_pair_checks=bound)
        compare(deltas, yours=-1, theirs=1, finder=both_wrong, max_pair_checks=bound)
        assert one_wrong.handed_out <= bound
        assert both_wrong.handed_out <= 2 * bound


def test_compare_reports_the_same_for_the_same_input() -> None:
    first = compare(HISTORY, yours=60 + 40, theirs=60 - 500, max_pair_checks=9)
    second = compare(HISTORY, yours=60 + 40, theirs=60 - 500, max_pair_checks=9)
    assert first == second


def test_compare_caps_candidates_and_windows_and_says_more_exist() -> None:
    deltas = ledger(*((f"2026-{m:02d}-{d:02d}T00:00:00Z", -500) for m in (1, 2, 3) for d in (1, 2, 3)))
    result = compare(deltas, yours=-4500, theirs=-4000, candidate_limit=2, window_limit=2)

    assert windows_of(result) == [
        ("theirs", "2026-03", 500, [(8, "missing"), (7, "missing")]),
        ("theirs", "2026-02", 500, [(5, "missing"), (4, "missing")]),
    ]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The most recently recorded deltas that explain it exactly are in March 2026 and "
        "February 2026; in March 2026, a 500-unit debit was not reflected in their records. More "
        "deltas that explain it exactly exist than are listed, in these periods or others, so it "
        "may originate in another period: send their per-month nets as theirWindows to find the "
        "period, or pass a later locked period's checkpoint as startingCheckpoint, or compare one "
        "period (period=YYYY-MM) to narrow the search."
    )


def test_compare_does_not_name_the_origin_when_older_deltas_in_other_months_fit_too() -> None:
    """January's debit explains it as well as March's many: the report names March's as the
    most recent that fit, not March as where it originates, and says how to find the month."""
    deltas = ledger(
        ("2026-01-05T00:00:00Z", -500),
        *((f"2026-03-{d:02d}T00:00:00Z", -500) for d in range(1, 21)),
    )
    result = compare(deltas, yours=-10500, theirs=-10000, candidate_limit=3, window_limit=2)

    assert windows_of(result) == [
        ("theirs", "2026-03", 500, [(20, "missing"), (19, "missing"), (18, "missing")])
    ]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The most recently recorded deltas that explain it exactly are in the March 2026 "
        "period, where a 500-unit debit was not reflected in their records. More deltas that "
        "explain it exactly exist than are listed, in these periods or others, so it may originate "
        "in another period: send their per-month nets as theirWindows to find the period, or pass "
        "a later locked period's checkpoint as startingCheckpoint, or compare one period "
        "(period=YYYY-MM) to narrow the search."
    )
    stated = compare(
        deltas,
        yours=-10500,
        theirs=-10000,
        candidate_limit=3,
        window_limit=2,
        their_windows=[ClaimedWindow("2026-01", 0), ClaimedWindow("2026-03", -10000)],
    )
    assert [w[1] for w in windows_of(stated)] == ["2026-01"]


def test_compare_sends_no_one_to_other_months_when_every_delta_is_in_one() -> None:
    """More deltas fit than are listed, all in March: the text does not suggest another period
    may be the origin, nor per-month nets, which could name no other month."""
    deltas = ledger(*((f"2026-03-{d:02d}T00:00:00Z", 10) for d in range(1, 9)))
    result = compare(deltas, yours=80, theirs=70, candidate_limit=3)

    assert windows_of(result) == [
        ("theirs", "2026-03", -10, [(7, "missing"), (6, "missing"), (5, "missing")])
    ]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The most recently recorded deltas that explain it exactly are in the March 2026 "
        "period, where a 10-unit credit was not reflected in their records. More deltas of March "
        "2026 that explain it exactly exist than are listed, and every delta in the compared scope "
        "is in that month, so any of them may be the one: compare over a shorter date range within "
        "March 2026 (startDate, endDate) to narrow the search."
    )
    # A period checkpoint locks whole months: none could narrow a search within one.
    scoped = compare(deltas, yours=80, theirs=70, candidate_limit=3, time_scoped=True)
    assert report_of(scoped)["recommendation"] == report_of(result)["recommendation"]


def test_compare_uses_stated_month_nets_to_name_the_months() -> None:
    result = compare(
        HISTORY,
        yours=60,
        theirs=60 - 200,
        their_windows=[
            ClaimedWindow("2026-03", 260),
            ClaimedWindow("2026-02", -700),
            ClaimedWindow("2026-01", 300),
        ],
    )
    report = report_of(result)

    assert windows_of(result) == [("theirs", "2026-01", -200, [(1, "missing")])]
    window = report["windowsToReview"][0]  # type: ignore[index]
    assert (window["expectedNet"], window["theirNet"]) == (500, 300)
    assert report["recommendation"] == (
        f"{SHARE} The discrepancy originates in the January 2026 period, where their stated net "
        "of 300 differs from the verified net of 500 by -200; a 200-unit credit was not "
        "reflected in their records."
    )


def test_compare_counts_unstated_months_as_zero_and_unverified_months_as_expected_zero() -> None:
    result = compare(
        HISTORY,
        yours=60 - 900 + 300 + 15,
        theirs=60,
        your_windows=[
            ClaimedWindow("2026-04", 15),  # no verified delta: expected 0
            ClaimedWindow("2026-03", 260),
            ClaimedWindow("2026-02", -700),
            # January omitted: stated net 0 against a verified 500
        ],
    )

    assert windows_of(result) == [
        ("yours", "2026-04", 15, []),
        ("yours", "2026-01", -500, [(1, "pair_missing"), (0, "pair_missing")]),
    ]
    assert report_of(result)["recommendation"] == (
        f"{REVIEW} The discrepancy originates in 2 periods: April 2026 and January 2026. In "
        "April 2026, your stated net of 15 differs from the verified net of 0 by 15. In January "
        "2026, your monthly nets do not list it, which counts as a net of 0, while the verified "
        "net is 500; a 200-unit credit and a 300-unit credit were not reflected in your records. "
        "Your stated monthly "
        "nets explain -485 of your difference of -585; the remaining -100 is not in any month, "
        "so check the agreed starting balance and startingCheckpoint."
    )


def test_compare_words_a_month_stated_as_zero_apart_from_one_not_listed() -> None:
    windows = [ClaimedWindow("2026-03", 260), ClaimedWindow("2026-02", -700)]
    listed = compare(HISTORY, yours=60 - 500, theirs=60, your_windows=[*windows, ClaimedWindow("2026-01", 0)])
    omitted = compare(HISTORY, yours=60 - 500, theirs=60, your_windows=windows)

    assert windows_of(listed) == windows_of(omitted)  # the same month, counted the same
    assert "In January 2026" not in report_of(listed)["recommendation"]  # one window: no "In"
    assert "your stated net of 0 differs from the verified net of 500" in report_of(listed)["recommendation"]
    assert (
        "your monthly nets do not list it, which counts as a net of 0" in report_of(omitted)["recommendation"]
    )


def test_compare_points_at_the_starting_balance_when_every_stated_month_matches() -> None:
    stated = [ClaimedWindow(m.period, m.net) for m in month_nets(HISTORY)]
    result = compare(HISTORY, yours=60, theirs=75, their_windows=stated)

    assert windows_of(result) == []
    assert report_of(result)["recommendation"] == (
        f"{SHARE} Their stated monthly nets match the verified net of every month, so the 15 by "
        "which their balance is overstated is not in any month; check the agreed starting "
        "balance and startingCheckpoint."
    )


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        (-500, "a 500-unit debit"),
        (-800, "an 800-unit debit"),
        (18, "an 18-unit credit"),
        (11000, "an 11000-unit credit"),
        (1100, "a 1100-unit credit"),
        (180, "a 180-unit credit"),
        (8, "an 8-unit credit"),
    ],
)
def test_compare_reads_amounts_with_the_right_article(amount: int, words: str) -> None:
    deltas = ledger(("2026-02-01T00:00:00Z", amount))
    result = compare(deltas, yours=amount, theirs=0)
    assert f"where {words} was not reflected in their records." in str(report_of(result)["recommendation"])


def test_compare_keeps_integers_beyond_two_to_the_53_exact() -> None:
    big = 2**60 + 1
    deltas = ledger(("2026-07-01T00:00:00Z", big), ("2026-07-02T00:00:00Z", -(2**59) - 3))
    neutral = 2**62 + big - 2**59 - 3
    result = compare(deltas, starting=2**62, yours=neutral, theirs=neutral - big)
    report = report_of(result)

    assert to_wire(result)["neutralBalance"] == neutral
    assert (report["amount"], report["theirDifference"]) == (big, -big)
    window = report["windowsToReview"][0]  # type: ignore[index]
    assert window["expectedNet"] == big - 2**59 - 3
    assert window["theirNet"] == -(2**59) - 3
    assert window["candidates"][0]["delta"] == big
    assert all(type(v) is int for v in (report["amount"], window["expectedNet"]))
    assert f"a {big}-unit credit was not reflected" in str(report["recommendation"])


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([ClaimedWindow("2026-2", 0)], "theirWindows[0].period: must be YYYY-MM"),
        ([ClaimedWindow("2026-13", 0)], "theirWindows[0].period: month must be 01 to 12"),
        (
            [ClaimedWindow("2026-02", 0), ClaimedWindow("2026-02", 1)],
            'theirWindows[1].period: repeats period "2026-02"',
        ),
        ([ClaimedWindow("2026-02", True)], "theirWindows[0].netChange: must be an integer"),
    ],
)
def test_compare_rejects_malformed_stated_windows_naming_the_field(
    windows: list[ClaimedWindow], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compare(SEED, yours=-1500, theirs=0, their_windows=windows)


def test_compare_rejects_a_balance_that_is_not_an_integer() -> None:
    with pytest.raises(ValidationError, match="yourBalance: must be an integer, got float"):
        compare(SEED, yours=1.5, theirs=0)  # type: ignore[arg-type]


def test_month_net_refuses_totals_that_do_not_add_up() -> None:
    with pytest.raises(ValueError, match="net -1 ≠ credits \\+ debits"):
        MonthNet("2026-02", credits=0, debits=-2, net=-1, count=1)


# --- properties -----------------------------------------------------------------------------

KINDS = {"missing": lambda x: -x, "duplicated": lambda x: x, "sign_flipped": lambda x: -2 * x}
EFFECT = {
    "missing": lambda x: -x,
    "duplicated": lambda x: x,
    "sign_flipped": lambda x: -2 * x,
    "pair_missing": lambda x: -x,
    "pair_duplicated": lambda x: x,
}


@st.composite
def histories(draw: st.DrawFn) -> list[DeltaRef]:
    """1-6 distinct months of 2025-2026, 1-6 deltas each, non-zero amounts of either sign
    (sometimes beyond 2**53), in a random seal order."""
    periods = draw(st.lists(st.integers(0, 23), min_size=1, max_size=6, unique=True))
    amounts = st.integers(-(2**60), 2**60).filter(bool) | st.integers(-50, 50).filter(bool)
    items: list[tuple[str, int]] = []
    for p in periods:
        when = f"{2025 + p // 12}-{p % 12 + 1:02d}"
        for day in range(1, draw(st.integers(1, 6)) + 1):
            items.append((f"{when}-{day:02d}T12:00:00Z", draw(amounts)))
    return ledger(*draw(st.permutations(items)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deltas=histories(),
    data=st.data(),
    kind=st.sampled_from(sorted(KINDS)),
    wrong=st.sampled_from(["yours", "theirs"]),
)
def test_compare_always_finds_a_removed_duplicated_or_sign_flipped_delta(
    deltas: list[DeltaRef], data: st.DataObject, kind: str, wrong: str
) -> None:
    """One party's view loses, doubles or sign-flips one delta; the other party is correct.

    The property holds whenever the limits cannot hide the true delta: ``candidate_limit`` is
    at least the number of deltas, ``window_limit`` at least the number of months, and
    ``max_pair_checks`` covers the three single-delta look-ups in full
    (``3 x (candidate_limit x window_limit + 1)``). Then the true delta is among the
    candidates, with the true explanation, in a window of the wrong party naming its month.
    """
    true = data.draw(st.sampled_from(deltas))
    neutral = sum(d.delta for d in deltas)
    claimed = neutral + KINDS[kind](true.delta)
    months = len({d.period for d in deltas})
    result = compare(
        deltas,
        yours=claimed if wrong == "yours" else neutral,
        theirs=claimed if wrong == "theirs" else neutral,
        candidate_limit=len(deltas),
        window_limit=months,
        max_pair_checks=3 * (len(deltas) * months + 1),
    )

    assert result.report is not None
    assert result.report.divergent_party == wrong
    named = [w for w in result.report.windows if w.party == wrong and w.period == true.period]
    assert len(named) == 1
    assert (true.leaf_index, kind) in [(c.leaf_index, c.explanation) for c in named[0].candidates]


@st.composite
def errors_for(draw: st.DrawFn, deltas: Sequence[DeltaRef]) -> int:
    """A difference that is random, or that some delta or pair could plausibly explain."""
    x, y = draw(st.sampled_from(deltas)), draw(st.sampled_from(deltas))
    return draw(
        st.sampled_from(
            [
                0,
                x.delta,
                -x.delta,
                2 * x.delta,
                -2 * x.delta,
                x.delta + y.delta,
                -x.delta - y.delta,
                y.delta - x.delta,
            ]
        )
        | st.integers(-(2**61), 2**61)
        | st.integers(-100, 100)
    )


@settings(max_examples=300, deadline=None)
@given(deltas=histories(), data=st.data(), max_pair_checks=st.integers(0, 60))
def test_compare_only_offers_candidates_that_explain_the_difference_exactly(
    deltas: list[DeltaRef], data: st.DataObject, max_pair_checks: int
) -> None:
    """Soundness: every listed delta (or pair of two distinct deltas of the window's month)
    accounts for the whole difference, each window's numbers are consistent, and the finder
    never hands out more deltas than the work bound allows."""
    their_error = data.draw(errors_for(deltas))
    neutral = sum(d.delta for d in deltas)
    finder = ListFinder(deltas)
    result = compare(
        deltas,
        yours=neutral,
        theirs=neutral + their_error,
        finder=finder,
        max_pair_checks=max_pair_checks,
    )

    assert finder.handed_out <= max_pair_checks
    if their_error == 0:
        assert result.report is None
        return
    assert result.report is not None
    expected_net = {m.period: m.net for m in month_nets(deltas)}
    by_leaf = {d.leaf_index: d for d in deltas}
    for window in result.report.windows:
        assert window.their_net - window.expected_net == window.difference == their_error
        assert window.expected_net == expected_net[window.period]
        for c in window.candidates:
            assert by_leaf[c.leaf_index].period == window.period
        singles = [c for c in window.candidates if not c.explanation.startswith("pair_")]
        pairs = [c for c in window.candidates if c.explanation.startswith("pair_")]
        assert all(EFFECT[c.explanation](c.delta) == their_error for c in singles)
        assert len(pairs) % 2 == 0
        for a, b in zip(pairs[::2], pairs[1::2], strict=True):
            assert a.explanation == b.explanation
            assert a.leaf_index != b.leaf_index
            assert EFFECT[a.explanation](a.delta + b.delta) == their_error


@settings(max_examples=200, deadline=None)
@given(deltas=histories(), data=st.data(), kind=st.sampled_from(["missing", "duplicated"]))
def test_compare_finds_two_removed_or_duplicated_deltas_of_one_month(
    deltas: list[DeltaRef], data: st.DataObject, kind: str
) -> None:
    """Their view loses (or doubles) two deltas of the same month; yours is correct.

    Holds when no single delta explains the difference (singles take precedence, so the
    example is discarded otherwise) and the limits cannot hide the pair: ``candidate_limit``
    allows every pair of the month to be listed, ``window_limit`` covers every month, and
    ``max_pair_checks`` pays for every fetch and look-up.
    """
    month = data.draw(st.sampled_from(sorted({d.period for d in deltas})))
    in_month = [d for d in deltas if d.period == month]
    assume(len(in_month) >= 2)
    x, y = data.draw(st.lists(st.sampled_from(in_month), min_size=2, max_size=2, unique=True))
    error = -(x.delta + y.delta) if kind == "missing" else x.delta + y.delta
    assume(error != 0)
    assume(not any(EFFECT[k](d.delta) == error for d in deltas for k in KINDS))
    neutral = sum(d.delta for d in deltas)
    n, months = len(deltas), len({d.period for d in deltas})
    result = compare(
        deltas,
        yours=neutral,
        theirs=neutral + error,
        candidate_limit=n * n,
        window_limit=months,
        max_pair_checks=10 * n * n * months,
    )

    assert result.report is not None
    named = [w for w in result.report.windows if w.period == month]
    assert len(named) == 1
    found = named[0].candidates
    listed = {
        frozenset((a.leaf_index, b.leaf_index))
        for a, b in zip(found[::2], found[1::2], strict=True)
        if a.explanation == b.explanation == f"pair_{kind}"
    }
    assert frozenset((x.leaf_index, y.leaf_index)) in listed


def test_a_pair_among_the_newest_of_a_busy_month_is_found() -> None:
    """A month of more deltas than the work left: its fetch leaves the look-ups their share, so
    a pair among its newest deltas is found (fetching the whole budget's worth found none)."""
    items = [("2026-05-01T00:00:00Z", 2 * i + 7) for i in range(598)]
    items += [("2026-05-30T00:00:00Z", 1_000_001), ("2026-05-31T00:00:00Z", 2_000_003)]
    deltas = ledger(*items)
    neutral = sum(d.delta for d in deltas)
    finder = ListFinder(deltas)
    result = compare(
        deltas,
        yours=neutral,
        theirs=neutral - 3_000_004,
        finder=finder,
        max_pair_checks=500,
        time_scoped=True,
    )
    assert windows_of(result) == [
        ("theirs", "2026-05", -3_000_004, [(599, "pair_missing"), (598, "pair_missing")])
    ]
    assert finder.handed_out <= 500
    # Within one month, the advice is a shorter date range, not the month it already is, and
    # what went unchecked is the month's older deltas: there are no other months to blame.
    assert str(report_of(result)["recommendation"]).endswith(
        "The search stopped at its work limit before every delta of May 2026 was checked, so other "
        "deltas of May 2026 may explain it too; compare over a shorter date range within May 2026 "
        "(startDate, endDate) to narrow the search."
    )


def test_a_pair_the_work_bound_leaves_unsearched_in_one_month_gets_date_range_advice() -> None:
    """The pair is among the month's oldest deltas, beyond what the bound lets the search
    fetch: no window, and the advice for a time scope of one month is a shorter date range."""
    items = [("2026-05-01T00:00:00Z", 1_000_001), ("2026-05-02T00:00:00Z", 2_000_003)]
    items += [("2026-05-03T00:00:00Z", 2 * i + 7) for i in range(598)]
    deltas = ledger(*items)
    neutral = sum(d.delta for d in deltas)
    result = compare(deltas, yours=neutral, theirs=neutral - 3_000_004, max_pair_checks=500, time_scoped=True)
    assert windows_of(result) == []
    assert str(report_of(result)["recommendation"]).endswith(
        "The search stopped at its work limit before every delta of May 2026 was checked. To narrow "
        "it, compare over a shorter date range within May 2026 (startDate, endDate), or send their "
        "per-month nets as theirWindows."
    )


def test_a_stated_month_is_read_as_far_as_the_work_allows_for_its_single_delta() -> None:
    """The single search of a stated month costs nothing beyond reading it: the month is read
    whole when the work allows, and the oldest delta that explains it is found."""
    items = [("2026-05-01T00:00:00Z", 777_777)]
    items += [("2026-05-03T00:00:00Z", 2 * i + 7) for i in range(299)]
    deltas = ledger(*items)
    neutral = sum(d.delta for d in deltas)
    result = compare(
        deltas,
        yours=neutral,
        theirs=neutral - 777_777,
        max_pair_checks=500,
        their_windows=[ClaimedWindow("2026-05", neutral - 777_777)],
    )
    assert windows_of(result) == [("theirs", "2026-05", -777_777, [(0, "missing")])]


def test_a_stated_month_read_only_in_part_says_the_work_limit_stopped_its_search() -> None:
    """The delta that explains a stated month is among its oldest, beyond what the bound lets
    the search read: the window lists no candidate, and the report says why rather than
    reading as if no delta of the month explained it."""
    items = [("2026-05-01T00:00:00Z", 777_777)]
    items += [("2026-05-03T00:00:00Z", 2 * i + 7) for i in range(599)]
    deltas = ledger(*items)
    neutral = sum(d.delta for d in deltas)
    stated = [ClaimedWindow("2026-05", neutral - 777_777)]
    result = compare(
        deltas, yours=neutral, theirs=neutral - 777_777, max_pair_checks=500, their_windows=stated
    )

    assert windows_of(result) == [("theirs", "2026-05", -777_777, [])]
    assert report_of(result)["recommendation"] == (
        f"{SHARE} The discrepancy originates in the May 2026 period, where their stated net of "
        "362395 differs from the verified net of 1140172 by -777777. The search for the deltas behind "
        "these months stopped at its work limit after reading their most recently recorded "
        "deltas, so a month may hold deltas that explain it and are not listed; compare over a "
        "shorter date range within it (startDate, endDate) to narrow the search."
    )
    whole = compare(deltas, yours=neutral, theirs=neutral - 777_777, their_windows=stated)
    assert windows_of(whole) == [("theirs", "2026-05", -777_777, [(0, "missing")])]
    assert "work limit" not in str(report_of(whole)["recommendation"])


def test_a_month_within_half_the_work_is_read_whole_for_its_pairs() -> None:
    items = [("2026-05-01T00:00:00Z", 1_000_001), ("2026-05-02T00:00:00Z", 2_000_003)]
    items += [("2026-05-03T00:00:00Z", 2 * i + 7) for i in range(198)]
    deltas = ledger(*items)
    neutral = sum(d.delta for d in deltas)
    result = compare(deltas, yours=neutral, theirs=neutral - 3_000_004, max_pair_checks=500)
    assert windows_of(result) == [
        ("theirs", "2026-05", -3_000_004, [(1, "pair_missing"), (0, "pair_missing")])
    ]
