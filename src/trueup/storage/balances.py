"""Balance queries whose cost does not grow with history.

The sequencer stores, with every sealed delta, the customer's running figures (``cust_seq``,
``running_balance``) and the running figures of its month (``month_seq``, ``month_credits``,
``month_debits``), and keeps per-customer and per-month totals. So:

- the whole history is one ``accounts`` row;
- "after leaf T" is the account total minus the running figures of the last delta before T
  (one index probe), and per month likewise (one probe per month);
- a page is a range of ``cust_seq`` (or ``month_seq``), never an OFFSET scan;
- a date range uses month totals for whole months and an index range for the partial edges.

Only verified deltas (``leaf_index IS NOT NULL``) are ever counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from trueup.storage.engine import Engine, Row, Tx

__all__ = [
    "AccountRecord",
    "BalanceStore",
    "DeltaRecord",
    "MonthRecord",
    "Scope",
    "ScopeSummary",
]


@dataclass(frozen=True, slots=True)
class Scope:
    """Which verified deltas count: leaves from ``min_leaf`` on, with ``start <= occurred_at <
    end`` when the bounds are given (canonical timestamps). A checkpoint sets ``min_leaf``; a
    period or date range sets the bounds; the two are never combined by the service."""

    min_leaf: int = 0
    start: str | None = None
    end: str | None = None

    @property
    def by_time(self) -> bool:
        return self.start is not None or self.end is not None


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


@dataclass(frozen=True, slots=True)
class DeltaRecord:
    """One verified delta as balance views show it."""

    leaf_index: int
    amount: int
    reason: str
    occurred_at: str
    period: str
    key: str
    metadata: str | None
    salt: bytes
    verified_at: str


_DELTA_COLUMNS = "leaf_index, amount, reason, occurred_at, period, item_key, metadata, salt, verified_at"
_MIN_TIME = "0000"
_MAX_TIME = "9999-12-31T23:59:59.999999Z~"


def _delta(row: Row) -> DeltaRecord:
    return DeltaRecord(
        leaf_index=int(row[0]), amount=int(row[1]), reason=str(row[2]), occurred_at=str(row[3]),
        period=str(row[4]), key=str(row[5]), metadata=None if row[6] is None else str(row[6]),
        salt=bytes(row[7]), verified_at=str(row[8]),
    )


def month_start(period: str) -> str:
    return f"{period}-01T00:00:00.000000Z"


def next_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


class BalanceStore:
    """Read-only balance questions about one tenant's customers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- customers --------------------------------------------------------------------------

    def account(self, tenant_id: str, customer_id: str) -> AccountRecord | None:
        with self._engine.read() as tx:
            return _account(tx, tenant_id, customer_id)

    def known_customer(self, tenant_id: str, customer_id: str) -> bool:
        """Whether the tenant ever wrote to this customer (verified or still queued)."""
        with self._engine.read() as tx:
            if _account(tx, tenant_id, customer_id) is not None:
                return True
            row = tx.one(
                """SELECT 1 FROM deltas WHERE status IN ('queued', 'failed') AND tenant_id = ?
                   AND customer_id = ? LIMIT 1""",
                (tenant_id, customer_id),
            )
        return row is not None

    def customers(
        self, tenant_id: str, search: str | None, limit: int, offset: int
    ) -> tuple[list[AccountRecord], int]:
        """A page of the tenant's customers by id, and how many match ``search`` (a substring)."""
        where = "tenant_id = ?"
        params: list[object] = [tenant_id]
        if search:
            where += " AND customer_id LIKE ? ESCAPE '\\'"
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        with self._engine.read() as tx:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM accounts WHERE {where}", params))
            rows = tx.execute(
                f"""SELECT customer_id, balance, delta_count, first_activity, last_activity,
                           last_leaf_index FROM accounts WHERE {where}
                    ORDER BY customer_id LIMIT ? OFFSET ?""",
                [*params, limit, offset],
            )
        return [_account_record(row) for row in rows], total

    # -- scoped totals ----------------------------------------------------------------------

    def summary(self, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
        """Total, count, per-month totals (oldest first) and newest leaf of the scope."""
        with self._engine.read() as tx:
            account = _account(tx, tenant_id, customer_id)
            if account is None:
                return ScopeSummary(0, 0, (), None)
            if scope.by_time:
                return _time_summary(tx, tenant_id, customer_id, scope)
            return _leaf_summary(tx, account, tenant_id, scope.min_leaf)

    # -- pages of deltas --------------------------------------------------------------------

    def page(
        self, tenant_id: str, customer_id: str, scope: Scope, limit: int, offset: int,
        descending: bool = False,
    ) -> list[DeltaRecord]:
        """``limit`` deltas of the scope from ``offset``, in leaf order (``occurred_at`` order
        for a date range that cuts through a month)."""
        with self._engine.read() as tx:
            account = _account(tx, tenant_id, customer_id)
            if account is None:
                return []
            if scope.by_time:
                whole = _whole_month(scope)
                if whole is not None:
                    return _month_page(tx, tenant_id, customer_id, whole, limit, offset, descending)
                order = "DESC" if descending else "ASC"
                rows = tx.execute(
                    f"""SELECT {_DELTA_COLUMNS} FROM deltas
                        WHERE tenant_id = ? AND customer_id = ? AND leaf_index IS NOT NULL
                          AND occurred_at >= ? AND occurred_at < ?
                        ORDER BY occurred_at {order}, leaf_index {order} LIMIT ? OFFSET ?""",
                    (tenant_id, customer_id, scope.start or _MIN_TIME, scope.end or _MAX_TIME,
                     limit, offset),
                )
                return [_delta(row) for row in rows]
            before_seq, _ = _before(tx, tenant_id, customer_id, scope.min_leaf)
            first, last = before_seq + 1, account.delta_count
            return _seq_page(tx, tenant_id, customer_id, "cust_seq", None, first, last, limit,
                             offset, descending)

    def newest(self, tenant_id: str, customer_id: str, leaf_index: int) -> DeltaRecord | None:
        with self._engine.read() as tx:
            row = tx.one(
                f"SELECT {_DELTA_COLUMNS} FROM deltas WHERE leaf_index = ? AND tenant_id = ? "
                "AND customer_id = ?",
                (leaf_index, tenant_id, customer_id),
            )
        return None if row is None else _delta(row)

    # -- compare's finder -------------------------------------------------------------------

    def by_amount(
        self, tenant_id: str, customer_id: str, scope: Scope, amount: int, limit: int
    ) -> list[DeltaRecord]:
        """In-scope deltas of exactly ``amount``, newest leaf first."""
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {_DELTA_COLUMNS} FROM deltas
                    WHERE tenant_id = ? AND customer_id = ? AND amount = ?
                      AND leaf_index IS NOT NULL AND leaf_index >= ?
                      AND occurred_at >= ? AND occurred_at < ?
                    ORDER BY leaf_index DESC LIMIT ?""",
                (tenant_id, customer_id, amount, scope.min_leaf, scope.start or _MIN_TIME,
                 scope.end or _MAX_TIME, limit),
            )
        return [_delta(row) for row in rows]

    def in_month(
        self, tenant_id: str, customer_id: str, scope: Scope, period: str, limit: int
    ) -> list[DeltaRecord]:
        """In-scope deltas of one month, newest leaf first."""
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {_DELTA_COLUMNS} FROM deltas
                    WHERE tenant_id = ? AND customer_id = ? AND period = ?
                      AND leaf_index IS NOT NULL AND leaf_index >= ?
                      AND occurred_at >= ? AND occurred_at < ?
                    ORDER BY month_seq DESC LIMIT ?""",
                (tenant_id, customer_id, period, scope.min_leaf, scope.start or _MIN_TIME,
                 scope.end or _MAX_TIME, limit),
            )
        return [_delta(row) for row in rows]


def _account_record(row: Row) -> AccountRecord:
    return AccountRecord(
        customer_id=str(row[0]), balance=int(row[1]), delta_count=int(row[2]),
        first_activity=str(row[3]), last_activity=str(row[4]), last_leaf_index=int(row[5]),
    )


def _account(tx: Tx, tenant_id: str, customer_id: str) -> AccountRecord | None:
    row = tx.one(
        """SELECT customer_id, balance, delta_count, first_activity, last_activity,
                  last_leaf_index FROM accounts WHERE tenant_id = ? AND customer_id = ?""",
        (tenant_id, customer_id),
    )
    return None if row is None else _account_record(row)


def _before(tx: Tx, tenant_id: str, customer_id: str, min_leaf: int) -> tuple[int, int]:
    """``(cust_seq, running_balance)`` of the customer's last delta before leaf ``min_leaf``."""
    if min_leaf <= 0:
        return 0, 0
    row = tx.one(
        """SELECT cust_seq, running_balance FROM deltas
           WHERE tenant_id = ? AND customer_id = ? AND leaf_index IS NOT NULL AND leaf_index < ?
           ORDER BY leaf_index DESC LIMIT 1""",
        (tenant_id, customer_id, min_leaf),
    )
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _months(tx: Tx, tenant_id: str, customer_id: str, first: str, last: str) -> list[MonthRecord]:
    rows = tx.execute(
        """SELECT period, credits, debits, delta_count FROM account_months
           WHERE tenant_id = ? AND customer_id = ? AND period >= ? AND period <= ?
           ORDER BY period""",
        (tenant_id, customer_id, first, last),
    )
    return [MonthRecord(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


def _leaf_summary(tx: Tx, account: AccountRecord, tenant_id: str, min_leaf: int) -> ScopeSummary:
    customer_id = account.customer_id
    before_seq, before_balance = _before(tx, tenant_id, customer_id, min_leaf)
    count = account.delta_count - before_seq
    total = account.balance - before_balance
    months = _months(tx, tenant_id, customer_id, _MIN_TIME, "9999-12")
    if before_seq > 0:
        trimmed: list[MonthRecord] = []
        for month in months:
            row = tx.one(
                """SELECT month_seq, month_credits, month_debits FROM deltas
                   WHERE tenant_id = ? AND customer_id = ? AND period = ?
                     AND leaf_index IS NOT NULL AND leaf_index < ?
                   ORDER BY month_seq DESC LIMIT 1""",
                (tenant_id, customer_id, month.period, min_leaf),
            )
            if row is None:
                trimmed.append(month)
            elif int(row[0]) < month.count:
                trimmed.append(MonthRecord(month.period, month.credits - int(row[1]),
                                           month.debits - int(row[2]), month.count - int(row[0])))
        months = trimmed
    newest = account.last_leaf_index if count > 0 else None
    return ScopeSummary(total=total, count=count, months=tuple(months), newest_leaf=newest)


def _whole_month(scope: Scope) -> str | None:
    """The period when the scope's bounds are exactly one calendar month."""
    if scope.start is None or scope.end is None:
        return None
    period = scope.start[:7]
    if scope.start == month_start(period) and scope.end == month_start(next_period(period)):
        return period
    return None


def _time_summary(tx: Tx, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
    start = scope.start or _MIN_TIME
    end = scope.end or _MAX_TIME
    months: list[MonthRecord] = []
    newest: int | None = None
    for month in _months(tx, tenant_id, customer_id, start[:7], end[:7]):
        lower, upper = month_start(month.period), month_start(next_period(month.period))
        if start <= lower and upper <= end:
            months.append(month)
            row = tx.one(
                """SELECT leaf_index FROM deltas WHERE tenant_id = ? AND customer_id = ?
                   AND period = ? AND leaf_index IS NOT NULL ORDER BY month_seq DESC LIMIT 1""",
                (tenant_id, customer_id, month.period),
            )
            last = None if row is None else int(row[0])
        else:
            row = tx.one(
                """SELECT COUNT(*), COALESCE(SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END), 0),
                          COALESCE(SUM(CASE WHEN amount < 0 THEN amount ELSE 0 END), 0),
                          MAX(leaf_index)
                   FROM deltas WHERE tenant_id = ? AND customer_id = ? AND leaf_index IS NOT NULL
                     AND occurred_at >= ? AND occurred_at < ?""",
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
    tx: Tx, tenant_id: str, customer_id: str, period: str, limit: int, offset: int,
    descending: bool,
) -> list[DeltaRecord]:
    count = tx.scalar(
        "SELECT delta_count FROM account_months WHERE tenant_id = ? AND customer_id = ? AND period = ?",
        (tenant_id, customer_id, period),
    )
    if count is None:
        return []
    return _seq_page(tx, tenant_id, customer_id, "month_seq", period, 1, int(count), limit, offset,
                     descending)


def _seq_page(
    tx: Tx, tenant_id: str, customer_id: str, column: str, period: str | None, first: int,
    last: int, limit: int, offset: int, descending: bool,
) -> list[DeltaRecord]:
    """Deltas whose ``column`` (cust_seq or month_seq) is in the page's slice of [first, last]."""
    if descending:
        high = last - offset
        low = max(first, high - limit + 1)
    else:
        low = first + offset
        high = min(last, low + limit - 1)
    if low > high:
        return []
    period_filter = "AND period = ?" if period is not None else ""
    params: list[object] = [tenant_id, customer_id]
    if period is not None:
        params.append(period)
    rows = tx.execute(
        f"""SELECT {_DELTA_COLUMNS} FROM deltas
            WHERE tenant_id = ? AND customer_id = ? {period_filter} AND leaf_index IS NOT NULL
              AND {column} BETWEEN ? AND ?
            ORDER BY {column} {"DESC" if descending else "ASC"}""",
        [*params, low, high],
    )
    return [_delta(row) for row in rows]
