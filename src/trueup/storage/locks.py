"""Which customer-months are locked by period checkpoints (read inside a transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from trueup.storage.engine import Tx, chunks

__all__ = ["lock_count", "locked_periods"]


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
    return int(tx.scalar("SELECT COUNT(*) FROM period_checkpoints"))
