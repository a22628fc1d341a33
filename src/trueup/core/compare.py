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

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

from trueup.core.errors import ValidationError
from trueup.core.periods import parse_period, period_label

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

Party = Literal["yours", "theirs"]
DivergentParty = Literal["yours", "theirs", "both"]
Explanation = Literal["missing", "duplicated", "sign_flipped", "pair_missing", "pair_duplicated"]
_PAIR_KINDS = ("pair_missing", "pair_duplicated")


@dataclass(frozen=True, slots=True)
class MonthNet:
    """Verified aggregate of one UTC month in scope: ``net = credits + debits``.

    ``credits ≥ 0`` and ``debits ≤ 0`` are sums of the month's positive and negative deltas,
    ``count ≥ 0`` is how many deltas it holds. Raises ``ValueError`` if an invariant fails
    (the service built it wrongly; this is not a client error).
    """

    period: str
    credits: int
    debits: int
    net: int
    count: int

    def __post_init__(self) -> None:
        try:
            parse_period(self.period)
        except ValidationError as exc:
            raise ValueError(f"MonthNet.period: {exc.problem}") from exc
        if self.credits < 0 or self.debits > 0 or self.count < 0:
            raise ValueError(f"MonthNet {self.period}: need credits ≥ 0, debits ≤ 0, count ≥ 0")
        if self.net != self.credits + self.debits:
            raise ValueError(f"MonthNet {self.period}: net {self.net} ≠ credits + debits")


@dataclass(frozen=True, slots=True)
class ClaimedWindow:
    """A party's statement of its net change for one month (``yourWindows``/``theirWindows``)."""

    period: str
    net_change: int


@dataclass(frozen=True, slots=True)
class DeltaRef:
    """One verified delta in scope, as the finder returns it. ``delta`` is signed minor units."""

    leaf_index: int
    anchor_id: str
    delta: int
    period: str
    occurred_at: str
    reason: str


class DeltaFinder(Protocol):
    """Indexed look-ups over the verified deltas in scope, implemented by the service.

    Both return at most ``limit`` deltas, most recent (highest leaf index) first.
    """

    def by_amount(self, amount: int, limit: int) -> Sequence[DeltaRef]:
        """Deltas whose amount equals ``amount`` exactly."""
        ...

    def in_month(self, period: str, limit: int) -> Sequence[DeltaRef]:
        """Deltas whose period is ``period`` (``YYYY-MM``)."""
        ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A delta that would explain a window. Members of a pair are listed next to each other."""

    anchor_id: str
    leaf_index: int
    delta: int
    occurred_at: str
    reason: str
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class WindowToReview:
    """A month where ``party``'s records depart from the verified record.

    ``their_net`` is the net implied by ``party``'s records (the seed names it for the
    counterparty; it is used for either party). ``difference = their_net - expected_net``.
    """

    period: str
    expected_net: int
    their_net: int
    difference: int
    party: Party
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class DiscrepancyReport:
    """Why the balances disagree. ``amount = |yourBalance - theirBalance|``; the differences
    are ``claimed - neutral`` per party; windows list yours first, each party most recent first.
    """

    amount: int
    resolution: str
    divergent_party: DivergentParty
    windows: tuple[WindowToReview, ...]
    recommendation: str
    your_difference: int
    their_difference: int


@dataclass(frozen=True, slots=True)
class CompareResult:
    """The verdict. ``report`` is ``None`` exactly when both balances match."""

    customer_id: str
    neutral_balance: int
    matches_yours: bool
    matches_theirs: bool
    report: DiscrepancyReport | None


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
) -> CompareResult:
    """Compare both claimed balances with ``neutral_balance`` and localise each difference.

    ``months`` are the verified aggregates in scope (one per period). Per party, at most
    ``window_limit`` searched windows are reported (stated windows are all reported), each
    with at most ``candidate_limit`` candidate deltas (pairs count two; at least one pair is
    shown), and at most ``max_pair_checks`` units of work are spent (a delta fetched from the
    finder or a pair look-up is one unit). Raises :class:`ValidationError` naming the field
    for a non-integer balance or net, a malformed or repeated window period; ``ValueError``
    if ``months`` repeats a period or the finder names a month absent from ``months``.
    """
    _require_int("neutralBalance", neutral_balance)
    _require_int("yourBalance", your_balance)
    _require_int("theirBalance", their_balance)
    if candidate_limit < 1 or window_limit < 1 or max_pair_checks < 0:
        raise ValueError("candidate_limit and window_limit must be ≥ 1, max_pair_checks ≥ 0")
    month_by_period = {m.period: m for m in months}
    if len(month_by_period) != len(months):
        raise ValueError("months: each period must appear once")
    claims = {
        "yours": _claims("yourWindows", your_windows),
        "theirs": _claims("theirWindows", their_windows),
    }
    diffs: dict[Party, int] = {
        "yours": your_balance - neutral_balance,
        "theirs": their_balance - neutral_balance,
    }
    if diffs["yours"] == 0 and diffs["theirs"] == 0:
        return CompareResult(customer_id, neutral_balance, True, True, None)
    search = _Search(month_by_period, finder, candidate_limit, window_limit, max_pair_checks)
    findings = [search.localise(p, d, claims[p]) for p, d in diffs.items() if d != 0]
    divergent: DivergentParty = findings[0].party if len(findings) == 1 else "both"
    report = DiscrepancyReport(
        amount=abs(your_balance - their_balance),
        resolution=_resolution(diffs["yours"], diffs["theirs"]),
        divergent_party=divergent,
        windows=tuple(w for f in findings for w in f.windows),
        recommendation=_recommendation(divergent, findings),
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
                "occurredAt": c.occurred_at,
                "reason": c.reason,
                "explanation": c.explanation,
            }
            for c in window.candidates
        ],
    }


# --- search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Finding:
    """How one party's difference was localised: ``mode`` says which rule produced windows."""

    party: Party
    difference: int
    mode: Literal["stated", "single", "pair", "none"]
    windows: tuple[WindowToReview, ...]
    truncated: bool  # more matches exist than the limits let us list
    exhausted: bool  # the work bound ran out before the search was complete


@dataclass(slots=True)
class _Budget:
    """Work left for one party: one unit per delta fetched and per pair look-up."""

    remaining: int
    exhausted: bool = False  # some search was skipped or cut short for want of work

    def fetch(self, query: Callable[[int], Sequence[DeltaRef]], wanted: int) -> list[DeltaRef]:
        """Up to ``wanted`` deltas from ``query(limit)``, paid for one unit each."""
        limit = min(wanted, self.remaining)
        refs = list(query(limit))[:limit] if limit > 0 else []
        self.remaining -= len(refs)
        if limit < wanted and len(refs) == limit:
            self.exhausted = True  # the query may have held more than we could afford
        return refs

    def check(self) -> bool:
        """Pay for one pair look-up; ``False`` (and exhausted) when no work is left."""
        if self.remaining == 0:
            self.exhausted = True
            return False
        self.remaining -= 1
        return True


@dataclass(slots=True)
class _Search:
    """The localisation rules over one compare's months and finder.

    ``truncated`` is per-party scratch state, reset by :meth:`localise`.
    """

    months: Mapping[str, MonthNet]
    finder: DeltaFinder
    candidate_limit: int
    window_limit: int
    max_pair_checks: int
    truncated: bool = False

    def localise(self, party: Party, diff: int, claims: Mapping[str, int] | None) -> _Finding:
        """Apply rules 1 to 4 of the module docstring to one party with difference ``diff ≠ 0``."""
        self.truncated = False
        budget = _Budget(self.max_pair_checks)
        if claims is not None:
            windows = self._stated(party, claims, budget)
            mode: Literal["stated", "single", "pair", "none"] = "stated"
        else:
            windows, mode = self._single(party, diff, budget), "single"
            if not windows:
                windows, mode = self._pairs(party, diff, budget), "pair"
            if not windows:
                mode = "none"
        return _Finding(party, diff, mode, windows, self.truncated, budget.exhausted)

    def _stated(self, party: Party, claims: Mapping[str, int], budget: _Budget) -> tuple[WindowToReview, ...]:
        windows = []
        for period in sorted(self.months.keys() | claims.keys(), reverse=True):
            month = self.months.get(period)
            expected, stated = (month.net if month else 0), claims.get(period, 0)
            if stated == expected:
                continue
            refs = self._month_refs(month, budget) if month else []
            found = _singles(refs, stated - expected, self.candidate_limit)
            if not found:
                found = self._pair_candidates(refs, stated - expected, budget)
            windows.append(self._window(party, period, expected, stated, found))
        return tuple(windows)

    def _single(self, party: Party, diff: int, budget: _Budget) -> tuple[WindowToReview, ...]:
        fetch = self.candidate_limit * self.window_limit
        hits: list[tuple[DeltaRef, Explanation]] = []
        for kind, amount in _single_amounts(diff):
            # One more than we can list tells whether more exist.
            refs = budget.fetch(partial(self.finder.by_amount, amount), fetch + 1)
            self.truncated |= len(refs) > fetch
            hits.extend((r, kind) for r in refs if r.delta == amount)
        by_period: dict[str, list[Candidate]] = {}
        for ref, kind in sorted(hits, key=lambda h: h[0].leaf_index, reverse=True):
            by_period.setdefault(ref.period, []).append(_candidate(ref, kind))
        periods = sorted(by_period, reverse=True)
        self.truncated |= len(periods) > self.window_limit
        windows = []
        for period in periods[: self.window_limit]:
            found = by_period[period]
            self.truncated |= len(found) > self.candidate_limit
            expected = self._month(period).net
            windows.append(
                self._window(party, period, expected, expected + diff, found[: self.candidate_limit])
            )
        return tuple(windows)

    def _pairs(self, party: Party, diff: int, budget: _Budget) -> tuple[WindowToReview, ...]:
        windows: list[WindowToReview] = []
        for period in sorted(self.months, reverse=True):
            month = self.months[period]
            if month.count < 2:
                continue
            if budget.remaining < 2:
                budget.exhausted = True
                break
            found = self._pair_candidates(self._month_refs(month, budget), diff, budget)
            if found and len(windows) == self.window_limit:
                self.truncated = True
                break
            if found:
                windows.append(self._window(party, period, month.net, month.net + diff, found))
        return tuple(windows)

    def _pair_candidates(self, refs: Sequence[DeltaRef], diff: int, budget: _Budget) -> list[Candidate]:
        """Pairs of distinct deltas of ``refs`` (one month) that both went missing
        (``a + b = -diff``) or were both counted twice (``a + b = diff``), as candidates.

        Most recent pair first (by the newer member's leaf index, then the older's), each pair
        as two adjacent candidates, at most ``max(1, candidate_limit // 2)`` pairs. Costs one
        work unit per look-up; the index makes each look-up a dictionary probe and a bisection.
        """
        max_pairs = max(1, self.candidate_limit // 2)
        refs = sorted(refs, key=lambda r: r.leaf_index, reverse=True)
        index: dict[int, tuple[list[int], list[DeltaRef]]] = {}
        for ref in refs:
            keys, group = index.setdefault(ref.delta, ([], []))
            keys.append(-ref.leaf_index)  # ascending keys = descending leaf index
            group.append(ref)
        pairs: list[tuple[DeltaRef, DeltaRef, Explanation]] = []
        targets: tuple[tuple[Explanation, int], ...] = (
            ("pair_missing", -diff),
            ("pair_duplicated", diff),
        )
        for kind, total in targets:
            found_of_kind = 0
            for a in refs:
                if found_of_kind > max_pairs or not budget.check():
                    break
                keys, group = index.get(total - a.delta, ([], []))
                start = bisect_right(keys, -a.leaf_index)  # partners older than ``a`` only
                for b in group[start : start + max_pairs + 1 - found_of_kind]:
                    pairs.append((a, b, kind))
                    found_of_kind += 1
        pairs.sort(key=lambda p: (p[0].leaf_index, p[1].leaf_index), reverse=True)
        self.truncated |= len(pairs) > max_pairs
        return [_candidate(r, kind) for a, b, kind in pairs[:max_pairs] for r in (a, b)]

    def _month_refs(self, month: MonthNet, budget: _Budget) -> list[DeltaRef]:
        refs = budget.fetch(partial(self.finder.in_month, month.period), month.count)
        return [r for r in refs if r.period == month.period]

    def _month(self, period: str) -> MonthNet:
        month = self.months.get(period)
        if month is None:
            raise ValueError(f"finder returned a delta in {period}, which has no MonthNet")
        return month

    @staticmethod
    def _window(
        party: Party, period: str, expected: int, stated: int, found: Sequence[Candidate]
    ) -> WindowToReview:
        return WindowToReview(period, expected, stated, stated - expected, party, tuple(found))


def _single_amounts(diff: int) -> list[tuple[Explanation, int]]:
    """The delta amount each single-delta explanation of ``diff`` needs (distinct amounts)."""
    amounts: list[tuple[Explanation, int]] = [("missing", -diff), ("duplicated", diff)]
    if diff % 2 == 0:
        amounts.append(("sign_flipped", -(diff // 2)))
    return amounts


def _singles(refs: Sequence[DeltaRef], diff: int, limit: int) -> list[Candidate]:
    wanted = {amount: kind for kind, amount in _single_amounts(diff)}
    ordered = sorted(refs, key=lambda r: r.leaf_index, reverse=True)
    return [_candidate(r, wanted[r.delta]) for r in ordered if r.delta in wanted][:limit]


def _candidate(ref: DeltaRef, kind: Explanation) -> Candidate:
    return Candidate(ref.anchor_id, ref.leaf_index, ref.delta, ref.occurred_at, ref.reason, kind)


def _require_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(name, f"must be an integer, got {type(value).__name__}")


def _claims(name: str, windows: Sequence[ClaimedWindow] | None) -> dict[str, int] | None:
    if windows is None:
        return None
    claims: dict[str, int] = {}
    for i, window in enumerate(windows):
        parse_period(window.period, f"{name}[{i}].period")
        _require_int(f"{name}[{i}].netChange", window.net_change)
        if window.period in claims:
            raise ValidationError(f"{name}[{i}].period", f"repeats period {window.period!r}")
        claims[window.period] = window.net_change
    return claims


# --- words ----------------------------------------------------------------------------------


def _stated_by(diff: int) -> str:
    return "overstated" if diff > 0 else "understated"


def _resolution(your_diff: int, their_diff: int) -> str:
    if your_diff == 0:
        return f"Your balance is correct. The counterparty is {_stated_by(their_diff)} by {abs(their_diff)}."
    if their_diff == 0:
        return (
            f"The counterparty's balance is correct. Your balance is {_stated_by(your_diff)} "
            f"by {abs(your_diff)}."
        )
    return (
        f"Neither balance is correct. Your balance is {_stated_by(your_diff)} by "
        f"{abs(your_diff)} and the counterparty is {_stated_by(their_diff)} by {abs(their_diff)}."
    )


_OPENING: dict[DivergentParty, str] = {
    "theirs": "Share this report with the counterparty.",
    "yours": "Review your own records.",
    "both": "Share this report with the counterparty and review your own records.",
}


def _recommendation(divergent: DivergentParty, findings: Sequence[_Finding]) -> str:
    parts = [_OPENING[divergent]]
    for finding in findings:
        text = _localisation(finding)
        if divergent == "both":
            side = "your" if finding.party == "yours" else "their"
            text = f"On {side} side, {text[0].lower()}{text[1:]}"
        parts.append(text)
    return " ".join(parts)


def _localisation(f: _Finding) -> str:
    owner = "your" if f.party == "yours" else "their"
    labels = [period_label(w.period) for w in f.windows]
    narrow = "lock a later period checkpoint and pass it as startingCheckpoint"
    off_by = f"the {abs(f.difference)} by which {owner} balance is {_stated_by(f.difference)}"
    if f.mode == "none":
        text = f"No single delta, and no pair of deltas within one month, explains {off_by}."
        if f.exhausted:
            text += " The search stopped at its work limit before every month was checked."
        field_name = "yourWindows" if f.party == "yours" else "theirWindows"
        return f"{text} To narrow it, {narrow}, or send {owner} per-month nets as {field_name}."
    if f.mode == "stated":
        return _stated_text(f, owner, labels, off_by)
    if len(f.windows) == 1:
        text = f"The discrepancy originates in the {labels[0]} period where {_phrases(f.windows[0], owner)}."
    else:
        what = "a delta" if f.mode == "single" else "a pair of deltas"
        text = (
            f"The discrepancy originates in one of {len(labels)} periods, {_listing(labels, 'or')},"
            f" each holding {what} that explains it exactly; in {labels[0]}, "
            f"{_phrases(f.windows[0], owner)}."
        )
    if f.truncated:
        text += f" More matching deltas exist than are listed; {narrow} to narrow the search."
    return text


def _stated_text(f: _Finding, owner: str, labels: Sequence[str], off_by: str) -> str:
    if not f.windows:
        return (
            f"{owner.capitalize()} stated monthly nets match the verified net of every month, so "
            f"{off_by} is not in any month; check the agreed starting balance and "
            f"startingCheckpoint."
        )
    details = []
    for w in f.windows:
        detail = (
            f"{owner} stated net of {w.their_net} differs from the verified net of "
            f"{w.expected_net} by {w.difference}"
        )
        details.append(f"{detail}; {_phrases(w, owner)}" if w.candidates else detail)
    if len(f.windows) == 1:
        text = f"The discrepancy originates in the {labels[0]} period, where {details[0]}."
    else:
        text = f"The discrepancy originates in {len(labels)} periods: {_listing(labels, 'and')}."
        text += "".join(f" In {lbl}, {d}." for lbl, d in zip(labels, details, strict=True))
    explained = sum(w.difference for w in f.windows)
    if explained != f.difference:
        text += (
            f" {owner.capitalize()} stated monthly nets explain {explained} of {owner} "
            f"difference of {f.difference}; the remaining {f.difference - explained} is not in "
            f"any month, so check the agreed starting balance and startingCheckpoint."
        )
    return text


def _phrases(window: WindowToReview, owner: str) -> str:
    """What the window's candidates say happened, distinct phrases joined by "or"."""
    phrases: list[str] = []
    found, i = window.candidates, 0
    while i < len(found):
        c = found[i]
        if c.explanation in _PAIR_KINDS and i + 1 < len(found):
            other = found[i + 1]
            what = "were not reflected in"
            if c.explanation == "pair_duplicated":
                what = "were each counted twice in"
            phrase = f"{_unit(c.delta)} and {_unit(other.delta)} {what} {owner} records"
            i += 2
        else:
            phrase = f"{_unit(c.delta)} {_single_verb(c.explanation, c.delta)} {owner} records"
            i += 1
        if phrase not in phrases:
            phrases.append(phrase)
    return " or ".join(phrases)


def _noun(amount: int) -> str:
    return "debit" if amount < 0 else "credit"


def _unit(amount: int) -> str:
    """``"a 500-unit debit"``, ``"an 800-unit credit"``: the article follows how the number is
    read (eight…, eleven…, eighteen… take "an"), reading the leading group of three digits."""
    digits = str(abs(amount))
    lead = digits[: len(digits) % 3 or 3]
    article = "an" if lead.startswith("8") or lead in ("11", "18") else "a"
    return f"{article} {digits}-unit {_noun(amount)}"


def _single_verb(kind: Explanation, delta: int) -> str:
    if kind == "duplicated":
        return "was counted twice in"
    if kind == "sign_flipped":
        return f"was recorded as a {_noun(-delta)} in"
    return "was not reflected in"


def _listing(items: Sequence[str], conjunction: str) -> str:
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
