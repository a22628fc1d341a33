"""Period checkpoints: locking a customer-month under a proof root.

Locking runs in one write transaction serialised with sealing, so the figures it records are
exactly those of the deltas sealed before the head it binds to, and no delta of the period
can be sealed after it (the sequencer fails such deltas).
"""

from __future__ import annotations

from trueup.core.errors import ConflictError
from trueup.core.json_text import quoted
from trueup.proof import period_proof_root
from trueup.storage.balance_records import ACCOUNT_NO_SQL, MonthRecord
from trueup.storage.balances import BalanceSnapshot
from trueup.storage.engine import INT64_MAX, INT64_MIN, INT64_RANGE, Engine, Tx
from trueup.storage.heads import latest_head
from trueup.storage.locks import (
    CHECKPOINT_COLUMNS,
    CheckpointRecord,
    checkpoint_from_row,
    count_lock,
    lock_count,
    read_checkpoint,
    read_checkpoint_by_root,
)
from trueup.storage.outbox import enqueue_checkpoint_event
from trueup.storage.schema import CLOSED_MONTHS_FROM

__all__ = ["CheckpointRecord", "CheckpointStore", "period_proof_root"]


def _sealed_since(tx: Tx, tenant_id: str, customer_id: str, period: str, tree_size: int) -> bool:
    """Whether a delta of the customer's ``period`` or of a month before it (which its opening
    balance sums) was sealed at or after leaf ``tree_size``."""
    row = tx.one(
        f"""SELECT 1 FROM deltas WHERE account_no = {ACCOUNT_NO_SQL}
              AND period <= ? AND leaf_index IS NOT NULL AND leaf_index >= ? LIMIT 1""",
        (tenant_id, customer_id, period, tree_size),
    )
    return row is not None


_SNAPSHOT_TRIES = 3
"""Locks computed beside the sealer before one is computed holding the seal's turn."""


_Figures = tuple[int, int, MonthRecord, list[bytes]]


def _check_opening(customer_id: str, period: str, opening: int) -> None:
    """A 409 for an opening balance the checkpoint cannot store (a 64-bit integer).

    Sealing keeps each running balance within 64 bits in leaf order, but the months before a
    period summed in month order can pass it (large credits of early months sealed between
    large debits of later ones).
    """
    if not INT64_MIN <= opening <= INT64_MAX:
        raise ConflictError(
            f"period: the balance of customer {quoted(customer_id)} before {period} is {opening:,}, beyond "
            f"the 64-bit range ({INT64_RANGE}) a checkpoint's openingBalance is "
            "stored in; this period cannot be locked"
        )


def _read_figures(tx: Tx, tenant_id: str, customer_id: str, period: str) -> _Figures:
    """The period as of the newest signed head ``tx`` sees: that head's size, the opening
    balance, the month's figures and its leaf hashes."""
    head = latest_head(tx)
    tree_size = 0 if head is None else head.size
    snapshot = BalanceSnapshot(tx)
    figures = snapshot.checkpoint_figures(tenant_id, customer_id, period, tree_size)
    return (
        tree_size,
        figures.opening,
        figures.month,
        snapshot.period_leaf_hashes(tenant_id, customer_id, period),
    )


def _record_lock(tx: Tx, record: CheckpointRecord) -> None:
    """Store ``record``, count the lock (the sequencer's fence) and queue its event."""
    tx.execute(
        f"INSERT INTO period_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ({', '.join('?' * 12)})",
        (
            record.id,
            record.tenant_id,
            record.customer_id,
            record.period,
            record.proof_root,
            record.nonce,
            record.tree_size,
            record.opening_balance,
            record.credits,
            record.debits,
            record.deltas_count,
            record.created_at,
        ),
    )
    count_lock(tx)
    enqueue_checkpoint_event(tx, record)


class CheckpointStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def lock(
        self,
        checkpoint_id: str,
        tenant_id: str,
        customer_id: str,
        period: str,
        nonce: bytes,
        created_at: str,
    ) -> tuple[CheckpointRecord, bool]:
        """Lock the period (or return its existing lock); ``True`` when newly created.

        The figures and the proof root are computed from a read snapshot, outside the single
        writer, then recorded in a short write transaction (serialised with sealing) if no
        delta of the period was sealed since that snapshot; otherwise computed again. A period
        that keeps growing meanwhile (late deltas streaming into it, each seal adding some) has
        its figures computed inside the write transaction instead, holding the seal's turn, so
        that no seal can pass the lock and it is always taken.
        """

        def record_of(figures: _Figures) -> CheckpointRecord:
            tree_size, opening, month, hashes = figures
            _check_opening(customer_id, period, opening)
            return CheckpointRecord(
                id=checkpoint_id,
                tenant_id=tenant_id,
                customer_id=customer_id,
                period=period,
                proof_root=period_proof_root(nonce, hashes),
                nonce=nonce,
                tree_size=tree_size,
                opening_balance=opening,
                credits=month.credits,
                debits=month.debits,
                deltas_count=month.count,
                created_at=created_at,
            )

        for attempt in range(_SNAPSHOT_TRIES + 1):
            holding_the_turn = attempt == _SNAPSHOT_TRIES  # the last try: no seal can pass it
            if not holding_the_turn:
                with self._engine.read() as tx:
                    existing = self._find(tx, tenant_id, customer_id, period)
                    if existing is not None:
                        return existing, False
                    figures = _read_figures(tx, tenant_id, customer_id, period)
                record = record_of(figures)  # hashed after the snapshot ends, not holding it
            with self._engine.write() as tx:
                self._engine.serialize(tx, "seal")
                existing = self._find(tx, tenant_id, customer_id, period)
                if existing is not None:
                    return existing, False
                if holding_the_turn:
                    record = record_of(_read_figures(tx, tenant_id, customer_id, period))
                elif _sealed_since(tx, tenant_id, customer_id, period, record.tree_size):
                    continue  # the period grew while we computed: compute again
                _record_lock(tx, record)
            return record, True
        raise AssertionError("unreachable: the last try always returns")

    def _find(self, tx: Tx, tenant_id: str, customer_id: str, period: str) -> CheckpointRecord | None:
        row = tx.one(
            f"SELECT {CHECKPOINT_COLUMNS} FROM period_checkpoints WHERE tenant_id = ? AND customer_id = ? "
            "AND period = ?",
            (tenant_id, customer_id, period),
        )
        return None if row is None else checkpoint_from_row(row)

    def find(self, tenant_id: str, customer_id: str, period: str) -> CheckpointRecord | None:
        with self._engine.read() as tx:
            return self._find(tx, tenant_id, customer_id, period)

    def get(self, tenant_id: str, checkpoint_id: str) -> CheckpointRecord | None:
        with self._engine.read() as tx:
            return read_checkpoint(tx, tenant_id, checkpoint_id)

    def by_root(self, root: bytes, tenant_id: str | None = None) -> CheckpointRecord | None:
        """The checkpoint with this proof root (of ``tenant_id`` when given)."""
        with self._engine.read() as tx:
            return read_checkpoint_by_root(tx, root, tenant_id)

    def every(self, after: tuple[str, str, str] | None, limit: int) -> list[CheckpointRecord]:
        """Every tenant's checkpoints after ``(tenant, customer, period)`` ``after``, in that
        order (for audits; :class:`MalformedRowError` for a value of the wrong kind)."""
        where, params = "", tuple[str, ...]()
        if after is not None:
            where = "WHERE (tenant_id, customer_id, period) > (?, ?, ?)"
            params = after
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {CHECKPOINT_COLUMNS} FROM period_checkpoints {where}
                    ORDER BY tenant_id, customer_id, period LIMIT ?""",
                (*params, limit),
            )
        return [checkpoint_from_row(row) for row in rows]

    def locks_taken(self) -> int:
        """How many period locks were ever taken, by the counter each lock adds to (those taken
        before schema version 6 were counted by migration 10)."""
        with self._engine.read() as tx:
            return lock_count(tx)

    def closed_months_checked_from(self) -> int:
        """The tree size from which every seal kept out the deltas of months closed by a later
        lock (migration 16: where the log was at the upgrade; 0 for a database begun since)."""
        with self._engine.read() as tx:
            value = tx.scalar("SELECT value FROM counters WHERE name = ?", (CLOSED_MONTHS_FROM,))
        return 0 if value is None else int(value)

    def list(
        self,
        tenant_id: str,
        customer_id: str | None,
        months: tuple[str, str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[CheckpointRecord], int]:
        """A page of the tenant's locks (one customer's, or all) and their count, by customer
        then period; ``months``: only periods from the first to the last, inclusive."""
        where = "tenant_id = ?"
        params: list[object] = [tenant_id]
        if customer_id is not None:
            where += " AND customer_id = ?"
            params.append(customer_id)
        if months is not None:
            where += " AND period BETWEEN ? AND ?"
            params.extend(months)
        with self._engine.read() as tx:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM period_checkpoints WHERE {where}", params))
            rows = tx.execute(
                f"""SELECT {CHECKPOINT_COLUMNS} FROM period_checkpoints WHERE {where}
                    ORDER BY customer_id, period LIMIT ? OFFSET ?""",
                [*params, limit, offset],
            )
        return [checkpoint_from_row(row) for row in rows], total
