"""A customer's totals in any scope, from the figures the sequencer keeps: the ``accounts`` row
(the whole history), the ``account_months`` rows, and for a scope that starts at a leaf the
running figures of the month's last delta before it (one index probe per month). A time range
takes month totals for whole months and sums an index range for partial edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from trueup.core.periods import period_end
from trueup.core.timestamps import MAX_TIME, MIN_TIME
from trueup.storage.balance_records import (
    CUSTOMER_SQL,
    AccountRecord,
    MonthRecord,
    Scope,
    ScopeSummary,
    month_start,
)
from trueup.storage.engine import Row, Tx

__all__ = [
    "CheckpointFigures",
    "account_record",
    "read_account",
    "read_checkpoint_figures",
    "read_months",
    "read_summary",
]


def read_account(tx: Tx, tenant_id: str, customer_id: str) -> AccountRecord | None:
    row = tx.one(
        """SELECT customer_id, balance, delta_count, first_activity, last_activity,
                  last_leaf_index FROM accounts WHERE tenant_id = ? AND customer_id = ?""",
        (tenant_id, customer_id),
    )
    return None if row is None else account_record(row)


# -- scoped totals ----------------------------------------------------------------------


def read_summary(tx: Tx, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
    """Total, count, per-month totals (oldest first) and newest leaf of the scope."""
    account = read_account(tx, tenant_id, customer_id)
    if account is None:
        return ScopeSummary(0, 0, (), None)
    if scope.by_time:
        return _time_summary(tx, tenant_id, customer_id, scope)
    months = read_months(tx, tenant_id, customer_id, MIN_TIME, "9999-12")
    in_scope: list[MonthRecord] = []
    for month in months:
        if scope.after_period is not None and month.period > scope.after_period:
            in_scope.append(month)
            continue
        seq, credits, debits = _month_before(tx, tenant_id, customer_id, month.period, scope.min_leaf)
        if seq < month.count:
            in_scope.append(
                MonthRecord(month.period, month.credits - credits, month.debits - debits, month.count - seq)
            )
    total = sum(month.net for month in in_scope)
    count = sum(month.count for month in in_scope)
    newest = account.last_leaf_index if count else None
    if count and scope.after_period is not None and newest is not None and newest < scope.min_leaf:
        condition, params = scope.sql()
        newest = int(
            tx.scalar(
                f"""SELECT leaf_index FROM deltas WHERE {CUSTOMER_SQL} AND {condition}
                ORDER BY leaf_index DESC LIMIT 1""",
                (tenant_id, customer_id, *params),
            )
        )
    return ScopeSummary(total, count, tuple(in_scope), newest)


@dataclass(frozen=True, slots=True)
class CheckpointFigures:
    """A customer-month as of a tree size: what a lock of it states, and what it must not
    have let in."""

    opening: int
    """The balance of every month before it."""
    month: MonthRecord
    """Its own totals."""
    closed_sealed_after: tuple[tuple[str, int], ...]
    """The months before it with deltas sealed at that size or later, oldest first, each with
    how many: a lock taken at that size closes them, so none should be (the audit's check)."""


def read_checkpoint_figures(
    tx: Tx, tenant_id: str, customer_id: str, period: str, tree_size: int
) -> CheckpointFigures:
    """The period's figures over the deltas sealed before ``tree_size`` (one index probe per
    month of the customer's up to it)."""
    opening = 0
    closing_month = MonthRecord(period, 0, 0, 0)
    sealed_after: list[tuple[str, int]] = []
    for month in read_months(tx, tenant_id, customer_id, MIN_TIME, period):
        seq, credits, debits = _month_before(tx, tenant_id, customer_id, month.period, tree_size)
        if month.period < period:
            opening += credits + debits
            if month.count > seq:
                sealed_after.append((month.period, month.count - seq))
        else:
            closing_month = MonthRecord(period, credits, debits, seq)
    return CheckpointFigures(opening, closing_month, tuple(sealed_after))


def read_months(tx: Tx, tenant_id: str, customer_id: str, first: str, last: str) -> list[MonthRecord]:
    """The customer's ``account_months`` rows from period ``first`` to ``last``, oldest first."""
    rows = tx.execute(
        """SELECT period, credits, debits, delta_count FROM account_months
           WHERE tenant_id = ? AND customer_id = ? AND period >= ? AND period <= ?
           ORDER BY period""",
        (tenant_id, customer_id, first, last),
    )
    return [MonthRecord(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


def _month_before(
    tx: Tx, tenant_id: str, customer_id: str, period: str, min_leaf: int
) -> tuple[int, int, int]:
    """``(month_seq, credits, debits)`` of the month's last delta before leaf ``min_leaf``."""
    if min_leaf <= 0:
        return 0, 0, 0
    row = tx.one(
        f"""SELECT month_seq, month_credits, month_debits FROM deltas
            WHERE {CUSTOMER_SQL} AND period = ? AND leaf_index < ?
            ORDER BY leaf_index DESC LIMIT 1""",
        (tenant_id, customer_id, period, min_leaf),
    )
    return (0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))


def _time_summary(tx: Tx, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
    start = scope.start or MIN_TIME
    end = scope.end or MAX_TIME
    months: list[MonthRecord] = []
    newest: int | None = None
    for month in read_months(tx, tenant_id, customer_id, start[:7], end[:7]):
        lower, upper = month_start(month.period), period_end(month.period)
        if start <= lower and upper <= end:
            months.append(month)
            row = tx.one(
                f"""SELECT leaf_index FROM deltas WHERE {CUSTOMER_SQL} AND period = ?
                    ORDER BY leaf_index DESC LIMIT 1""",
                (tenant_id, customer_id, month.period),
            )
            last = None if row is None else int(row[0])
        else:
            row = tx.one(
                f"""SELECT COUNT(*), COALESCE(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END), 0),
                          COALESCE(SUM(CASE WHEN amount < 0 THEN amount ELSE 0 END), 0),
                          MAX(leaf_index)
                   FROM deltas WHERE {CUSTOMER_SQL} AND occurred_at >= ? AND occurred_at < ?""",
                (tenant_id, customer_id, max(start, lower), min(end, upper)),
            )
            assert row is not None
            if int(row[0]) == 0:
                continue
            months.append(MonthRecord(month.period, int(row[1]), int(row[2]), int(row[0])))
            last = int(row[3])
        if last is not None and (newest is None or last > newest):
            newest = last
    total = sum(month.net for month in months)
    count = sum(month.count for month in months)
    return ScopeSummary(total=total, count=count, months=tuple(months), newest_leaf=newest)


def account_record(row: Row) -> AccountRecord:
    return AccountRecord(
        customer_id=str(row[0]),
        balance=int(row[1]),
        delta_count=int(row[2]),
        first_activity=str(row[3]),
        last_activity=str(row[4]),
        last_leaf_index=int(row[5]),
    )
