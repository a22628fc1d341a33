"""Which customer-months are locked by period checkpoints (read inside a transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from trueup.storage.engine import Tx, chunks

__all__ = ["count_lock", "lock_count", "locked_periods"]


def locked_periods(tx: Tx, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Which of ``(tenant, customer, period)`` are locked, with the locking checkpoint's id."""
    found: dict[tuple[str, str, str], str] = {}
    for part in chunks(list(dict.fromkeys(keys)), 300):
        values = ", ".join("(?, ?, ?)" for _ in part)
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, period, id FROM period_checkpoints
                JOIN (VALUES {values}) AS w ON tenant_id = w.column1 AND customer_id = w.column2
                     AND period = w.column3""",
            [v for key in part for v in key],
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
