"""The balances a seal stores: each sealed delta's running figures (its account's ``cust_seq``
and ``running_balance``, its month's ``month_seq``, ``month_credits`` and ``month_debits``), and
the ``accounts`` and ``account_months`` rows they leave.

:func:`plan_balances` works them out from a snapshot at the size the seal was planned from,
before the seal takes the writer; :func:`write_balances` writes them inside the seal's
transaction (:mod:`trueup.storage.seal`). A delta that would take a figure beyond 64 bits is
named in :class:`BalanceOverflowError` instead, so the sequencer can fail just that delta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from trueup.storage.engine import INT64_MAX, INT64_MIN, INT64_RANGE, Tx
from trueup.storage.errors import SealConflictError, StorageError

if TYPE_CHECKING:
    from trueup.storage.seal import QueuedDelta, SealPlan

__all__ = ["BalanceOverflowError", "plan_balances", "write_balances"]

_VALUES_CHUNK = 300


class BalanceOverflowError(StorageError):
    """Sealing some of a plan's deltas would take a figure stored with them (an account's
    running balance, a month's credits or debits) beyond 64 bits. Nothing was written;
    ``reasons`` (by ``seq``) says which deltas and why, so the sequencer can fail just those
    and seal the rest: one account's figures never stop the log."""

    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__(f"{len(reasons)} deltas would take a running figure beyond 64 bits")
        self.reasons = reasons


# What sealing writes into a delta's row (with PostgreSQL's types, see Tx.update_rows).
_SEALED_COLUMNS = {
    "status": "text",
    "leaf_index": "bigint",
    "sealed_size": "bigint",
    "verified_at": "text",
    "cust_seq": "bigint",
    "running_balance": "bigint",
    "month_seq": "bigint",
    "month_credits": "bigint",
    "month_debits": "bigint",
    "account_no": "bigint",
}
_ACCOUNT_COLUMNS = {
    "tenant_id": "text",
    "customer_id": "text",
    "balance": "bigint",
    "delta_count": "bigint",
    "first_activity": "text",
    "last_activity": "text",
    "last_leaf_index": "bigint",
    "account_no": "bigint",
}
_MONTH_COLUMNS = {
    "tenant_id": "text",
    "customer_id": "text",
    "period": "text",
    "credits": "bigint",
    "debits": "bigint",
    "delta_count": "bigint",
}


@dataclass(slots=True)
class _Account:
    balance: int
    count: int
    first_activity: str
    number: int
    """``account_no``: what the per-customer indexes of ``deltas`` are keyed by."""


@dataclass(frozen=True, slots=True)
class _BalanceWrites:
    """The rows a seal writes into ``deltas`` (``_SEALED_COLUMNS``, in account order),
    ``accounts`` and ``account_months``, worked out before the seal takes the writer."""

    deltas: list[tuple[object, ...]]
    accounts: list[tuple[object, ...]]
    months: list[tuple[object, ...]]


def plan_balances(tx: Tx, plan: SealPlan) -> _BalanceWrites:
    """Each sealed delta's leaf and its customer's running figures (worked out in leaf order,
    written in account order), from the accounts as they stand at ``plan.previous_size``."""
    if not plan.leaves:
        return _BalanceWrites([], [], [])
    customers = list(dict.fromkeys((d.tenant_id, d.customer_id) for d in plan.leaves))
    months = list(dict.fromkeys((d.tenant_id, d.customer_id, d.period) for d in plan.leaves))
    accounts: dict[tuple[str, str], _Account] = {}
    for relation, params in tx.relations(customers, ("text", "text"), _VALUES_CHUNK):
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, balance, delta_count, first_activity, account_no
                FROM {relation}
                JOIN accounts a ON a.tenant_id = w.column1 AND a.customer_id = w.column2""",
            params,
        )
        for tenant_id, customer_id, balance, count, first, number in rows:
            if number is None:
                raise StorageError(
                    f"account {customer_id!r} has no account number: a Trueup older than schema "
                    "version 7 sealed it beside this one; stop it, then run `trueup audit`"
                )
            accounts[(tenant_id, customer_id)] = _Account(int(balance), int(count), str(first), int(number))
    # A new customer's account takes the next number. Only a seal that adds leaves opens
    # accounts, and this seal's write goes ahead only if the log is still at this snapshot's
    # size, so no other seal can have taken these numbers meanwhile (the unique index on
    # accounts.account_no would refuse the seal if one had).
    opened = [customer for customer in customers if customer not in accounts]
    if opened:
        last = int(tx.scalar("SELECT COALESCE(MAX(account_no), 0) FROM accounts"))
        for number, customer in enumerate(opened, start=last + 1):
            accounts[customer] = _Account(0, 0, plan.verified_at, number)
    month_rows: dict[tuple[str, str, str], list[int]] = {}
    for relation, params in tx.relations(months, ("text", "text", "text"), _VALUES_CHUNK // 2):
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, period, credits, debits, delta_count
                FROM {relation} JOIN account_months m ON m.tenant_id = w.column1
                     AND m.customer_id = w.column2 AND m.period = w.column3""",
            params,
        )
        for tenant_id, customer_id, period, credits, debits, count in rows:
            month_rows[(tenant_id, customer_id, period)] = [int(credits), int(debits), int(count)]

    updates: list[tuple[object, ...]] = []
    last_leaf: dict[tuple[str, str], int] = {}
    beyond: dict[int, str] = {}
    for offset, delta in enumerate(plan.leaves):
        account = accounts[(delta.tenant_id, delta.customer_id)]
        month = month_rows.setdefault((delta.tenant_id, delta.customer_id, delta.period), [0, 0, 0])
        side = 0 if delta.amount > 0 else 1  # credits, debits
        account.balance += delta.amount
        month[side] += delta.amount
        if not (INT64_MIN <= account.balance <= INT64_MAX and INT64_MIN <= month[side] <= INT64_MAX):
            beyond[delta.seq] = _overflow_reason(delta, account.balance, side)
            # Left out of the figures, as it will be left out of the seal: the deltas after it
            # are judged by the figures they will really have.
            account.balance -= delta.amount
            month[side] -= delta.amount
            continue
        account.count += 1
        month[2] += 1
        leaf = plan.previous_size + offset
        last_leaf[(delta.tenant_id, delta.customer_id)] = leaf
        updates.append(
            (
                delta.seq,
                "verified",
                leaf,
                plan.head.size,
                plan.verified_at,
                account.count,
                account.balance,
                month[2],
                month[0],
                month[1],
                account.number,
            )
        )
    if beyond:
        raise BalanceOverflowError(beyond)
    # The deltas' rows in account order (then leaf order), not the log's, sorted here, before the
    # seal takes the writer (about 19 ms for 16,000 rows): each row adds an entry to the five
    # per-account indexes, and consecutive entries of one account land in the same index pages,
    # still at hand. On SQLite a seal of 16,000 deltas over 1,000 customers spent 15-21 µs a
    # delta in the UPDATE instead of 32-37; PostgreSQL, which joins the rows, did not change.
    return _BalanceWrites(
        deltas=sorted(updates, key=_account_then_leaf),
        accounts=[
            (
                t,
                c,
                acc.balance,
                acc.count,
                acc.first_activity,
                plan.verified_at,
                last_leaf[(t, c)],
                acc.number,
            )
            for (t, c), acc in accounts.items()
            if (t, c) in last_leaf
        ],
        months=[(t, c, p, v[0], v[1], v[2]) for (t, c, p), v in month_rows.items()],
    )


def _overflow_reason(delta: QueuedDelta, balance: int, side: int) -> str:
    """Why ``delta`` fails: which of its account's figures it would take beyond 64 bits."""
    if INT64_MIN <= balance <= INT64_MAX:
        figure = f"the {('credits', 'debits')[side]} of {delta.period}"
    else:
        figure = "the balance"
    return (
        f"it would take {figure} of account {delta.customer_id} beyond the 64-bit range "
        f"({INT64_RANGE}); post a smaller amount under a new key (this one stays with the "
        "failed delta)"
    )


# Where a row of _BalanceWrites.deltas holds them: (seq, *the values of _SEALED_COLUMNS).
_ROW_LEAF = 1 + list(_SEALED_COLUMNS).index("leaf_index")
_ROW_ACCOUNT = 1 + list(_SEALED_COLUMNS).index("account_no")


def _account_then_leaf(row: tuple[object, ...]) -> tuple[int, int]:
    """Sort key of a row of ``_BalanceWrites.deltas``: its account number, then its leaf."""
    return cast(int, row[_ROW_ACCOUNT]), cast(int, row[_ROW_LEAF])


def write_balances(tx: Tx, writes: _BalanceWrites) -> None:
    # Only a queued delta becomes a leaf: were one sealed or failed already, the seal would give
    # it a second leaf (or a leaf to a refused delta), so it is refused whole instead.
    updated = tx.update_rows("deltas", "seq", _SEALED_COLUMNS, writes.deltas, only_if="status = 'queued'")
    if updated != len(writes.deltas):
        raise SealConflictError(
            f"{len(writes.deltas) - updated} of the {len(writes.deltas)} deltas of this seal "
            "are no longer queued"
        )
    tx.upsert_rows(
        "accounts",
        ("tenant_id", "customer_id"),
        _ACCOUNT_COLUMNS,
        ("balance", "delta_count", "last_activity", "last_leaf_index"),
        writes.accounts,
    )
    tx.upsert_rows(
        "account_months",
        ("tenant_id", "customer_id", "period"),
        _MONTH_COLUMNS,
        ("credits", "debits", "delta_count"),
        writes.months,
    )
