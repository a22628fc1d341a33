"""The values of a comparison: inputs gathered by the service, and the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from trueup.core.errors import ValidationError
from trueup.core.periods import parse_period

__all__ = [
    "PAIR_KINDS",
    "Candidate",
    "ClaimedWindow",
    "CompareResult",
    "DeltaFinder",
    "DeltaRef",
    "DiscrepancyReport",
    "DivergentParty",
    "Explanation",
    "Finding",
    "MonthNet",
    "Party",
    "WindowToReview",
]

Party = Literal["yours", "theirs"]
DivergentParty = Literal["yours", "theirs", "both"]
Explanation = Literal["missing", "duplicated", "sign_flipped", "pair_missing", "pair_duplicated"]
PAIR_KINDS = ("pair_missing", "pair_duplicated")


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


class DeltaRef(NamedTuple):
    """One verified delta in scope, as the finder returns it. ``delta`` is signed minor units;
    ``occurred_at`` RFC 3339. (A NamedTuple: the pair search reads hundreds per request.)"""

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


@dataclass(frozen=True, slots=True)
class Finding:
    """How one party's difference was localised: ``mode`` says which rule produced windows."""

    party: Party
    difference: int
    mode: Literal["stated", "single", "pair", "none"]
    windows: tuple[WindowToReview, ...]
    truncated: bool  # more matches exist than the limits let us list
    exhausted: bool  # the work bound ran out before the search was complete
    unlisted: frozenset[str] = frozenset()
    """With stated nets: the windows' periods the party did not list (counted as net 0)."""
