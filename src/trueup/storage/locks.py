"""Which customer-months are locked by period checkpoints (read inside a transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from trueup.storage.engine import Tx

__all__ = ["count_lock", "lock_count", "locked_periods"]


def locked_periods(tx: Tx, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Which of ``(tenant, customer, period)`` are locked, with the locking checkpoint's id."""
    found: dict[tuple[str, str, str], str] = {}
    for relation, params in tx.relations(list(dict.fromkeys(keys)), ("text", "text", "text"), 300):
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, period, id FROM period_checkpoints
                JOIN {relation} ON tenant_id = w.column1 AND customer_id = w.column2
                     AND period = w.column3""",
            params,
        )
        for tenant_id, customer_id, period, checkpoint_id in rows:
            found[(str(tenant_id), str(customer_id), str(period))] = str(checkpoint_id)
    return found


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
