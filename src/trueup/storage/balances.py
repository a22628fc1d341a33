"""Balance queries whose cost does not grow with history.

The sequencer stores, with every sealed delta, the customer's running figures (``cust_seq``,
``running_balance``) and the running figures of its month (``month_seq``, ``month_credits``,
``month_debits``), and keeps per-customer and per-month totals. So:

- the whole history is one ``accounts`` row;
- "from leaf T on" is the account total minus the running figures of the last delta before T
  (one index probe), and per month likewise (one probe per month);
- a page of the whole history is a range of ``cust_seq``; a page of one month walks that
  month's index;
- a date range uses month totals for whole months and an index range for partial edges.

The indexes that make these one probe or one range are keyed by the customer's account number
(``account_no``, see :data:`ACCOUNT_NO_SQL`), not by ``(tenant_id, customer_id)``: a seal adds an
entry to each of them for every delta, and a short key makes that cheaper.

Every question is asked inside one :class:`BalanceSnapshot` (one read transaction), so a
balance, its page, its months and the signed head that covers them always agree. Only
verified deltas (``leaf_index IS NOT NULL``) are ever counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from trueup.core.periods import next_period
from trueup.storage.engine import Engine, Row, Tx
from trueup.storage.locks import CheckpointRecord, read_checkpoint, read_checkpoint_by_root
from trueup.storage.log import HeadRecord, head_at, head_by_root, latest_head, read_nodes
from trueup.storage.write_views import RecordView, read_record, read_record_at_leaf

__all__ = [
    "ACCOUNT_NO_SQL",
    "AccountRecord",
    "BalanceSnapshot",
    "BalanceStore",
    "DeltaRecord",
    "FinderRow",
    "MonthRecord",
    "Scope",
    "ScopeSummary",
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
            return "occurred_at >= ? AND occurred_at < ?", [self.start or _MIN_TIME, self.end or _MAX_TIME]
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


_FINDER_COLUMNS = "leaf_index, amount, period, occurred_at, reason"
_DELTA_COLUMNS = """leaf_index, amount, reason, occurred_at, period, item_key, metadata, salt,
    verified_at, request_id, item_index"""
_MIN_TIME = "0000"
_MAX_TIME = "9999-12-31T23:59:59.999999Z~"
ACCOUNT_NO_SQL = "(SELECT account_no FROM accounts WHERE tenant_id = ? AND customer_id = ?)"
"""A customer's account number, which the per-customer indexes of ``deltas`` are keyed by.
SQLite and PostgreSQL both evaluate it once per query (it does not depend on the row), so
``account_no = (…)`` is an index seek; with no account it is NULL and matches nothing."""
_CUSTOMER = f"account_no = {ACCOUNT_NO_SQL} AND leaf_index IS NOT NULL"


def _delta(row: Row) -> DeltaRecord:
    # Columns come back typed from both drivers; only BLOB/BYTEA needs normalising.
    return DeltaRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]), row[8], row[9], row[10]
    )


def month_start(period: str) -> str:
    return f"{period}-01T00:00:00.000000Z"


class BalanceStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def snapshot(self) -> Iterator[BalanceSnapshot]:
        """One consistent read of balances and the log."""
        with self._engine.read() as tx:
            yield BalanceSnapshot(tx)


class BalanceSnapshot:
    """Balance questions about one tenant's customers, all answered from one snapshot."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    # -- the log ----------------------------------------------------------------------------

    def head(self) -> HeadRecord | None:
        return latest_head(self._tx)

    def head_at(self, size: int) -> HeadRecord | None:
        return head_at(self._tx, size)

    def head_by_root(self, root: bytes) -> HeadRecord | None:
        return head_by_root(self._tx, root)

    def nodes(self, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return read_nodes(self._tx, ids)

    # -- what a starting checkpoint names ------------------------------------------------------

    def record(self, tenant_id: str, request_id: str, item_index: int) -> RecordView | None:
        return read_record(self._tx, tenant_id, request_id, item_index)

    def record_at_leaf(self, tenant_id: str, leaf_index: int) -> RecordView | None:
        return read_record_at_leaf(self._tx, tenant_id, leaf_index)

    def checkpoint(self, tenant_id: str, checkpoint_id: str) -> CheckpointRecord | None:
        return read_checkpoint(self._tx, tenant_id, checkpoint_id)

    def checkpoint_by_root(self, root: bytes, tenant_id: str) -> CheckpointRecord | None:
        return read_checkpoint_by_root(self._tx, root, tenant_id)

    # -- customers --------------------------------------------------------------------------

    def account(self, tenant_id: str, customer_id: str) -> AccountRecord | None:
        row = self._tx.one(
            """SELECT customer_id, balance, delta_count, first_activity, last_activity,
                      last_leaf_index FROM accounts WHERE tenant_id = ? AND customer_id = ?""",
            (tenant_id, customer_id),
        )
        return None if row is None else _account_record(row)

    def known_customer(self, tenant_id: str, customer_id: str) -> bool:
        """Whether the tenant wrote to this customer: a sealed delta, one still queued, or a
        locked period (whose only deltas may have failed at sealing, the lock landing first)."""
        if self.account(tenant_id, customer_id) is not None:
            return True
        # Only the (small) queue needs a look: sealed deltas are in the account row already.
        row = self._tx.one(
            # "|| ''" keeps the planner on the small queued-only index instead of the
            # tenant's whole key index.
            """SELECT 1 FROM deltas WHERE status = 'queued' AND tenant_id || '' = ?
               AND customer_id || '' = ? LIMIT 1""",
            (tenant_id, customer_id),
        )
        if row is None:
            row = self._tx.one(
                "SELECT 1 FROM period_checkpoints WHERE tenant_id = ? AND customer_id = ? LIMIT 1",
                (tenant_id, customer_id),
            )
        return row is not None

    def customers(
        self, tenant_id: str, search: str | None, limit: int, offset: int
    ) -> tuple[list[AccountRecord], int]:
        """A page of the tenant's customers by id, and how many match ``search`` (a substring,
        case-sensitive as customer ids are: ``LIKE`` ignores ASCII case on SQLite and not on
        PostgreSQL, so the test is whether removing ``search`` changes the id, alike on both)."""
        where = "tenant_id = ?"
        params: list[object] = [tenant_id]
        if search:
            where += " AND REPLACE(customer_id, ?, '') <> customer_id"
            params.append(search)
        total = int(self._tx.scalar(f"SELECT COUNT(*) FROM accounts WHERE {where}", params))
        rows = self._tx.execute(
            f"""SELECT customer_id, balance, delta_count, first_activity, last_activity,
                       last_leaf_index FROM accounts WHERE {where}
                ORDER BY customer_id LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        )
        return [_account_record(row) for row in rows], total

    # -- scoped totals ----------------------------------------------------------------------

    def summary(self, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
        """Total, count, per-month totals (oldest first) and newest leaf of the scope."""
        account = self.account(tenant_id, customer_id)
        if account is None:
            return ScopeSummary(0, 0, (), None)
        if scope.by_time:
            return self._time_summary(tenant_id, customer_id, scope)
        months = self._months(tenant_id, customer_id, _MIN_TIME, "9999-12")
        in_scope: list[MonthRecord] = []
        for month in months:
            if scope.after_period is not None and month.period > scope.after_period:
                in_scope.append(month)
                continue
            seq, credits, debits = self._month_before(tenant_id, customer_id, month.period, scope.min_leaf)
            if seq < month.count:
                in_scope.append(
                    MonthRecord(
                        month.period, month.credits - credits, month.debits - debits, month.count - seq
                    )
                )
        total = sum(month.net for month in in_scope)
        count = sum(month.count for month in in_scope)
        newest = account.last_leaf_index if count else None
        if count and scope.after_period is not None and newest is not None and newest < scope.min_leaf:
            condition, params = scope.sql()
            newest = int(
                self._tx.scalar(
                    f"""SELECT leaf_index FROM deltas WHERE {_CUSTOMER} AND {condition}
                    ORDER BY leaf_index DESC LIMIT 1""",
                    (tenant_id, customer_id, *params),
                )
            )
        return ScopeSummary(total, count, tuple(in_scope), newest)

    def checkpoint_figures(
        self, tenant_id: str, customer_id: str, period: str, tree_size: int
    ) -> tuple[int, MonthRecord]:
        """``(opening balance, the period's totals)`` over the deltas sealed before ``tree_size``."""
        opening = 0
        closing_month = MonthRecord(period, 0, 0, 0)
        for month in self._months(tenant_id, customer_id, _MIN_TIME, period):
            seq, credits, debits = self._month_before(tenant_id, customer_id, month.period, tree_size)
            if month.period < period:
                opening += credits + debits
            else:
                closing_month = MonthRecord(period, credits, debits, seq)
        return opening, closing_month

    # -- pages of deltas --------------------------------------------------------------------

    def page(
        self,
        tenant_id: str,
        customer_id: str,
        scope: Scope,
        limit: int,
        offset: int,
        descending: bool = False,
    ) -> list[DeltaRecord]:
        """``limit`` deltas of the scope from ``offset``, in leaf order; for a time range other
        than one whole month (``asOf``, a date range), in ``occurred_at`` order, then leaf order."""
        account = self.account(tenant_id, customer_id)
        if account is None:
            return []
        order = "DESC" if descending else "ASC"
        if scope.by_time:
            whole = _whole_month(scope)
            if whole is not None:
                return self._month_page(tenant_id, customer_id, whole, limit, offset, descending)
            rows = self._tx.execute(
                f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {_CUSTOMER}
                      AND occurred_at >= ? AND occurred_at < ?
                    ORDER BY occurred_at {order}, leaf_index {order} LIMIT ? OFFSET ?""",
                (tenant_id, customer_id, scope.start or _MIN_TIME, scope.end or _MAX_TIME, limit, offset),
            )
            return [_delta(row) for row in rows]
        if scope.after_period is not None:
            # The union "sealed after the head, or of a later period" starts no earlier than
            # the first delta of a later month; scan from there.
            lower = min(
                [scope.min_leaf, *self._first_leaves_after(tenant_id, customer_id, scope.after_period)]
            )
            condition, params = scope.sql()
            rows = self._tx.execute(
                f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {_CUSTOMER} AND leaf_index >= ?
                      AND {condition} ORDER BY leaf_index {order} LIMIT ? OFFSET ?""",
                (tenant_id, customer_id, lower, *params, limit, offset),
            )
            return [_delta(row) for row in rows]
        before = self._tx.one(
            f"""SELECT cust_seq FROM deltas WHERE {_CUSTOMER} AND leaf_index < ?
                ORDER BY leaf_index DESC LIMIT 1""",
            (tenant_id, customer_id, scope.min_leaf),
        )
        first = 1 + (0 if before is None else int(before[0]))
        return self._seq_page(tenant_id, customer_id, first, account.delta_count, limit, offset, descending)

    # -- compare's finder -------------------------------------------------------------------

    def by_amount(
        self, tenant_id: str, customer_id: str, scope: Scope, amount: int, limit: int
    ) -> list[FinderRow]:
        """In-scope deltas of exactly ``amount``, newest leaf first."""
        condition, params = scope.sql()
        rows = self._tx.execute(
            f"""SELECT {_FINDER_COLUMNS} FROM deltas WHERE {_CUSTOMER} AND amount = ?
                  AND {condition} ORDER BY leaf_index DESC LIMIT ?""",
            (tenant_id, customer_id, amount, *params, limit),
        )
        return [FinderRow(*row) for row in rows]

    def in_month(
        self, tenant_id: str, customer_id: str, scope: Scope, period: str, limit: int
    ) -> list[FinderRow]:
        """In-scope deltas of one month, newest leaf first."""
        condition, params = scope.sql()
        rows = self._tx.execute(
            f"""SELECT {_FINDER_COLUMNS} FROM deltas WHERE {_CUSTOMER} AND period = ?
                  AND {condition} ORDER BY leaf_index DESC LIMIT ?""",
            (tenant_id, customer_id, period, *params, limit),
        )
        return [FinderRow(*row) for row in rows]

    def period_leaf_hashes(self, tenant_id: str, customer_id: str, period: str) -> list[bytes]:
        """Leaf hashes of a customer-month's sealed deltas, in leaf order."""
        rows = self._tx.execute(
            f"""SELECT n.hash FROM deltas d JOIN tree_nodes n ON n.level = 0 AND n.idx = d.leaf_index
                WHERE d.account_no = {ACCOUNT_NO_SQL} AND d.period = ?
                  AND d.leaf_index IS NOT NULL ORDER BY d.leaf_index""",
            (tenant_id, customer_id, period),
        )
        return [bytes(row[0]) for row in rows]

    def period_page(
        self, tenant_id: str, customer_id: str, period: str, limit: int, offset: int
    ) -> list[tuple[DeltaRecord, bytes]]:
        """A page of a customer-month's sealed deltas in leaf order, each with its leaf hash."""
        columns = ", ".join("d." + c.strip() for c in _DELTA_COLUMNS.split(","))
        rows = self._tx.execute(
            f"""SELECT {columns}, n.hash FROM deltas d
                JOIN tree_nodes n ON n.level = 0 AND n.idx = d.leaf_index
                WHERE d.account_no = {ACCOUNT_NO_SQL} AND d.period = ?
                  AND d.leaf_index IS NOT NULL
                ORDER BY d.leaf_index LIMIT ? OFFSET ?""",
            (tenant_id, customer_id, period, limit, offset),
        )
        return [(_delta(row[:-1]), bytes(row[-1])) for row in rows]

    def period_span(self, tenant_id: str, customer_id: str, period: str) -> tuple[str | None, str | None]:
        """The earliest and latest ``occurred_at`` of a customer-month's sealed deltas."""
        row = self._tx.one(
            f"SELECT MIN(occurred_at), MAX(occurred_at) FROM deltas WHERE {_CUSTOMER} AND period = ?",
            (tenant_id, customer_id, period),
        )
        return (None, None) if row is None else (row[0], row[1])

    def _months(self, tenant_id: str, customer_id: str, first: str, last: str) -> list[MonthRecord]:
        rows = self._tx.execute(
            """SELECT period, credits, debits, delta_count FROM account_months
               WHERE tenant_id = ? AND customer_id = ? AND period >= ? AND period <= ?
               ORDER BY period""",
            (tenant_id, customer_id, first, last),
        )
        return [MonthRecord(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def _month_before(
        self, tenant_id: str, customer_id: str, period: str, min_leaf: int
    ) -> tuple[int, int, int]:
        """``(month_seq, credits, debits)`` of the month's last delta before leaf ``min_leaf``."""
        if min_leaf <= 0:
            return 0, 0, 0
        row = self._tx.one(
            f"""SELECT month_seq, month_credits, month_debits FROM deltas
                WHERE {_CUSTOMER} AND period = ? AND leaf_index < ?
                ORDER BY leaf_index DESC LIMIT 1""",
            (tenant_id, customer_id, period, min_leaf),
        )
        return (0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def _first_leaves_after(self, tenant_id: str, customer_id: str, period: str) -> list[int]:
        leaves = []
        for month in self._months(tenant_id, customer_id, next_period(period), "9999-12"):
            row = self._tx.one(
                f"""SELECT leaf_index FROM deltas WHERE {_CUSTOMER} AND period = ?
                    ORDER BY leaf_index LIMIT 1""",
                (tenant_id, customer_id, month.period),
            )
            if row is not None:
                leaves.append(int(row[0]))
        return leaves

    def _time_summary(self, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
        start = scope.start or _MIN_TIME
        end = scope.end or _MAX_TIME
        months: list[MonthRecord] = []
        newest: int | None = None
        for month in self._months(tenant_id, customer_id, start[:7], end[:7]):
            lower, upper = month_start(month.period), month_start(next_period(month.period))
            if start <= lower and upper <= end:
                months.append(month)
                row = self._tx.one(
                    f"""SELECT leaf_index FROM deltas WHERE {_CUSTOMER} AND period = ?
                        ORDER BY leaf_index DESC LIMIT 1""",
                    (tenant_id, customer_id, month.period),
                )
                last = None if row is None else int(row[0])
            else:
                row = self._tx.one(
                    f"""SELECT COUNT(*), COALESCE(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END), 0),
                              COALESCE(SUM(CASE WHEN amount < 0 THEN amount ELSE 0 END), 0),
                              MAX(leaf_index)
                       FROM deltas WHERE {_CUSTOMER} AND occurred_at >= ? AND occurred_at < ?""",
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

    def _month_page(
        self,
        tenant_id: str,
        customer_id: str,
        period: str,
        limit: int,
        offset: int,
        descending: bool,
    ) -> list[DeltaRecord]:
        """A page of one month in leaf order: a walk of the month's own index (no sort)."""
        rows = self._tx.execute(
            f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {_CUSTOMER} AND period = ?
                ORDER BY leaf_index {"DESC" if descending else "ASC"} LIMIT ? OFFSET ?""",
            (tenant_id, customer_id, period, limit, offset),
        )
        return [_delta(row) for row in rows]

    def _seq_page(
        self,
        tenant_id: str,
        customer_id: str,
        first: int,
        last: int,
        limit: int,
        offset: int,
        descending: bool,
    ) -> list[DeltaRecord]:
        """Deltas whose ``cust_seq`` (their order among the customer's) is in the page's slice of
        [first, last]."""
        if descending:
            high = last - offset
            low = max(first, high - limit + 1)
        else:
            low = first + offset
            high = min(last, low + limit - 1)
        if low > high:
            return []
        rows = self._tx.execute(
            f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {_CUSTOMER} AND cust_seq BETWEEN ? AND ?
                ORDER BY cust_seq {"DESC" if descending else "ASC"}""",
            (tenant_id, customer_id, low, high),
        )
        return [_delta(row) for row in rows]


def _account_record(row: Row) -> AccountRecord:
    return AccountRecord(
        customer_id=str(row[0]),
        balance=int(row[1]),
        delta_count=int(row[2]),
        first_activity=str(row[3]),
        last_activity=str(row[4]),
        last_leaf_index=int(row[5]),
    )


def _whole_month(scope: Scope) -> str | None:
    """The period when the scope's bounds are exactly one calendar month."""
    if scope.start is None or scope.end is None:
        return None
    period = scope.start[:7]
    if scope.start == month_start(period) and scope.end == month_start(next_period(period)):
        return period
    return None
