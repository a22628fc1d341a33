"""The webhook outbox: events written inside the transaction that causes them.

A seal (:meth:`LogStore.seal`) and a period lock (:meth:`CheckpointStore.lock`) call in here
with their open transaction, so an event exists exactly when what it reports was committed:
no event is lost on a crash and none reports something that rolled back. Each event is fanned
out in the same transaction into one pending delivery per active endpoint of its tenant that
subscribes to its type; the dispatcher takes it from there.

Tenants without an active endpoint pay one indexed query per seal and write nothing, and an
event type no endpoint of the tenant subscribes to is not written at all. Everything else is
O(events) per call: each completed write request is read once, when it completes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trueup.core.ids import anchor_id, random_token, record_id
from trueup.core.timestamps import format_wire, format_wire_ms
from trueup.storage.engine import Row, Tx, chunks

if TYPE_CHECKING:
    from trueup.storage.checkpoints import CheckpointRecord
    from trueup.storage.seal import QueuedDelta, SealPlan

__all__ = [
    "CHECKPOINT_VERIFIED",
    "DELTA_FAILED",
    "DELTA_VERIFIED",
    "EVENT_TYPES",
    "VERIFICATION_COMPLETED",
    "NewEvent",
    "Subscriptions",
    "active_subscriptions",
    "enqueue",
    "enqueue_checkpoint_event",
    "enqueue_seal_events",
    "envelope_json",
    "new_event_id",
]

VERIFICATION_COMPLETED = "verification.completed"
DELTA_VERIFIED = "delta.verified"
DELTA_FAILED = "delta.failed"
CHECKPOINT_VERIFIED = "checkpoint.verified"
EVENT_TYPES = (VERIFICATION_COMPLETED, DELTA_VERIFIED, DELTA_FAILED, CHECKPOINT_VERIFIED)

_IN_LIST = 300


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write: ``data`` becomes the envelope's ``data``; ``created_at`` canonical."""

    tenant_id: str
    event_type: str
    data: Mapping[str, Any]
    created_at: str


def new_event_id() -> str:
    """``evt_`` + 24 base32 characters (120 random bits)."""
    return "evt_" + random_token(secrets.token_bytes(15))


def envelope_json(event_id: str, event_type: str, created_at: str, data: Mapping[str, Any]) -> str:
    """The envelope ``{id, event, timestamp, data}`` as compact JSON: the delivered body."""
    envelope = {"id": event_id, "event": event_type, "timestamp": format_wire(created_at), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


class Subscriptions:
    """Active endpoints by tenant, with the event types each one takes (``None``: all)."""

    def __init__(self, rows: Iterable[Row]) -> None:
        self._by_tenant: dict[str, list[tuple[str, frozenset[str] | None]]] = {}
        for tenant_id, endpoint_id, events in rows:
            kinds = None if events == "*" else frozenset(str(events).split(","))
            self._by_tenant.setdefault(str(tenant_id), []).append((str(endpoint_id), kinds))

    def __bool__(self) -> bool:
        return bool(self._by_tenant)

    def endpoints(self, tenant_id: str, event_type: str) -> list[str]:
        """Ids of the tenant's active endpoints that take ``event_type``."""
        return [
            endpoint_id
            for endpoint_id, kinds in self._by_tenant.get(tenant_id, ())
            if kinds is None or event_type in kinds
        ]

    def wants(self, tenant_id: str, event_type: str) -> bool:
        return bool(self.endpoints(tenant_id, event_type))


def active_subscriptions(tx: Tx, tenant_ids: Iterable[str]) -> Subscriptions:
    """The active endpoints of ``tenant_ids`` (one indexed query per 300 tenants), held until
    ``tx`` ends: an endpoint deleted meanwhile is deleted once the deliveries written for it
    here are committed, and its delete then fails them with its other pending ones (on
    PostgreSQL they were otherwise left pending, to a deleted endpoint, for good)."""
    rows: list[Row] = []
    for part in chunks(sorted(set(tenant_ids)), _IN_LIST):
        tenants_match, params = tx.one_of("tenant_id", part, "text")
        rows += tx.execute(
            f"""SELECT tenant_id, id, events FROM webhook_endpoints
                WHERE deleted_at IS NULL AND {tenants_match}{tx.share_rows}""",
            params,
        )
    return Subscriptions(rows)


def enqueue(tx: Tx, events: Sequence[NewEvent], subscriptions: Subscriptions) -> int:
    """Write ``events`` that some endpoint takes, each with its deliveries; return how many."""
    event_rows: list[tuple[str, str, str, str, str]] = []
    delivery_rows: list[tuple[str, str, str, str, str]] = []
    for event in events:
        endpoints = subscriptions.endpoints(event.tenant_id, event.event_type)
        if not endpoints:
            continue
        event_id = new_event_id()
        payload = envelope_json(event_id, event.event_type, event.created_at, event.data)
        event_rows.append((event_id, event.tenant_id, event.event_type, payload, event.created_at))
        delivery_rows += [
            (event_id, endpoint_id, event.tenant_id, event.created_at, event.created_at)
            for endpoint_id in endpoints
        ]
    if not event_rows:
        return 0
    tx.executemany(
        """INSERT INTO webhook_events (id, tenant_id, event_type, payload, created_at)
           VALUES (?, ?, ?, ?, ?)""",
        event_rows,
    )
    tx.executemany(
        """INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, status, attempts,
               round_attempts, next_attempt_at, created_at)
           VALUES (?, ?, ?, 'pending', 0, 0, ?, ?)""",
        delivery_rows,
    )
    return len(event_rows)


def _hex_root(root: bytes) -> str:
    return "0x" + root.hex()


def _delta_fields(delta: QueuedDelta) -> dict[str, Any]:
    """The fields ``delta.verified`` and ``delta.failed`` share, first in both payloads."""
    return {
        "recordId": record_id(delta.request_id, delta.item_index),
        "requestId": delta.request_id,
        "key": delta.key,
        "referenceId": delta.key,
        "customerId": delta.customer_id,
        "delta": delta.amount,
        "reason": delta.reason,
        "occurredAt": format_wire(delta.occurred_at),
    }


def enqueue_seal_events(tx: Tx, plan: SealPlan, completed: Sequence[str]) -> int:
    """Inside the seal's transaction: ``delta.verified`` per sealed delta, ``delta.failed`` per
    failed one, ``verification.completed`` per write request this seal completed."""
    tenants = {d.tenant_id for d in plan.leaves} | {d.tenant_id for d, _ in plan.failed}
    subscriptions = active_subscriptions(tx, tenants)
    if not subscriptions:
        return 0
    at = plan.verified_at
    events: list[NewEvent] = []
    for offset, delta in enumerate(plan.leaves):
        if not subscriptions.wants(delta.tenant_id, DELTA_VERIFIED):
            continue
        leaf_index = plan.previous_size + offset
        events.append(
            NewEvent(
                delta.tenant_id,
                DELTA_VERIFIED,
                {
                    **_delta_fields(delta),
                    "anchorId": anchor_id(leaf_index),
                    "leafIndex": leaf_index,
                    "treeSize": plan.head.size,
                    "rootHash": _hex_root(plan.head.root),
                    "verifiedAt": format_wire(at),
                },
                at,
            )
        )
    for delta, reason in plan.failed:
        if not subscriptions.wants(delta.tenant_id, DELTA_FAILED):
            continue
        events.append(
            NewEvent(
                delta.tenant_id,
                DELTA_FAILED,
                {
                    **_delta_fields(delta),
                    "error": reason,
                    "failedAt": format_wire(at),
                },
                at,
            )
        )
    tenant_of = {d.request_id: d.tenant_id for d in plan.leaves}
    tenant_of.update((d.request_id, d.tenant_id) for d, _ in plan.failed)
    wanted = [r for r in completed if subscriptions.wants(tenant_of[r], VERIFICATION_COMPLETED)]
    if wanted:
        heads: dict[int, dict[str, Any] | None] = {
            plan.head.size: _head_json(plan.head.size, plan.head.root, plan.head.timestamp_ms)
        }
        events += _completed_requests(tx, wanted, tenant_of, plan.verified_at, heads)
    return enqueue(tx, events, subscriptions)


def enqueue_repeat_completed(tx: Tx, tenant_id: str, request_id: str, at: str) -> int:
    """``verification.completed`` for a request whose items all repeated deltas that are
    already sealed (a retried request): it is complete the moment it is accepted."""
    return enqueue_repeats_completed(tx, {request_id: tenant_id}, at)


def enqueue_repeats_completed(tx: Tx, tenant_of: Mapping[str, str], at: str) -> int:
    """``verification.completed`` for requests (by id, with their tenants) whose items all
    repeated other deltas, now that none of those is queued."""
    if not tenant_of:
        return 0
    subscriptions = active_subscriptions(tx, set(tenant_of.values()))
    wanted = [r for r, tenant in tenant_of.items() if subscriptions.wants(tenant, VERIFICATION_COMPLETED)]
    if not wanted:
        return 0
    return enqueue(tx, _completed_requests(tx, wanted, tenant_of, at, {}), subscriptions)


def _completed_requests(
    tx: Tx,
    request_ids: Sequence[str],
    tenant_of: Mapping[str, str],
    verified_at: str,
    heads: dict[int, dict[str, Any] | None],
) -> list[NewEvent]:
    """One ``verification.completed`` per request: its items read once, now that it is done.
    Its time is the request's ``verified_at`` as stored, which is later than ``verified_at`` for
    a retry accepted after the seal's time (:func:`trueup.storage.seal._settle_waits`)."""
    counts: dict[str, int] = {}
    stamped: dict[str, str] = {}
    items: dict[str, list[dict[str, Any]]] = {r: [] for r in request_ids}
    sizes: dict[str, int] = {}
    originals: dict[str, set[str]] = {r: set() for r in request_ids}  # statuses of repeated deltas
    for part in chunks(list(request_ids), _IN_LIST):
        ids_match, ids = tx.one_of("id", part, "text")
        items_match, _ = tx.one_of("request_id", part, "text")
        repeats_match, _ = tx.one_of("w.request_id", part, "text")
        for request_id, item_count, stamp in tx.execute(
            f"SELECT id, item_count, verified_at FROM write_requests WHERE {ids_match}", ids
        ):
            counts[str(request_id)] = int(item_count)
            if stamp is not None:
                stamped[str(request_id)] = str(stamp)
        for request_id, index, key, customer_id, leaf_index, status, sealed_size in tx.execute(
            f"""SELECT request_id, item_index, item_key, customer_id, leaf_index, status,
                       sealed_size FROM deltas WHERE {items_match}""",
            ids,
        ):
            items[str(request_id)].append(_item(request_id, index, key, customer_id, leaf_index, status))
            if sealed_size is not None:
                sizes[str(request_id)] = max(sizes.get(str(request_id), 0), int(sealed_size))
        for request_id, index, key, customer_id, leaf_index, status, sealed_size in tx.execute(
            f"""SELECT w.request_id, w.item_index, d.item_key, d.customer_id, d.leaf_index,
                       d.status, d.sealed_size
                FROM write_duplicates w JOIN deltas d ON d.seq = w.original_seq
                WHERE {repeats_match}""",
            ids,
        ):
            items[str(request_id)].append(_item(request_id, index, key, customer_id, leaf_index, "duplicate"))
            originals[str(request_id)].add(str(status))
            if sealed_size is not None:
                # Repeats count too: the head shown is the one that sealed every item.
                sizes[str(request_id)] = max(sizes.get(str(request_id), 0), int(sealed_size))
    events: list[NewEvent] = []
    for request_id in request_ids:
        listed = sorted(items[request_id], key=lambda item: int(item["index"]))
        # As GET /api/v1/writes/{requestId} says: a repeat counts as its original did.
        statuses = {item["status"] for item in listed if item["status"] != "duplicate"}
        statuses |= originals[request_id]
        status = "verified"
        if statuses == {"failed"}:
            status = "failed"
        elif "failed" in statuses:
            status = "partially_failed"
        size = sizes.get(request_id)
        at = stamped.get(request_id, verified_at)
        head = None
        if size is not None:
            if size not in heads:
                heads[size] = _head_at(tx, size)
            head = heads[size]
        events.append(
            NewEvent(
                tenant_of[request_id],
                VERIFICATION_COMPLETED,
                {
                    "requestId": request_id,
                    "itemCount": counts.get(request_id, len(listed)),
                    "status": status,
                    "itemsRoot": None if head is None else head["rootHash"],
                    "treeHead": head,
                    # Nothing of a failed request was verified: no time to give.
                    "verifiedAt": None if status == "failed" else format_wire(at),
                    "items": listed,
                },
                at,
            )
        )
    return events


def _item(
    request_id: str, index: Any, key: Any, customer_id: Any, leaf_index: Any, status: Any
) -> dict[str, Any]:
    return {
        "index": int(index),
        "key": str(key),
        "accountId": str(customer_id),
        "recordId": record_id(str(request_id), int(index)),
        "anchorId": None if leaf_index is None else anchor_id(int(leaf_index)),
        "status": str(status),
    }


def _head_at(tx: Tx, size: int) -> dict[str, Any] | None:
    row = tx.one("SELECT root_hash, timestamp_ms FROM tree_heads WHERE tree_size = ?", (size,))
    return None if row is None else _head_json(size, bytes(row[0]), int(row[1]))


def _head_json(size: int, root: bytes, timestamp_ms: int) -> dict[str, Any]:
    """A tree head as the API shows it (``timestamp``: RFC 3339 with milliseconds)."""
    return {"treeSize": size, "rootHash": _hex_root(root), "timestamp": format_wire_ms(timestamp_ms)}


def enqueue_checkpoint_event(tx: Tx, record: CheckpointRecord) -> int:
    """Inside the lock's transaction: ``checkpoint.verified`` for a newly locked period."""
    subscriptions = active_subscriptions(tx, [record.tenant_id])
    if not subscriptions.wants(record.tenant_id, CHECKPOINT_VERIFIED):
        return 0
    return enqueue(
        tx,
        [
            NewEvent(
                record.tenant_id,
                CHECKPOINT_VERIFIED,
                {
                    "checkpointId": record.id,
                    "customerId": record.customer_id,
                    "period": record.period,
                    "proofRoot": _hex_root(record.proof_root),
                    "openingBalance": record.opening_balance,
                    "closingBalance": record.closing_balance,
                    "netChange": record.net,
                    "totalCredits": record.credits,
                    "totalDebits": record.debits,
                    "deltasCount": record.deltas_count,
                    "treeSize": record.tree_size,
                    "createdAt": format_wire(record.created_at),
                },
                record.created_at,
            )
        ],
        subscriptions,
    )
