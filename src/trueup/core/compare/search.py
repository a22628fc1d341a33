"""Localising one party's difference: stated nets, then single deltas, then pairs."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from trueup.core.compare.values import (
    Candidate,
    ClaimedWindow,
    DeltaFinder,
    DeltaRef,
    Explanation,
    Finding,
    MonthNet,
    Party,
    WindowToReview,
)
from trueup.core.errors import ValidationError
from trueup.core.periods import parse_period
from trueup.core.strict_json import describe

__all__ = ["Search", "claims_by_period", "require_int"]


@dataclass(slots=True)
class _Budget:
    """Work left for one party: one unit per delta fetched and per pair look-up."""

    remaining: int
    exhausted: bool = False  # some search was skipped or cut short for want of work

    def fetch(
        self, query: Callable[[int], Sequence[DeltaRef]], wanted: int, share: int = 1
    ) -> list[DeltaRef]:
        """Up to ``wanted`` deltas from ``query(limit)``, paid for one unit each, spending at
        most ``1 / share`` of the work left."""
        limit = min(wanted, self.remaining // share if share > 1 else self.remaining)
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
class Search:
    """The localisation rules over one compare's months and finder.

    ``truncated`` is per-party scratch state, reset by :meth:`localise`.
    """

    months: Mapping[str, MonthNet]
    finder: DeltaFinder
    candidate_limit: int
    window_limit: int
    max_pair_checks: int
    truncated: bool = False

    def localise(self, party: Party, diff: int, claims: Mapping[str, int] | None) -> Finding:
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
        unlisted = frozenset(w.period for w in windows if claims is not None and w.period not in claims)
        return Finding(party, diff, mode, windows, self.truncated, budget.exhausted, unlisted)

    def _stated(self, party: Party, claims: Mapping[str, int], budget: _Budget) -> tuple[WindowToReview, ...]:
        windows = []
        for period in sorted(self.months.keys() | claims.keys(), reverse=True):
            month = self.months.get(period)
            expected, stated = (month.net if month else 0), claims.get(period, 0)
            if stated == expected:
                continue
            # The whole month, as far as the work allows: the single search costs nothing more.
            refs = self._month_refs(month, budget, for_pairs=False) if month else []
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
            found = self._pair_candidates(self._month_refs(month, budget, for_pairs=True), diff, budget)
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

    def _month_refs(self, month: MonthNet, budget: _Budget, for_pairs: bool) -> list[DeltaRef]:
        """The month's newest deltas. For a pair search, a month of more than half the work
        left is read only to a third of it, which leaves the look-ups among them (two a delta,
        one for each kind of pair) their share: a month that took all of it would be fetched
        and then never searched. A smaller month is read whole, and the look-ups of at least
        the first kind (both missing) cover all of it."""
        share = 3 if for_pairs and month.count > budget.remaining // 2 else 1
        refs = budget.fetch(partial(self.finder.in_month, month.period), month.count, share=share)
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


def require_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(name, f"must be an integer, got {type(value).__name__}")


def claims_by_period(name: str, windows: Sequence[ClaimedWindow] | None) -> dict[str, int] | None:
    if windows is None:
        return None
    claims: dict[str, int] = {}
    for i, window in enumerate(windows):
        parse_period(window.period, f"{name}[{i}].period")
        require_int(f"{name}[{i}].netChange", window.net_change)
        if window.period in claims:
            raise ValidationError(f"{name}[{i}].period", f"repeats period {describe(window.period)}")
        claims[window.period] = window.net_change
    return claims
