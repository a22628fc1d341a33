"""The Merkle log's storage: the queue of unsealed deltas, the signed heads and tree nodes
(read through :mod:`trueup.storage.heads`), and the sealed deltas and running totals an audit
re-checks.

Its writes, the first head and every seal, are :mod:`trueup.storage.seal`; the balances a seal
stores are :mod:`trueup.storage.seal_balances`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from trueup.storage.checked_rows import CheckedRow
from trueup.storage.engine import Engine, Row, Tx
from trueup.storage.heads import HeadRecord, head_at, head_by_root, head_from_row, latest_head, read_nodes
from trueup.storage.locks import ClosingLock, lock_count, locked_periods
from trueup.storage.seal import (
    QueuedDelta,
    SealOutcome,
    SealPlan,
    write_first_head,
    write_seal,
    write_waits_settled,
)

__all__ = ["AccountTotals", "LogStore", "SealedDelta", "queue_stats"]


class AccountTotals(NamedTuple):
    """An account's stored figures, as an audit re-checks them against its sealed deltas."""

    balance: int
    delta_count: int
    account_no: int | None
    last_leaf_index: int
    first_activity: str
    """``verifiedAt`` of the account's first delta (its seal's time)."""
    last_activity: str
    """``verifiedAt`` of its newest delta."""


@dataclass(frozen=True, slots=True)
class SealedDelta:
    """A sealed delta with the figures the sequencer stored for it (what an audit re-checks)."""

    leaf_index: int
    tenant_id: str
    customer_id: str
    key: str
    amount: int
    occurred_at: str
    period: str
    metadata: str | None
    salt: bytes
    status: str
    sealed_size: int
    cust_seq: int
    running_balance: int
    month_seq: int
    month_credits: int
    month_debits: int
    account_no: int | None
    verified_at: str


class LogStore:
    """Reads and appends the log."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- the queue --------------------------------------------------------------------------

    def queued(self, limit: int) -> list[QueuedDelta]:
        """The oldest ``limit`` unsealed deltas, in acceptance order."""
        with self._engine.read() as tx:
            rows = tx.execute_in_index_order(
                """SELECT seq, tenant_id, request_id, item_index, item_key, customer_id, amount,
                          reason, metadata, occurred_at, period, salt, accepted_at
                   FROM deltas WHERE status = 'queued' ORDER BY seq LIMIT ?""",
                (limit,),
            )
        # Both drivers return typed integers and text; only BLOB/BYTEA needs normalising.
        return [
            QueuedDelta(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bytes(r[11]), r[12]
            )
            for r in rows
        ]

    def period_locks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> tuple[dict[tuple[str, str, str], ClosingLock], int]:
        """Closed ``(tenant, customer, period)`` among ``keys`` with the lock closing each
        (:func:`~trueup.storage.locks.locked_periods`), and the number of locks."""
        with self._engine.read() as tx:
            return locked_periods(tx, keys), lock_count(tx)

    def queued_at_least(self, limit: int) -> int:
        """How many deltas are queued, counting no further than ``limit`` (a bounded cost)."""
        with self._engine.read() as tx:
            value = tx.scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM deltas WHERE status = 'queued' LIMIT ?) AS q",
                (limit,),
            )
        return int(value or 0)

    def queue_stats(self, wait_s: float | None = None) -> tuple[int, str | None]:
        """``(number of queued deltas, acceptance time of the oldest)``; ``wait_s`` bounds
        the wait for a pooled connection (:meth:`Engine.read`)."""
        with self._engine.read(wait_s) as tx:
            return queue_stats(tx)

    # -- heads and nodes --------------------------------------------------------------------

    def head(self, wait_s: float | None = None) -> HeadRecord | None:
        """The newest signed tree head, or ``None`` before the first one; ``wait_s`` bounds the
        wait for a pooled connection (:meth:`Engine.read`)."""
        with self._engine.read(wait_s) as tx:
            return latest_head(tx)

    def head_at(self, size: int) -> HeadRecord | None:
        with self._engine.read() as tx:
            return head_at(tx, size)

    def head_by_root(self, root: bytes) -> HeadRecord | None:
        """The head with this root (the largest, should a root ever repeat)."""
        with self._engine.read() as tx:
            return head_by_root(tx, root)

    def heads(self, after_size: int | None, limit: int) -> list[HeadRecord]:
        """Heads with ``size > after_size`` in size order (for audits); ``None``: from the first
        row, whatever its size (a row given a negative one included)."""
        after, params = ("", (limit,)) if after_size is None else ("WHERE tree_size > ?", (after_size, limit))
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT tree_size, root_hash, timestamp_ms, checkpoint FROM tree_heads
                   {after} ORDER BY tree_size LIMIT ?""",
                params,
            )
        return [head_from_row(row) for row in rows]

    def nodes(self, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored nodes by ``(level, index)``; missing ones are simply absent."""
        with self._engine.read() as tx:
            return read_nodes(tx, ids)

    def sealed(self, after_leaf: int | None, limit: int) -> list[SealedDelta]:
        """Verified deltas with ``leaf_index > after_leaf`` in leaf order (for audits); ``None``:
        from the first row with a leaf index, whatever it is (a negative one included).

        Raises :class:`~trueup.storage.checked_rows.MalformedRowError` naming the first row with a
        value of the wrong kind (a text amount, a missing running figure): an audit reads rows
        that may be tampered with.
        """
        after, params = ("", (limit,)) if after_leaf is None else ("AND leaf_index > ?", (after_leaf, limit))
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT leaf_index, tenant_id, customer_id, item_key, amount, occurred_at,
                          period, metadata, salt, status, sealed_size, cust_seq, running_balance,
                          month_seq, month_credits, month_debits, account_no, verified_at
                   FROM deltas WHERE leaf_index IS NOT NULL {after}
                   ORDER BY leaf_index LIMIT ?""",
                params,
            )
        return [_sealed_delta(row) for row in rows]

    def verified_without_leaf(self) -> tuple[str, int] | None:
        """The request id and item index of a delta stored as verified with no leaf index, if
        any (for audits: the seal that verifies a delta gives it its leaf in the same commit)."""
        with self._engine.read() as tx:
            row = tx.one(
                """SELECT request_id, item_index FROM deltas
                   WHERE status = 'verified' AND leaf_index IS NULL LIMIT 1"""
            )
        return None if row is None else (str(row[0]), int(row[1]))

    def node_count(self) -> int:
        """How many tree nodes are stored (for audits: a rebuilt tree of n leaves has the
        nodes of every perfect subtree, no more)."""
        with self._engine.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM tree_nodes") or 0)

    def account_totals(self) -> dict[tuple[str, str], AccountTotals]:
        """The stored figures of every account (for audits; :class:`MalformedRowError` for a
        value of the wrong kind)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                """SELECT tenant_id, customer_id, balance, delta_count, account_no, last_leaf_index,
                          first_activity, last_activity
                   FROM accounts"""
            )
        totals: dict[tuple[str, str], AccountTotals] = {}
        for raw in rows:
            row = CheckedRow(raw, f"account {raw[1]!r}")
            key = (row.get(0, "tenant_id", str), row.get(1, "customer_id", str))
            totals[key] = AccountTotals(
                row.get(2, "balance", int),
                row.get(3, "delta_count", int),
                row.maybe(4, "account_no", int),
                row.get(5, "last_leaf_index", int),
                row.get(6, "first_activity", str),
                row.get(7, "last_activity", str),
            )
        return totals

    def month_totals(self) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        """``(credits, debits, count)`` of every customer-month (for audits;
        :class:`MalformedRowError` for a value of the wrong kind)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                "SELECT tenant_id, customer_id, period, credits, debits, delta_count FROM account_months"
            )
        totals: dict[tuple[str, str, str], tuple[int, int, int]] = {}
        for raw in rows:
            row = CheckedRow(raw, f"account {raw[1]!r}, {raw[2]}")
            key = (row.get(0, "tenant_id", str), row.get(1, "customer_id", str), row.get(2, "period", str))
            totals[key] = (
                row.get(3, "credits", int),
                row.get(4, "debits", int),
                row.get(5, "delta_count", int),
            )
        return totals

    # -- sealing ----------------------------------------------------------------------------

    def store_first_head(self, head: HeadRecord, pepper_check: int | None = None) -> None:
        """Store the signed head of the empty tree and the key pepper's check value
        (:func:`trueup.storage.seal.write_first_head`)."""
        write_first_head(self._engine, head, pepper_check)

    def seal(self, plan: SealPlan) -> SealOutcome:
        """Append ``plan`` atomically (:func:`trueup.storage.seal.write_seal`)."""
        return write_seal(self._engine, plan)

    def settle_waits(self, head: HeadRecord, verified_at: str) -> SealOutcome | None:
        """Complete retried requests whose originals are settled, if a seal did not
        (:func:`trueup.storage.seal.write_waits_settled`)."""
        return write_waits_settled(self._engine, head, verified_at)


def _sealed_delta(raw: Row) -> SealedDelta:
    row = CheckedRow(raw, f"leaf a_{raw[0]}")
    get, maybe = row.get, row.maybe
    return SealedDelta(
        leaf_index=get(0, "leaf_index", int),
        tenant_id=get(1, "tenant_id", str),
        customer_id=get(2, "customer_id", str),
        key=get(3, "item_key", str),
        amount=get(4, "amount", int),
        occurred_at=get(5, "occurred_at", str),
        period=get(6, "period", str),
        metadata=maybe(7, "metadata", str),
        salt=get(8, "salt", bytes),
        status=get(9, "status", str),
        sealed_size=get(10, "sealed_size", int),
        cust_seq=get(11, "cust_seq", int),
        running_balance=get(12, "running_balance", int),
        month_seq=get(13, "month_seq", int),
        month_credits=get(14, "month_credits", int),
        month_debits=get(15, "month_debits", int),
        account_no=maybe(16, "account_no", int),
        verified_at=get(17, "verified_at", str),
    )


def queue_stats(tx: Tx) -> tuple[int, str | None]:
    """``(number of queued deltas, acceptance time of the oldest)``, read within ``tx``."""
    row = tx.one("SELECT COUNT(*), MIN(accepted_at) FROM deltas WHERE status = 'queued'")
    assert row is not None
    return int(row[0]), None if row[1] is None else str(row[1])
