"""Compare two parties' balances with the verified record and localise the disagreement.

The pure half of ``POST /api/v1/balance/compare`` (DESIGN.md §2.4). The service gathers the
neutral balance, the verified per-month aggregates in scope and a :class:`DeltaFinder` over
indexed queries; :func:`compare_balances` decides who matches and, for every party that does
not, where its difference ``D = claimed - neutral`` comes from, in this order:

1. the party stated its per-month nets: every month whose stated net differs from the
   verified net (a month missing on either side counts as net 0), each with the deltas of
   that month that explain its own difference by rule 2 or 3; rules 2 and 3 are then not
   applied to the whole scope, since the party's own nets already say where to look;
2. one delta explains ``D`` exactly: missing from the party's records (``delta = -D``),
   counted twice (``delta = D``) or sign-flipped (``delta = -D/2``, only for even ``D``);
3. a pair of deltas *within one month* explains ``D``: both missing (``a + b = -D``) or both
   counted twice (``a + b = D``). Mixed pairs (one missing, one counted twice:
   ``b - a = D``) are deliberately not searched: they are the signature of a mistyped amount,
   and any two deltas of a month whose amounts are ``D`` apart match, so with recurring
   amounts they name confident-looking but false windows. Pairs involving a sign flip are
   left out for the same reason;
4. nothing found: no window, and a recommendation that says how to narrow the scope.

All money is ``int`` (minor units) and all arithmetic exact. The search is bounded by a work
count (deltas fetched plus pair look-ups), never by a clock, so equal inputs give equal
reports. Nothing here does I/O; the finder is the service's.
"""

from __future__ import annotations

from collections.abc import Sequence

from trueup.core.compare.search import Search, claims_by_period, require_int
from trueup.core.compare.values import (
    Candidate,
    ClaimedWindow,
    CompareResult,
    DeltaFinder,
    DeltaRef,
    DiscrepancyReport,
    DivergentParty,
    Explanation,
    MonthNet,
    Party,
    WindowToReview,
)
from trueup.core.compare.wording import recommendation, resolution
from trueup.core.timestamps import format_wire

__all__ = [
    "Candidate",
    "ClaimedWindow",
    "CompareResult",
    "DeltaFinder",
    "DeltaRef",
    "DiscrepancyReport",
    "DivergentParty",
    "Explanation",
    "MonthNet",
    "Party",
    "WindowToReview",
    "compare_balances",
    "to_wire",
]


def compare_balances(
    *,
    customer_id: str,
    neutral_balance: int,
    your_balance: int,
    their_balance: int,
    months: Sequence[MonthNet],
    finder: DeltaFinder,
    your_windows: Sequence[ClaimedWindow] | None = None,
    their_windows: Sequence[ClaimedWindow] | None = None,
    candidate_limit: int = 5,
    window_limit: int = 12,
    max_pair_checks: int = 2_000,
    time_scoped: bool = False,
) -> CompareResult:
    """Compare both claimed balances with ``neutral_balance`` and localise each difference.

    ``months`` are the verified aggregates in scope (one per period). Per party, at most
    ``window_limit`` searched windows are reported (stated windows are all reported), each
    with at most ``candidate_limit`` candidate deltas (pairs count two; at least one pair is
    shown), and at most ``max_pair_checks`` units of work are spent (a delta fetched from the
    finder or a pair look-up is one unit). Raises :class:`ValidationError` naming the field
    for a non-integer balance or net, a malformed or repeated window period; ``ValueError``
    if ``months`` repeats a period or the finder names a month absent from ``months``.
    ``time_scoped``: the scope is a time scope (a checkpoint cannot be added to it), which the
    advice on narrowing the search follows.
    """
    require_int("neutralBalance", neutral_balance)
    require_int("yourBalance", your_balance)
    require_int("theirBalance", their_balance)
    if candidate_limit < 1 or window_limit < 1 or max_pair_checks < 0:
        raise ValueError("candidate_limit and window_limit must be ≥ 1, max_pair_checks ≥ 0")
    month_by_period = {m.period: m for m in months}
    if len(month_by_period) != len(months):
        raise ValueError("months: each period must appear once")
    claims = {
        "yours": claims_by_period("yourWindows", your_windows),
        "theirs": claims_by_period("theirWindows", their_windows),
    }
    diffs: dict[Party, int] = {
        "yours": your_balance - neutral_balance,
        "theirs": their_balance - neutral_balance,
    }
    if diffs["yours"] == 0 and diffs["theirs"] == 0:
        return CompareResult(customer_id, neutral_balance, True, True, None)
    search = Search(month_by_period, finder, candidate_limit, window_limit, max_pair_checks)
    findings = [search.localise(p, d, claims[p]) for p, d in diffs.items() if d != 0]
    divergent: DivergentParty = findings[0].party if len(findings) == 1 else "both"
    report = DiscrepancyReport(
        amount=abs(your_balance - their_balance),
        resolution=resolution(diffs["yours"], diffs["theirs"]),
        divergent_party=divergent,
        windows=tuple(w for f in findings for w in f.windows),
        recommendation=recommendation(divergent, findings, time_scoped, months),
        your_difference=diffs["yours"],
        their_difference=diffs["theirs"],
    )
    return CompareResult(customer_id, neutral_balance, diffs["yours"] == 0, diffs["theirs"] == 0, report)


def to_wire(result: CompareResult) -> dict[str, object]:
    """The ``data`` object of the compare reply, field names as the seed page spells them.

    There is no ``discrepancyReport`` key at all when both balances match.
    """
    wire: dict[str, object] = {
        "customerId": result.customer_id,
        "neutralBalance": result.neutral_balance,
        "matchesYours": result.matches_yours,
        "matchesTheirs": result.matches_theirs,
    }
    report = result.report
    if report is not None:
        wire["discrepancyReport"] = {
            "amount": report.amount,
            "resolution": report.resolution,
            "divergentParty": report.divergent_party,
            "windowsToReview": [_window_wire(w) for w in report.windows],
            "recommendation": report.recommendation,
            "yourDifference": report.your_difference,
            "theirDifference": report.their_difference,
        }
    return wire


def _window_wire(window: WindowToReview) -> dict[str, object]:
    return {
        "period": window.period,
        "expectedNet": window.expected_net,
        "theirNet": window.their_net,
        "difference": window.difference,
        "party": window.party,
        "candidates": [
            {
                "anchorId": c.anchor_id,
                "leafIndex": c.leaf_index,
                "delta": c.delta,
                "occurredAt": format_wire(c.occurred_at),
                "reason": c.reason,
                "explanation": c.explanation,
            }
            for c in window.candidates
        ],
    }
