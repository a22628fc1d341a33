"""``trueup audit``'s checks of the period locks (:mod:`trueup.service.audit`, step 6).

Each period checkpoint must state the figures and proof root of its customer-month's deltas
sealed before its tree head (which is stored); no delta of its month, nor of a month before it,
may be sealed after it (a lock closes those too: its opening balance sums them); and as many
checkpoints must be stored as locks were counted (a deleted lock unlocks its month). A Trueup
built before 2026-12-07 06:55 UTC sealed deltas of the months before a locked one; those sealed
before the database's upgrade to schema version 16 (migration 16 records the log's size then)
are a warning, not a mismatch.
"""

from __future__ import annotations

from trueup.proof import period_proof_root
from trueup.storage import Storage
from trueup.storage.checkpoints import CheckpointRecord

__all__ = ["SHOWN", "LockAudit", "MismatchError"]

SHOWN = 3
"""How many examples a warning names."""

_PAGE = 5_000


class MismatchError(Exception):
    """What the audit found stored that the deltas do not give (its message names it)."""


class LockAudit:
    """The checks of the period locks, run after the deltas and totals were checked."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._closed_months_from = 0
        """The tree size from which seals kept the months closed by a later lock (migration 16)."""
        self._let_in_before: list[str] = []
        """Locks whose earlier months an older Trueup sealed deltas into after them."""

    def run(self) -> None:
        """Each period checkpoint against its month's deltas, read through the balance queries
        over the rows checked above; then the lock count, which a deleted lock falls below."""
        self._closed_months_from = self._storage.checkpoints.closed_months_checked_from()
        after: tuple[str, str, str] | None = None
        checked = 0
        while True:
            page = self._storage.checkpoints.every(after, _PAGE)
            if not page:
                break
            for record in page:
                self._check(record)
            checked += len(page)
            last = page[-1]
            after = (last.tenant_id, last.customer_id, last.period)
        counted = self._storage.checkpoints.locks_taken()
        if checked < counted:
            raise MismatchError(
                f"{counted} period locks were taken, but {checked} period checkpoints are stored "
                "(a lock was deleted, which unlocks its month)"
            )

    def _check(self, record: CheckpointRecord) -> None:
        where = f"period checkpoint {record.id} ({record.customer_id!r}, {record.period})"
        with self._storage.balances.snapshot() as snapshot:
            head = snapshot.head_at(record.tree_size)
            figures = snapshot.checkpoint_figures(
                record.tenant_id, record.customer_id, record.period, record.tree_size
            )
            hashes = snapshot.period_leaf_hashes(record.tenant_id, record.customer_id, record.period)
            # Deltas of the months it closes, sealed after it: a seal fails them since migration
            # 16 (a mismatch), an older Trueup let them in (a warning).
            sealed_after = figures.closed_sealed_after
            if sealed_after and record.tree_size < self._closed_months_from:
                sealed_after_upgrade = snapshot.checkpoint_figures(
                    record.tenant_id, record.customer_id, record.period, self._closed_months_from
                ).closed_sealed_after
            else:
                sealed_after_upgrade = sealed_after
        opening, month = figures.opening, figures.month
        if head is None:
            raise MismatchError(f"{where}: no signed tree head of its size {record.tree_size} is stored")
        if len(hashes) > month.count:
            raise MismatchError(f"{where}: {_deltas(len(hashes) - month.count, 'its month')} sealed after it")
        if sealed_after_upgrade:
            # Its opening balance sums the months before it, so a delta let into one of them
            # afterwards makes that figure (and every receipt's startingBalance) untrue for good.
            period, count = sealed_after_upgrade[0]
            raise MismatchError(
                f"{where}: {_deltas(count, f'{period}, a month it closes,')} sealed after it (a "
                "seal fails a delta of a closed month)"
            )
        if sealed_after:
            let_in = sum(count for _, count in sealed_after)
            self._let_in_before.append(f"{where}: {_deltas(let_in, 'the months before it')} sealed after it")
        stated = (record.opening_balance, record.credits, record.debits, record.deltas_count)
        if stated != (opening, month.credits, month.debits, month.count):
            raise MismatchError(
                f"{where}: states opening balance {record.opening_balance}, credits {record.credits}, "
                f"debits {record.debits} over {record.deltas_count} deltas; the deltas sealed before "
                f"tree size {record.tree_size} give {opening}, {month.credits}, {month.debits} over "
                f"{month.count}"
            )
        if period_proof_root(record.nonce, hashes) != record.proof_root:
            raise MismatchError(f"{where}: its proof root is not that of its month's leaves")

    def warnings(self) -> tuple[str, ...]:
        if not self._let_in_before:
            return ()
        shown = "; ".join(self._let_in_before[:SHOWN])
        more = len(self._let_in_before) - SHOWN
        return (
            f"{len(self._let_in_before)} period checkpoints have deltas of months before their own sealed "
            "after them, before the database's upgrade to schema version 16 (a Trueup built before "
            "2026-12-07 06:55 UTC refused only a locked month's own deltas; such a checkpoint's "
            f"openingBalance leaves them out): {shown}" + (f"; and {more} more" if more > 0 else ""),
        )


def _deltas(count: int, of: str) -> str:
    return f"1 delta of {of} was" if count == 1 else f"{count} deltas of {of} were"
