"""Sealing: turn queued deltas into leaves, extend the tree, sign the new head, store it all.

The :class:`Sealer` keeps the right edge of the tree (a compact range) in memory, so a seal
hashes only the new leaves and the O(log n) nodes above them: its cost does not grow with the
size of the log. After a crash it reloads the edge from the last committed head and resumes
exactly there: the seal transaction is atomic, so no leaf is stored twice and none is skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trueup.core.timestamps import format_canonical
from trueup.proof import (
    CheckpointSigner,
    CompactRange,
    LeafEncodingError,
    LeafFields,
    ProofError,
    TreeHead,
    leaf_bytes,
    leaf_hash,
    required_nodes,
    verify_checkpoint,
)
from trueup.service.signed_head import SignedHeadRecord
from trueup.storage import Storage
from trueup.storage.errors import SealConflictError
from trueup.storage.heads import HeadRecord
from trueup.storage.locks import closed_by
from trueup.storage.seal import QueuedDelta, SealOutcome, SealPlan
from trueup.storage.seal_balances import BalanceOverflowError
from trueup.storage.write_views import RecordView

__all__ = ["Sealer", "leaf_fields_of", "record_leaf"]

log = logging.getLogger(__name__)

_EMPTY_METADATA_DIGEST = hashlib.sha256(b"{}").hexdigest()


def _digest(metadata: str | None) -> str:
    """``metadataDigest`` of stored (already canonical) metadata text; ``{}`` when absent."""
    return (
        _EMPTY_METADATA_DIGEST if metadata is None else hashlib.sha256(metadata.encode("utf-8")).hexdigest()
    )


def leaf_fields_of(
    tenant_id: str,
    customer_id: str,
    key: str,
    amount: int,
    occurred_at: str,
    metadata: str | None,
    salt: bytes,
) -> LeafFields:
    """The canonical leaf of a stored delta (``metadata`` is stored canonical JSON text)."""
    digest = _digest(metadata)
    return LeafFields(
        tenant=tenant_id,
        customer_id=customer_id,
        key=key,
        delta=amount,
        occurred_at=occurred_at,
        metadata_digest=digest,
        salt=salt,
    )


def record_leaf(record: RecordView) -> LeafFields:
    """The leaf of a stored delta as the views read it (:func:`leaf_fields_of`)."""
    return leaf_fields_of(
        record.tenant_id,
        record.customer_id,
        record.key,
        record.amount,
        record.occurred_at,
        record.metadata,
        record.salt,
    )


@dataclass(slots=True)
class _State:
    tree: CompactRange
    head: HeadRecord


class Sealer:
    """The only writer of the log. Not thread-safe: one sealing loop owns it."""

    def __init__(
        self,
        storage: Storage,
        signer: CheckpointSigner,
        origin: str,
        batch_size: int = 1_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        record: SignedHeadRecord | None = None,
    ) -> None:
        """``record``: where the newest head signed and committed is recorded, and checked
        against the database before anything is signed (:mod:`trueup.service.signed_head`);
        ``None`` for none."""
        self._storage = storage
        self._signer = signer
        self._origin = origin
        self._batch_size = batch_size
        self._clock = clock
        self._record = record
        self._state: _State | None = None
        self._clock_behind = False

    def sign(self, size: int, root: bytes, not_before_ms: int = 0) -> HeadRecord:
        """Sign a head for ``(size, root)`` stamped with the clock's time, or ``not_before_ms``
        (the newest head's time) while the clock is behind it: a larger tree never carries an
        earlier time, whatever the clock does (a step back, a standby whose clock is late)."""
        timestamp_ms = int(self._clock().timestamp() * 1000)
        if timestamp_ms < not_before_ms:
            if not self._clock_behind:
                log.warning(
                    "the clock is %.3f s behind the newest signed tree head; heads carry that "
                    "head's time until it catches up",
                    (not_before_ms - timestamp_ms) / 1000,
                )
            self._clock_behind = True
            timestamp_ms = not_before_ms
        else:
            self._clock_behind = False
        note = self._signer.sign(self._origin, TreeHead(size=size, root=root, timestamp_ms=timestamp_ms))
        return HeadRecord(size=size, root=root, timestamp_ms=timestamp_ms, checkpoint=note)

    def check_signed_head(self) -> None:
        """Refuse a database older than, or other than, what this key signed (the record
        in the data directory); start the record where there is none. Nothing to do without a record.

        Raises:
            LogRollbackError: naming what was found and the ways out.
        """
        if self._record is not None:
            self._record.check(self._storage)

    def flush_signed_head(self) -> None:
        """Record the newest head this sealer signed, if it is not yet (when sealing stops)."""
        if self._record is not None:
            self._record.flush()

    def load(self) -> HeadRecord:
        """(Re)load the right edge from the newest stored head; create the empty head if none.

        Raises:
            LogRollbackError: if the database holds less than, or other than, the heads this
                key signed (:meth:`check_signed_head`).
            RuntimeError: if this process's key and origin did not sign that head (a host set
                up with a key of its own would otherwise sign a log no verifier accepts), or
                the stored nodes do not give its root.
        """
        self.check_signed_head()  # before anything is signed, a new log's empty head too
        head = self._storage.log.head()
        if head is None:
            self._storage.log.store_first_head(self.sign(0, CompactRange.empty().root()))
            head = self._storage.log.head()
            assert head is not None
        verifier_key = self._signer.verifier_key()
        try:
            verify_checkpoint(head.checkpoint, verifier_key, origin=self._origin)
        except ProofError as exc:
            raise RuntimeError(
                f"cannot extend the log: its newest head (size {head.size}) does not verify with this "
                f"process's signing key {verifier_key} and origin {self._origin!r} "
                f"({exc}); every process of one log needs the same key file and origin"
            ) from exc
        needed = required_nodes(head.size)
        nodes = self._storage.log.nodes(needed)
        missing = [node for node in needed if node not in nodes]
        if missing:
            raise RuntimeError(f"log is damaged: tree nodes {missing[:3]} of size {head.size} missing")
        tree = CompactRange.from_nodes(head.size, [nodes[node] for node in needed])
        if tree.root() != head.root:
            raise RuntimeError(f"log is damaged: stored nodes do not give the root of size {head.size}")
        self._state = _State(tree=tree, head=head)
        return head

    def seal_once(self, limit: int | None = None) -> SealOutcome | None:
        """Seal up to ``limit`` (default: one batch) queued deltas; ``None`` when none were queued
        and no retried request was waiting to be completed (:meth:`LogStore.settle_waits`)."""
        if self._state is None:
            self.load()
        elif self._record is not None:
            self._record.flush(due_only=True)  # a head signed less than an interval ago, when idle
        state = self._state
        assert state is not None
        queued = self._storage.log.queued(limit or self._batch_size)
        if not queued:
            return self._storage.log.settle_waits(state.head, format_canonical(self._clock()))
        # A period locked after a delta's acceptance refuses it now (DESIGN.md §2.5).
        locks, locks_seen = self._storage.log.period_locks(
            [(d.tenant_id, d.customer_id, d.period) for d in queued]
        )
        sealed: list[QueuedDelta] = []
        failed: list[tuple[QueuedDelta, str]] = []
        for delta in queued:
            lock = locks.get((delta.tenant_id, delta.customer_id, delta.period))
            if lock is None:
                sealed.append(delta)
            else:
                said = closed_by(lock, delta.period, past=True)
                failed.append(
                    (
                        delta,
                        f"period {delta.period} {said} before this delta was sealed; post it to "
                        "an open period under a new key (this one stays with the failed delta)",
                    )
                )
        hashes: list[bytes] = []
        leaves: list[QueuedDelta] = []
        for delta in sealed:
            try:
                hashes.append(_leaf_hash(delta))
            except LeafEncodingError as exc:  # accepted under looser limits (a larger amount)
                failed.append((delta, f"it cannot be made a leaf: {exc}"))
            else:
                leaves.append(delta)
        # Each retry fails at least one more delta, so this ends; it runs once but for the rare
        # seal whose deltas would take an account's figures beyond 64 bits.
        for _ in range(len(leaves) + 1):
            try:
                return self._seal(state, leaves, hashes, failed, locks_seen)
            except BalanceOverflowError as exc:
                log.warning("failing %d deltas: their figures would pass 64 bits", len(exc.reasons))
                kept = [
                    (delta, leaf)
                    for delta, leaf in zip(leaves, hashes, strict=True)
                    if delta.seq not in exc.reasons
                ]
                failed += [(delta, exc.reasons[delta.seq]) for delta in leaves if delta.seq in exc.reasons]
                leaves, hashes = [delta for delta, _ in kept], [leaf for _, leaf in kept]
        raise RuntimeError("sealing kept finding 64-bit overflows")  # pragma: no cover - see above

    def _seal(
        self,
        state: _State,
        sealed: list[QueuedDelta],
        hashes: list[bytes],
        failed: list[tuple[QueuedDelta, str]],
        locks_seen: int,
    ) -> SealOutcome:
        """Seal ``sealed`` (whose leaf hashes are ``hashes``) as the next leaves and mark
        ``failed`` failed, in one transaction."""
        tree = state.tree.copy()
        nodes = tree.extend(hashes)
        head = self.sign(tree.size, tree.root(), state.head.timestamp_ms) if sealed else state.head
        plan = SealPlan(
            previous_size=state.head.size,
            leaves=sealed,
            failed=failed,
            nodes=nodes,
            head=head,
            verified_at=_verified_at(self._clock(), head, sealed, failed),
            locks_seen=locks_seen,
        )
        try:
            outcome = self._storage.log.seal(plan)
        except BalanceOverflowError:
            raise  # found while planning, before anything was written: the state stands
        except SealConflictError:
            self._state = None  # reloaded from storage by the next seal
            raise
        except Exception:
            self._state = None  # unknown whether it committed: reload from storage next time
            raise
        self._state = _State(tree=tree, head=head)
        if sealed and self._record is not None:
            self._record.signed(head)  # committed: now it may be recorded
        return outcome


def _verified_at(
    now: datetime, head: HeadRecord, sealed: list[QueuedDelta], failed: list[tuple[QueuedDelta, str]]
) -> str:
    """When a seal verified its deltas: ``now``, but never before its head's time nor before
    any of its deltas was accepted. A clock that stepped back after their acceptance, or a
    sequencer's host behind the API process's, stamped records verified before they were
    accepted, and verified before the head that seals them was signed."""
    signed = datetime.fromtimestamp(head.timestamp_ms // 1000, UTC) + timedelta(
        milliseconds=head.timestamp_ms % 1000
    )
    accepted = [delta.accepted_at for delta in sealed] + [delta.accepted_at for delta, _ in failed]
    return max(format_canonical(now), format_canonical(signed), *accepted)


def _leaf_hash(delta: QueuedDelta) -> bytes:
    """The leaf hash of a queued delta; its stored fields were validated at acceptance."""
    digest = _digest(delta.metadata)
    return leaf_hash(
        leaf_bytes(
            delta.tenant_id, delta.customer_id, delta.key, delta.amount, delta.occurred_at, digest, delta.salt
        )
    )
