"""What balance reads take and give: the :class:`Scope` of verified deltas a question counts,
the records it gets back, and the SQL every balance query shares (a customer's deltas found
through the account number, see :data:`ACCOUNT_NO_SQL`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from trueup.core.timestamps import MAX_TIME, MIN_TIME

__all__ = [
    "ACCOUNT_NO_SQL",
    "CUSTOMER_SQL",
    "AccountRecord",
    "DeltaRecord",
    "FinderRow",
    "MonthRecord",
    "Scope",
    "ScopeSummary",
    "month_start",
]


@dataclass(frozen=True, slots=True)
class Scope:
    """Which verified deltas count.

    - ``min_leaf``: leaves from this index on (an ``itemsRoot`` or ``anchorId`` checkpoint);
    - ``after_period`` with ``min_leaf``: a period checkpoint — every delta not already in its
      closing balance: those sealed after its head, or of a later period;
    - ``start``/``end``: ``start <= occurred_at < end`` (a period, a date range, ``asOf``).

    The service never combines a checkpoint with a time range.
    """

    min_leaf: int = 0
    after_period: str | None = None
    start: str | None = None
    end: str | None = None

    @property
    def by_time(self) -> bool:
        return self.start is not None or self.end is not None

    def sql(self) -> tuple[str, list[object]]:
        """An SQL condition (and its parameters) selecting the scope's deltas."""
        if self.by_time:
            return "occurred_at >= ? AND occurred_at < ?", [self.start or MIN_TIME, self.end or MAX_TIME]
        if self.after_period is not None:
            return "(leaf_index >= ? OR period > ?)", [self.min_leaf, self.after_period]
        return "leaf_index >= ?", [self.min_leaf]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    customer_id: str
    balance: int
    delta_count: int
    first_activity: str
    last_activity: str
    last_leaf_index: int


@dataclass(frozen=True, slots=True)
class MonthRecord:
    """A customer-month's verified totals in scope; ``debits`` is ``<= 0``."""

    period: str
    credits: int
    debits: int
    count: int

    @property
    def net(self) -> int:
        return self.credits + self.debits


@dataclass(frozen=True, slots=True)
class ScopeSummary:
    total: int
    count: int
    months: tuple[MonthRecord, ...]
    newest_leaf: int | None


class DeltaRecord(NamedTuple):
    """One verified delta as balance views show it (a NamedTuple: pages and compare's search
    build thousands)."""

    leaf_index: int
    amount: int
    reason: str
    occurred_at: str
    period: str
    key: str
    metadata: str | None
    salt: bytes
    verified_at: str
    request_id: str
    item_index: int


class FinderRow(NamedTuple):
    """What compare's search needs of a delta, and nothing more."""

    leaf_index: int
    amount: int
    period: str
    occurred_at: str
    reason: str


ACCOUNT_NO_SQL = "(SELECT account_no FROM accounts WHERE tenant_id = ? AND customer_id = ?)"
"""A customer's account number, which the per-customer indexes of ``deltas`` are keyed by.
SQLite and PostgreSQL both evaluate it once per query (it does not depend on the row), so
``account_no = (…)`` is an index seek; with no account it is NULL and matches nothing."""
CUSTOMER_SQL = f"account_no = {ACCOUNT_NO_SQL} AND leaf_index IS NOT NULL"
"""The condition that selects a customer's verified deltas (parameters: tenant, customer)."""


def month_start(period: str) -> str:
    return f"{period}-01T00:00:00.000000Z"
