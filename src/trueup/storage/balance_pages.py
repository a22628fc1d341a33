"""Pages of a customer's verified deltas, each a walk of one of the per-customer indexes: the
whole history by ``cust_seq``, one month by its own index from the page's position in the month
(``month_seq``), a time range by ``occurred_at``; and the deltas compare's search and a period's
proof read.
"""

from __future__ import annotations

from trueup.core.periods import next_period, period_end
from trueup.core.timestamps import MAX_TIME, MIN_TIME
from trueup.storage.balance_records import (
    ACCOUNT_NO_SQL,
    CUSTOMER_SQL,
    DeltaRecord,
    FinderRow,
    Scope,
    month_start,
)
from trueup.storage.balance_totals import read_account, read_months
from trueup.storage.engine import Row, Tx

__all__ = [
    "read_by_amount",
    "read_in_month",
    "read_page",
    "read_period_leaf_hashes",
    "read_period_page",
    "read_period_span",
]

_FINDER_COLUMNS = "leaf_index, amount, period, occurred_at, reason"
_DELTA_COLUMNS = """leaf_index, amount, reason, occurred_at, period, item_key, metadata, salt,
    verified_at, request_id, item_index"""


def _delta(row: Row) -> DeltaRecord:
    # Columns come back typed from both drivers; only BLOB/BYTEA needs normalising.
    return DeltaRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]), row[8], row[9], row[10]
    )


def read_page(
    tx: Tx,
    tenant_id: str,
    customer_id: str,
    scope: Scope,
    limit: int,
    offset: int,
    descending: bool = False,
) -> list[DeltaRecord]:
    """``limit`` deltas of the scope from ``offset``, in leaf order; for a time range other
    than one whole month (``asOf``, a date range), in ``occurred_at`` order, then leaf order."""
    account = read_account(tx, tenant_id, customer_id)
    if account is None:
        return []
    order = "DESC" if descending else "ASC"
    if scope.by_time:
        whole = _whole_month(scope)
        if whole is not None:
            return _month_page(tx, tenant_id, customer_id, whole, limit, offset, descending)
        rows = tx.execute(
            f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL}
                  AND occurred_at >= ? AND occurred_at < ?
                ORDER BY occurred_at {order}, leaf_index {order} LIMIT ? OFFSET ?""",
            (tenant_id, customer_id, scope.start or MIN_TIME, scope.end or MAX_TIME, limit, offset),
        )
        return [_delta(row) for row in rows]
    if scope.after_period is not None:
        # The union "sealed after the head, or of a later period" starts no earlier than
        # the first delta of a later month; scan from there.
        lower = min([scope.min_leaf, *_first_leaves_after(tx, tenant_id, customer_id, scope.after_period)])
        condition, params = scope.sql()
        rows = tx.execute(
            f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL} AND leaf_index >= ?
                  AND {condition} ORDER BY leaf_index {order} LIMIT ? OFFSET ?""",
            (tenant_id, customer_id, lower, *params, limit, offset),
        )
        return [_delta(row) for row in rows]
    before = tx.one(
        f"""SELECT cust_seq FROM deltas WHERE {CUSTOMER_SQL} AND leaf_index < ?
            ORDER BY leaf_index DESC LIMIT 1""",
        (tenant_id, customer_id, scope.min_leaf),
    )
    first = 1 + (0 if before is None else int(before[0]))
    return _seq_page(tx, tenant_id, customer_id, first, account.delta_count, limit, offset, descending)


def read_by_amount(
    tx: Tx, tenant_id: str, customer_id: str, scope: Scope, amount: int, limit: int
) -> list[FinderRow]:
    """In-scope deltas of exactly ``amount``, newest leaf first."""
    condition, params = scope.sql()
    rows = tx.execute(
        f"""SELECT {_FINDER_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL} AND amount = ?
              AND {condition} ORDER BY leaf_index DESC LIMIT ?""",
        (tenant_id, customer_id, amount, *params, limit),
    )
    return [FinderRow(*row) for row in rows]


def read_in_month(
    tx: Tx, tenant_id: str, customer_id: str, scope: Scope, period: str, limit: int
) -> list[FinderRow]:
    """In-scope deltas of one month, newest leaf first."""
    condition, params = scope.sql()
    rows = tx.execute(
        f"""SELECT {_FINDER_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL} AND period = ?
              AND {condition} ORDER BY leaf_index DESC LIMIT ?""",
        (tenant_id, customer_id, period, *params, limit),
    )
    return [FinderRow(*row) for row in rows]


def read_period_leaf_hashes(tx: Tx, tenant_id: str, customer_id: str, period: str) -> list[bytes]:
    """Leaf hashes of a customer-month's sealed deltas, in leaf order."""
    rows = tx.execute(
        f"""SELECT n.hash FROM deltas d JOIN tree_nodes n ON n.level = 0 AND n.idx = d.leaf_index
            WHERE d.account_no = {ACCOUNT_NO_SQL} AND d.period = ?
              AND d.leaf_index IS NOT NULL ORDER BY d.leaf_index""",
        (tenant_id, customer_id, period),
    )
    return [bytes(row[0]) for row in rows]


def read_period_page(
    tx: Tx, tenant_id: str, customer_id: str, period: str, limit: int, offset: int
) -> list[tuple[DeltaRecord, bytes]]:
    """A page of a customer-month's sealed deltas in leaf order, each with its leaf hash."""
    bound = _month_bound(tx, tenant_id, customer_id, period, offset, descending=False)
    if bound is None:
        return []
    condition, params, skip = bound
    columns = ", ".join("d." + c.strip() for c in _DELTA_COLUMNS.split(","))
    rows = tx.execute(
        f"""SELECT {columns}, n.hash FROM deltas d
            JOIN tree_nodes n ON n.level = 0 AND n.idx = d.leaf_index
            WHERE d.account_no = {ACCOUNT_NO_SQL} AND d.period = ?
              AND d.leaf_index IS NOT NULL {condition.replace("leaf_index", "d.leaf_index")}
            ORDER BY d.leaf_index LIMIT ? OFFSET ?""",
        (tenant_id, customer_id, period, *params, limit, skip),
    )
    return [(_delta(row[:-1]), bytes(row[-1])) for row in rows]


def read_period_span(tx: Tx, tenant_id: str, customer_id: str, period: str) -> tuple[str | None, str | None]:
    """The earliest and latest ``occurred_at`` of a customer-month's sealed deltas."""
    row = tx.one(
        f"SELECT MIN(occurred_at), MAX(occurred_at) FROM deltas WHERE {CUSTOMER_SQL} AND period = ?",
        (tenant_id, customer_id, period),
    )
    return (None, None) if row is None else (row[0], row[1])


def _first_leaves_after(tx: Tx, tenant_id: str, customer_id: str, period: str) -> list[int]:
    leaves: list[int] = []
    if period == "9999-12":  # the last month there is
        return leaves
    for month in read_months(tx, tenant_id, customer_id, next_period(period), "9999-12"):
        row = tx.one(
            f"""SELECT leaf_index FROM deltas WHERE {CUSTOMER_SQL} AND period = ?
                ORDER BY leaf_index LIMIT 1""",
            (tenant_id, customer_id, month.period),
        )
        if row is not None:
            leaves.append(int(row[0]))
    return leaves


def _month_page(
    tx: Tx,
    tenant_id: str,
    customer_id: str,
    period: str,
    limit: int,
    offset: int,
    descending: bool,
) -> list[DeltaRecord]:
    """A page of one month in leaf order: a walk of the month's own index (no sort), from the
    page's position (:func:`_month_bound`)."""
    bound = _month_bound(tx, tenant_id, customer_id, period, offset, descending)
    if bound is None:
        return []
    condition, params, skip = bound
    rows = tx.execute(
        f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL} AND period = ? {condition}
            ORDER BY leaf_index {"DESC" if descending else "ASC"} LIMIT ? OFFSET ?""",
        (tenant_id, customer_id, period, *params, limit, skip),
    )
    return [_delta(row) for row in rows]


STEP_OVER_AT_MOST = 1_000
"""The largest offset into a month that a page steps over in the index (about 45 µs on SQLite);
past it the page's first delta is searched for by position."""

_LAST_LEAF = 2**63 - 1


def _month_bound(
    tx: Tx, tenant_id: str, customer_id: str, period: str, offset: int, descending: bool
) -> tuple[str, tuple[int, ...], int] | None:
    """Where a month page starts: ``(condition on leaf_index, its parameters, rows to skip)``
    for the page's query; None past the month's end.

    Up to :data:`STEP_OVER_AT_MOST` deltas are stepped over in the month's index by the page's
    own query (``OFFSET``). Past that, the page's first delta is found by its ``month_seq`` (its
    1-based position in the month, which grows with the leaf index), by
    :func:`_leaf_at_position`, and the page starts at its leaf: stepping over a million index
    entries took about 45 ms on SQLite, the search a few index seeks.
    """
    if offset <= STEP_OVER_AT_MOST:
        return "", (), offset
    months = read_months(tx, tenant_id, customer_id, period, period)
    count = months[0].count if months else 0
    position = count - offset if descending else offset + 1
    if not 1 <= position <= count:
        return None
    start = _leaf_at_position(tx, tenant_id, customer_id, period, position)
    return f"AND leaf_index {'<=' if descending else '>='} ?", (start,), 0


def _leaf_at_position(tx: Tx, tenant_id: str, customer_id: str, period: str, position: int) -> int:
    """The leaf index of the month's delta whose ``month_seq`` is ``position`` (which exists).

    A search over leaf indexes between two known deltas of the month, the lower before the
    target and the upper after it. Each step reads the first delta at or after a guessed leaf:
    its ``month_seq`` tells on which side of it the target is. Guesses alternate between
    interpolating (a month's deltas are spread fairly evenly over the log, so this usually lands
    within a few deltas) and halving (so a lopsided month still takes at most about twice
    log2(leaves) steps). Every step narrows the open interval of leaves the target is in, so the
    search ends.
    """
    probe = f"""SELECT leaf_index, month_seq FROM deltas WHERE {CUSTOMER_SQL} AND period = ?
                  AND leaf_index {{}} ? ORDER BY leaf_index {{}} LIMIT 1"""
    first = tx.one(probe.format(">=", "ASC"), (tenant_id, customer_id, period, 0))
    last = tx.one(probe.format("<=", "DESC"), (tenant_id, customer_id, period, _LAST_LEAF))
    assert first is not None, "the month has the delta at this position"
    assert last is not None, "the month has the delta at this position"
    low_leaf, low_seq = int(first[0]), int(first[1])  # the target is at or after this leaf
    high_leaf, high_seq = int(last[0]), int(last[1])  # and at or before this one
    interpolate = True
    while True:
        if low_seq == position:
            return low_leaf
        if high_seq == position:
            return high_leaf
        # low_seq < position < high_seq: the target lies strictly between the two leaves.
        if interpolate:
            share = (position - low_seq) / (high_seq - low_seq)
            guess = low_leaf + int(share * (high_leaf - low_leaf))
        else:
            guess = (low_leaf + high_leaf) // 2
        guess = min(max(guess, low_leaf + 1), high_leaf)
        interpolate = not interpolate
        row = tx.one(probe.format(">=", "ASC"), (tenant_id, customer_id, period, guess))
        assert row is not None, "high_leaf is at or after guess"
        leaf, seq = int(row[0]), int(row[1])
        if seq <= position:
            low_leaf, low_seq = leaf, seq
        else:
            # No delta of the month lies in [guess, leaf), so the target is before guess: the
            # month's last delta before it is the new upper bound.
            row = tx.one(probe.format("<", "DESC"), (tenant_id, customer_id, period, guess))
            assert row is not None, "low_leaf is before guess"
            high_leaf, high_seq = int(row[0]), int(row[1])


def _seq_page(
    tx: Tx,
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
    rows = tx.execute(
        f"""SELECT {_DELTA_COLUMNS} FROM deltas WHERE {CUSTOMER_SQL} AND cust_seq BETWEEN ? AND ?
            ORDER BY cust_seq {"DESC" if descending else "ASC"}""",
        (tenant_id, customer_id, low, high),
    )
    return [_delta(row) for row in rows]


def _whole_month(scope: Scope) -> str | None:
    """The period when the scope's bounds are exactly one calendar month."""
    if scope.start is None or scope.end is None:
        return None
    period = scope.start[:7]
    if scope.start == month_start(period) and scope.end == period_end(period):
        return period
    return None
