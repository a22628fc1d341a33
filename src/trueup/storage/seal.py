"""The log's writes: the signed head of the empty tree that binds a new database, and the one
transaction that seals a batch together with the balances derived from it
(:mod:`trueup.storage.seal_balances`) and the webhook events it causes.

Only the sequencer calls :func:`write_seal` (through :meth:`LogStore.seal`). The transaction is
fenced on the previous tree size, so a stale sequencer that lost its election can never append:
its commit fails on the tree head's primary key or the size check, and every delta it seals or
fails must still be queued (a seal that only fails deltas leaves the size as it was).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from trueup.storage.engine import Engine, Tx
from trueup.storage.errors import SealConflictError
from trueup.storage.heads import HeadRecord
from trueup.storage.locks import lock_count
from trueup.storage.outbox import enqueue_repeats_completed, enqueue_seal_events
from trueup.storage.seal_balances import plan_balances, write_balances
from trueup.storage.tenants import store_pepper_check

__all__ = ["QueuedDelta", "SealOutcome", "SealPlan", "write_first_head", "write_seal", "write_waits_settled"]

_VALUES_CHUNK = 300


class QueuedDelta(NamedTuple):
    """An accepted, unsealed delta: everything the sequencer needs to build its leaf
    (a NamedTuple: a thousand are read per seal)."""

    seq: int
    tenant_id: str
    request_id: str
    item_index: int
    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: str | None
    occurred_at: str
    period: str
    salt: bytes
    accepted_at: str


@dataclass(frozen=True, slots=True)
class SealPlan:
    """What one seal appends: leaves in order from ``previous_size``, the new nodes, the head.

    ``failed`` deltas get no leaf (for example a period locked after their acceptance).
    """

    previous_size: int
    leaves: Sequence[QueuedDelta]
    failed: Sequence[tuple[QueuedDelta, str]]
    nodes: Sequence[tuple[int, int, bytes]]
    head: HeadRecord
    verified_at: str
    locks_seen: int = 0


@dataclass(frozen=True, slots=True)
class SealOutcome:
    head: HeadRecord
    completed_requests: tuple[str, ...]
    sealed_count: int
    failed_count: int
    events: int = 0
    """Webhook events written to the outbox by this seal."""


def write_first_head(engine: Engine, head: HeadRecord, pepper_check: int | None = None) -> None:
    """Store the signed head of the empty tree if the log has no head yet, and with it (in
    the same transaction) the key pepper's check value if the database keeps none yet: the
    binding of a new database to the key and pepper of the first process that opens it."""
    with engine.write() as tx:
        tx.execute(
            """INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint)
               VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING""",
            (head.size, head.root, head.timestamp_ms, head.checkpoint),
        )
        if pepper_check is not None:
            store_pepper_check(tx, pepper_check)


def write_seal(engine: Engine, plan: SealPlan) -> SealOutcome:
    """Append ``plan`` atomically: nodes, head, leaf positions, balances, request states
    and the webhook outbox rows they cause (``trueup.storage.outbox``).

    Raises :class:`SealConflictError` when the log's size is not ``plan.previous_size``.
    """
    # Only a seal that adds leaves changes accounts, and the write below goes ahead only if
    # the log is still at plan.previous_size: so the running figures are worked out from a
    # snapshot at that size, outside the writer, which on SQLite is one for the whole node.
    with engine.read() as tx:
        _check_size(tx, plan)
        balances = plan_balances(tx, plan)
    with engine.write() as tx:
        engine.serialize(tx, "seal")
        _check_size(tx, plan)
        if lock_count(tx) != plan.locks_seen:
            raise SealConflictError("a period was locked while this seal was planned")
        head = plan.head
        if plan.leaves:
            # Not by COPY: a sequencer stopped mid-COPY would hold the seal's lock for as long
            # as it stays stopped, where between statements the idle timeout ends it in 10 s.
            tx.insert_rows("tree_nodes", ("level", "idx", "hash"), plan.nodes, ("integer", "bigint", "bytea"))
            tx.execute(
                """INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint)
                   VALUES (?, ?, ?, ?)""",
                (head.size, head.root, head.timestamp_ms, head.checkpoint),
            )
        write_balances(tx, balances)
        if plan.failed:
            _write_failures(tx, plan.failed)
        completed = _settle_requests(tx, plan)
        events = enqueue_seal_events(tx, plan, completed)
        waited = _settle_waits(tx, plan.verified_at)
        events += enqueue_repeats_completed(tx, waited, plan.verified_at)
    return SealOutcome(
        head=plan.head,
        completed_requests=completed + tuple(waited),
        sealed_count=len(plan.leaves),
        failed_count=len(plan.failed),
        events=events,
    )


def write_waits_settled(engine: Engine, head: HeadRecord, verified_at: str) -> SealOutcome | None:
    """Complete the requests waiting for originals that are no longer queued, when no seal
    did (``None`` when none was waiting).

    A seal completes those whose originals it settles. This catches the one it could not see:
    on PostgreSQL a retry can read its originals as queued, and commit only after the seal that
    settled them looked for waiting requests. The sequencer calls this when nothing is queued.
    """
    with engine.read() as tx:
        if tx.one("SELECT request_id FROM write_waits LIMIT 1") is None:
            return None
    with engine.write() as tx:
        waited = _settle_waits(tx, verified_at)
        events = enqueue_repeats_completed(tx, waited, verified_at)
    if not waited:
        return None
    return SealOutcome(
        head=head, completed_requests=tuple(waited), sealed_count=0, failed_count=0, events=events
    )


def _settle_waits(tx: Tx, verified_at: str) -> dict[str, str]:
    """Complete the waiting requests (``write_waits``) none of whose originals is queued any
    more; return them with their tenants.

    Each is completed once: its ``verified_at`` is set only where it is still unset, which a
    second sequencer racing this one (one that lost its election a moment ago) finds done. It
    is never set before the request's own acceptance: a retry accepted after its originals, and
    completed by a sequencer whose clock is behind, read verified before it was accepted.
    """
    done: dict[str, str] = {}
    for request_id, tenant_id in tx.execute(
        """SELECT w.request_id, w.tenant_id FROM write_waits w
           WHERE NOT EXISTS (SELECT 1 FROM write_duplicates x JOIN deltas d ON d.seq = x.original_seq
                             WHERE x.request_id = w.request_id AND d.status = 'queued')"""
    ):
        tx.execute("DELETE FROM write_waits WHERE request_id = ?", (request_id,))
        if tx.executemany(
            """UPDATE write_requests SET verified_at = CASE WHEN accepted_at > ? THEN accepted_at ELSE ? END
               WHERE id = ? AND verified_at IS NULL""",
            [(verified_at, verified_at, request_id)],
        ):
            done[str(request_id)] = str(tenant_id)
    return done


def _check_size(tx: Tx, plan: SealPlan) -> None:
    current = tx.scalar("SELECT MAX(tree_size) FROM tree_heads")
    if int(current or 0) != plan.previous_size:
        raise SealConflictError(f"log is at size {current}, this seal was planned from {plan.previous_size}")


def _write_failures(tx: Tx, failed: Sequence[tuple[QueuedDelta, str]]) -> None:
    # Fenced like the leaves: a seal of failures only leaves the tree's size as it was, so the
    # size check does not stop a stale sequencer that planned the same deltas; this does.
    updated = tx.executemany(
        "UPDATE deltas SET status = 'failed', failure = ? WHERE seq = ? AND status = 'queued'",
        [(reason, delta.seq) for delta, reason in failed],
    )
    if updated != len(failed):
        raise SealConflictError(
            f"{len(failed) - updated} of the {len(failed)} deltas this seal fails are no longer queued"
        )


def _settle_requests(tx: Tx, plan: SealPlan) -> tuple[str, ...]:
    """Count sealed and failed items off their requests; return the requests now complete,
    in the order the seal first met them.

    One statement per few hundred requests, joined to (request, settled, failed) rows, which
    returns each request's new count: on PostgreSQL an ``UPDATE`` per request and a ``SELECT``
    of the completed ones took 8 % of a seal's time at about 200 requests a seal.
    """
    settled: dict[str, list[int]] = {}
    for delta in plan.leaves:
        settled.setdefault(delta.request_id, [0, 0])[0] += 1
    for delta, _ in plan.failed:
        counts = settled.setdefault(delta.request_id, [0, 0])
        counts[0] += 1
        counts[1] += 1
    rows = [(request_id, count, failed) for request_id, (count, failed) in settled.items()]
    done: set[str] = set()
    for relation, params in tx.relations(rows, ("text", "bigint", "bigint"), _VALUES_CHUNK):
        returned = tx.execute(
            f"""UPDATE write_requests SET pending_count = pending_count - w.column2,
                   failed_count = failed_count + w.column3,
                   verified_at = CASE WHEN pending_count - w.column2 = 0 THEN ? ELSE verified_at END
                FROM {relation} WHERE write_requests.id = w.column1
                RETURNING write_requests.id, write_requests.pending_count""",
            [plan.verified_at, *params],
        )
        done.update(str(request_id) for request_id, pending in returned if pending == 0)
    return tuple(request_id for request_id in settled if request_id in done)
