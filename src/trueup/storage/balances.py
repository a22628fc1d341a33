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
(``account_no``, see :data:`~trueup.storage.balance_records.ACCOUNT_NO_SQL`), not by
``(tenant_id, customer_id)``: a seal adds an entry to each of them for every delta, and a short
key makes that cheaper.

Every question is asked inside one :class:`BalanceSnapshot` (one read transaction), so a
balance, its page, its months and the signed head that covers them always agree. Only
verified deltas (``leaf_index IS NOT NULL``) are ever counted. The snapshot asks the
questions through :mod:`trueup.storage.balance_totals` (totals in a scope) and
:mod:`trueup.storage.balance_pages` (pages of deltas); what they take and give is
:mod:`trueup.storage.balance_records`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from trueup.storage.balance_pages import (
    read_by_amount,
    read_in_month,
    read_page,
    read_period_leaf_hashes,
    read_period_page,
    read_period_span,
)
from trueup.storage.balance_records import (
    AccountRecord,
    DeltaRecord,
    FinderRow,
    Scope,
    ScopeSummary,
)
from trueup.storage.balance_totals import (
    CheckpointFigures,
    account_record,
    read_account,
    read_checkpoint_figures,
    read_summary,
)
from trueup.storage.engine import Engine, Tx
from trueup.storage.heads import HeadRecord, head_at, head_by_root, latest_head, read_nodes
from trueup.storage.locks import CheckpointRecord, read_checkpoint, read_checkpoint_by_root
from trueup.storage.write_views import RecordView, read_record, read_record_at_leaf

__all__ = ["BalanceSnapshot", "BalanceStore"]


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
        return read_account(self._tx, tenant_id, customer_id)

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
        return [account_record(row) for row in rows], total

    # -- scoped totals ----------------------------------------------------------------------

    def summary(self, tenant_id: str, customer_id: str, scope: Scope) -> ScopeSummary:
        return read_summary(self._tx, tenant_id, customer_id, scope)

    def checkpoint_figures(
        self, tenant_id: str, customer_id: str, period: str, tree_size: int
    ) -> CheckpointFigures:
        return read_checkpoint_figures(self._tx, tenant_id, customer_id, period, tree_size)

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
        return read_page(self._tx, tenant_id, customer_id, scope, limit, offset, descending)

    # -- compare's finder -------------------------------------------------------------------

    def by_amount(
        self, tenant_id: str, customer_id: str, scope: Scope, amount: int, limit: int
    ) -> list[FinderRow]:
        return read_by_amount(self._tx, tenant_id, customer_id, scope, amount, limit)

    def in_month(
        self, tenant_id: str, customer_id: str, scope: Scope, period: str, limit: int
    ) -> list[FinderRow]:
        return read_in_month(self._tx, tenant_id, customer_id, scope, period, limit)

    # -- a customer-month's sealed deltas ---------------------------------------------------

    def period_leaf_hashes(self, tenant_id: str, customer_id: str, period: str) -> list[bytes]:
        return read_period_leaf_hashes(self._tx, tenant_id, customer_id, period)

    def period_page(
        self, tenant_id: str, customer_id: str, period: str, limit: int, offset: int
    ) -> list[tuple[DeltaRecord, bytes]]:
        return read_period_page(self._tx, tenant_id, customer_id, period, limit, offset)

    def period_span(self, tenant_id: str, customer_id: str, period: str) -> tuple[str | None, str | None]:
        return read_period_span(self._tx, tenant_id, customer_id, period)
