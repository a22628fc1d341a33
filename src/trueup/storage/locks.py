"""Period checkpoints as read inside a transaction: the checkpoints themselves, and which
customer-months they close (a lock's own month and every month before it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from trueup.storage.checked_rows import CheckedRow
from trueup.storage.engine import Row, Tx

__all__ = [
    "CHECKPOINT_COLUMNS",
    "CheckpointRecord",
    "ClosingLock",
    "checkpoint_from_row",
    "closed_by",
    "count_lock",
    "lock_count",
    "locked_periods",
    "read_checkpoint",
    "read_checkpoint_by_root",
]


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    id: str
    tenant_id: str
    customer_id: str
    period: str
    proof_root: bytes
    nonce: bytes
    tree_size: int
    opening_balance: int
    credits: int
    debits: int
    deltas_count: int
    created_at: str

    @property
    def net(self) -> int:
        return self.credits + self.debits

    @property
    def closing_balance(self) -> int:
        return self.opening_balance + self.net


CHECKPOINT_COLUMNS = """id, tenant_id, customer_id, period, proof_root, nonce, tree_size, opening_balance,
    credits, debits, deltas_count, created_at"""


def checkpoint_from_row(raw: Row) -> CheckpointRecord:
    """A ``period_checkpoints`` row (:data:`CHECKPOINT_COLUMNS`), each value checked for its
    kind (:class:`~trueup.storage.checked_rows.MalformedRowError` naming the checkpoint)."""
    row = CheckedRow(raw, f"period checkpoint {raw[0]!r:.60}")
    return CheckpointRecord(
        id=row.get(0, "id", str),
        tenant_id=row.get(1, "tenant_id", str),
        customer_id=row.get(2, "customer_id", str),
        period=row.get(3, "period", str),
        proof_root=row.get(4, "proof_root", bytes),
        nonce=row.get(5, "nonce", bytes),
        tree_size=row.get(6, "tree_size", int),
        opening_balance=row.get(7, "opening_balance", int),
        credits=row.get(8, "credits", int),
        debits=row.get(9, "debits", int),
        deltas_count=row.get(10, "deltas_count", int),
        created_at=row.get(11, "created_at", str),
    )


def read_checkpoint(tx: Tx, tenant_id: str, checkpoint_id: str) -> CheckpointRecord | None:
    """The tenant's checkpoint ``chk_…``, or ``None``."""
    row = tx.one(
        f"SELECT {CHECKPOINT_COLUMNS} FROM period_checkpoints WHERE id = ? AND tenant_id = ?",
        (checkpoint_id, tenant_id),
    )
    return None if row is None else checkpoint_from_row(row)


def read_checkpoint_by_root(tx: Tx, root: bytes, tenant_id: str | None = None) -> CheckpointRecord | None:
    """The checkpoint with this proof root (of ``tenant_id`` when given), or ``None``."""
    row = tx.one(f"SELECT {CHECKPOINT_COLUMNS} FROM period_checkpoints WHERE proof_root = ?", (root,))
    if row is None:
        return None
    record = checkpoint_from_row(row)
    return record if tenant_id is None or record.tenant_id == tenant_id else None


class ClosingLock(NamedTuple):
    """The lock that closes a customer-month: the checkpoint of that month, or of the earliest
    locked month after it (a lock closes the months before it too)."""

    checkpoint_id: str
    period: str


def locked_periods(tx: Tx, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], ClosingLock]:
    """Which of ``(tenant, customer, period)`` are closed, each with the lock that closes it.

    A month is closed by its own lock and by the lock of any later month of the customer: a lock's
    ``openingBalance`` sums the months before it, so a delta let into one of them afterwards would
    make that figure (and the receipt's ``startingBalance``) untrue for good. ``YYYY-MM`` text
    orders as the months do.
    """
    found: dict[tuple[str, str, str], ClosingLock] = {}
    for relation, params in tx.relations(list(dict.fromkeys(keys)), ("text", "text", "text"), 300):
        rows = tx.execute(
            f"""SELECT w.column1, w.column2, w.column3, c.id, c.period
                FROM {relation}
                JOIN period_checkpoints c ON c.id = (
                    SELECT p.id FROM period_checkpoints p
                    WHERE p.tenant_id = w.column1 AND p.customer_id = w.column2
                      AND p.period >= w.column3
                    ORDER BY p.period LIMIT 1)""",
            params,
        )
        for tenant_id, customer_id, period, checkpoint_id, locked in rows:
            found[(str(tenant_id), str(customer_id), str(period))] = ClosingLock(
                str(checkpoint_id), str(locked)
            )
    return found


def closed_by(lock: ClosingLock, period: str, *, past: bool = False) -> str:
    """How ``period`` is closed, to follow "period P of customer C": "is locked by checkpoint
    chk_…", or, for a month before the lock's, "is closed by checkpoint chk_…, the lock of
    YYYY-MM (…)". ``past``: "was", for a delta a seal fails."""
    verb = "was" if past else "is"
    if lock.period == period:
        return f"{verb} locked by checkpoint {lock.checkpoint_id}"
    return (
        f"{verb} closed by checkpoint {lock.checkpoint_id}, the lock of {lock.period} "
        "(a lock closes the months before it too)"
    )


def lock_count(tx: Tx) -> int:
    """How many period locks were ever taken (a version the sequencer compares)."""
    value = tx.scalar("SELECT value FROM counters WHERE name = 'period_locks'")
    return 0 if value is None else int(value)


def count_lock(tx: Tx) -> None:
    """Record one more period lock (inside the locking transaction)."""
    tx.execute(
        """INSERT INTO counters (name, value) VALUES ('period_locks', 1)
           ON CONFLICT (name) DO UPDATE SET value = counters.value + 1"""
    )
