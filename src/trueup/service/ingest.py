"""Accepting writes: validation, drafts, idempotency, and the durable 202.

Every write route ends here. A reply of 202 is produced only after the group committer has
committed the items durably. Replays of an ``Idempotency-Key`` return the stored reply
verbatim; a key still in flight in this process answers ``IDEMPOTENCY_PENDING``.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from trueup.core.deltas import NewDelta
from trueup.core.emit import BatchEntry, parse_emit, parse_emit_batch
from trueup.core.errors import (
    ForbiddenError,
    IdempotencyMismatchError,
    PlanLimitExceededError,
    ValidationError,
)
from trueup.core.ids import idempotency_key_value, new_request_id, random_token, record_id
from trueup.core.json_text import dumps, quoted
from trueup.core.timestamps import format_canonical, format_wire
from trueup.core.writes import parse_writes_body
from trueup.proof import LeafEncodingError, canonical_json
from trueup.service.backlog import QueueGuard
from trueup.service.entropy import random_bytes
from trueup.service.group_commit import GroupCommitter
from trueup.service.keys import Principal
from trueup.service.settings import Settings, unknown_plan
from trueup.storage import Storage
from trueup.storage.engine import Tx
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse
from trueup.storage.write_drafts import DeltaDraft, WriteDraft, WriteResult

__all__ = ["Reply", "WriteService"]

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP-agnostic reply: a status and either a JSON-able value or stored JSON text."""

    status_code: int
    payload: Any = None
    raw: str | None = None
    retry_after: int | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WriteService:
    """The use case "accept a write request"."""

    def __init__(
        self,
        storage: Storage,
        committer: GroupCommitter,
        settings: Settings,
        clock: Clock = _utcnow,
    ) -> None:
        self._storage = storage
        self._committer = committer
        self._settings = settings
        self._clock = clock
        self._in_flight: dict[tuple[str, str], tuple[str, bytes]] = {}
        """(tenant, Idempotency-Key) -> (route, body hash) of the request in flight under it."""
        self._in_flight_lock = threading.Lock()
        self._queue_guard = QueueGuard(
            storage.log,
            settings.max_queue_depth,
            pace=settings.queue_pace_depth,
            max_wait_s=settings.queue_pace_max_wait_s,
        )

    def require_write(self, principal: Principal) -> None:
        """403 for a read-only key: the write routes ask before they read the body, so that
        such a key gets its 403 whatever it sent (and learns nothing of what a body would get)."""
        _require_write_access(principal)

    async def writes(
        self, principal: Principal, document: Any, body: bytes, idempotency_key: str | None
    ) -> Reply:
        """``POST /api/v1/writes``: all-or-nothing; 202 once durable."""
        _require_write_access(principal)
        deltas = parse_writes_body(document, self._settings.limits)
        return await self.accept(
            principal,
            deltas,
            source="writes",
            route="POST /api/v1/writes",
            body=body,
            idempotency_key=idempotency_key,
            render=partial(_render_writes, item_count=len(deltas)),
        )

    async def emit(
        self, principal: Principal, document: Any, body: bytes, idempotency_key: str | None
    ) -> Reply:
        """``POST /api/v1/balance/delta``: one delta; 202 once durable."""
        _require_write_access(principal)
        delta = parse_emit(document, self._settings.limits, _new_reference)
        return await self.accept(
            principal,
            [delta],
            source="delta",
            route="POST /api/v1/balance/delta",
            body=body,
            idempotency_key=idempotency_key,
            render=partial(_render_emit, delta=delta),
        )

    async def emit_batch(
        self, principal: Principal, document: Any, body: bytes, idempotency_key: str | None
    ) -> Reply:
        """``POST /api/v1/balance/delta/batch``: each delta succeeds or fails alone."""
        _require_write_access(principal)
        entries = [
            self._checked_metadata(entry)
            for entry in parse_emit_batch(document, self._settings.limits, _new_reference)
        ]
        valid = [entry for entry in entries if entry.delta is not None]
        deltas = [entry.delta for entry in valid if entry.delta is not None]
        positions = tuple(entry.index for entry in valid)
        render = partial(_render_batch, entries=tuple(entries), positions=positions)
        route = "POST /api/v1/balance/delta/batch"
        if not deltas:
            # Nothing to store, but the key is checked as on any write: a 400 if malformed, the
            # stored reply or a 409 if it was used before.
            claim = _claim(idempotency_key, route, body)
            if claim is not None:
                stored = await asyncio.to_thread(
                    self._storage.writes.stored_response, principal.tenant_id, claim
                )
                if stored is not None:
                    return Reply(stored.status_code, raw=stored.body)
            return Reply(202, raw=render(WriteResult(request_id="")).body)
        return await self.accept(
            principal,
            deltas,
            source="batch",
            route=route,
            body=body,
            idempotency_key=idempotency_key,
            render=render,
            per_item_conflicts=True,
            positions=positions,
        )

    def _checked_metadata(self, entry: BatchEntry) -> BatchEntry:
        """A batch element whose metadata cannot be stored fails alone, like other bad input."""
        if entry.delta is None:
            return entry
        try:
            self._metadata_text(entry.delta, f"deltas[{entry.index}].metadata")
        except ValidationError as error:
            return replace(entry, delta=None, error=error)
        return entry

    async def accept(
        self,
        principal: Principal,
        deltas: Sequence[NewDelta],
        *,
        source: str,
        route: str,
        body: bytes,
        idempotency_key: str | None,
        render: Callable[[WriteResult], StoredResponse],
        per_item_conflicts: bool = False,
        positions: tuple[int, ...] = (),
    ) -> Reply:
        """Store ``deltas`` as one request and return the reply ``render`` builds for it."""
        claim = _claim(idempotency_key, route, body)
        flight = (principal.tenant_id, claim.key) if claim is not None else None
        if claim is not None and flight is not None:
            # A database read: off the event loop.
            stored = await asyncio.to_thread(self._storage.writes.stored_response, principal.tenant_id, claim)
            if stored is not None:
                return Reply(stored.status_code, raw=stored.body)
            with self._in_flight_lock:
                running = self._in_flight.get(flight)
                if running is None:
                    self._in_flight[flight] = (claim.route, claim.body_hash)
            if running is not None:
                # Another route with the same body is another request, as for a stored reply.
                if running != (claim.route, claim.body_hash):
                    raise IdempotencyMismatchError(
                        f"Idempotency-Key {quoted(claim.key)} is in use by a different request"
                    )
                return Reply(202, payload=_pending(claim.key), retry_after=1)
        try:
            await self._queue_guard.check()
            draft = self._draft(principal, deltas, source, claim, render, per_item_conflicts, positions)
            result = await self._committer.commit(draft)
        finally:
            if flight is not None:
                with self._in_flight_lock:
                    self._in_flight.pop(flight, None)
        response = result.replay if result.replay is not None else render(result)
        return Reply(response.status_code, raw=response.body)

    def replay(
        self, principal: Principal, idempotency_key: str | None, route: str, body: bytes
    ) -> Reply | None:
        """For write routes outside the delta path (webhook endpoints): the reply stored under
        this ``Idempotency-Key``, or ``None`` (409 ``IDEMPOTENCY_MISMATCH`` for another body).
        A read-only key gets its 403 here: a stored reply is a write's, and may hold a secret."""
        _require_write_access(principal)
        claim = _claim(idempotency_key, route, body)
        if claim is None:
            return None
        stored = self._storage.writes.stored_response(principal.tenant_id, claim)
        return None if stored is None else Reply(stored.status_code, raw=stored.body)

    def remember(
        self,
        principal: Principal,
        idempotency_key: str | None,
        route: str,
        body: bytes,
        status_code: int,
        payload: Any,
        write: Callable[[Tx], None],
    ) -> Reply:
        """Make a route's change (``write``) and keep its reply under the request's
        ``Idempotency-Key``, atomically: a retry, even one racing the first request, replays
        the first reply and changes nothing."""
        claim = _claim(idempotency_key, route, body)
        response = self._storage.writes.write_remembered(
            principal.tenant_id,
            claim,
            StoredResponse(status_code, _json(payload)),
            format_canonical(self._clock()),
            write,
        )
        return Reply(response.status_code, raw=response.body)

    def _metadata_text(self, delta: NewDelta, field: str) -> str | None:
        """The canonical JSON text of a delta's metadata; 400 naming ``field`` if it is too
        large or cannot be canonicalised (RFC 8785 needs finite I-JSON numbers)."""
        if delta.metadata is None:
            return None
        try:
            text = canonical_json(delta.metadata).decode("utf-8")
        except LeafEncodingError as exc:
            raise ValidationError(field, str(exc)) from exc
        size = len(text.encode("utf-8"))
        limit = self._settings.limits.max_metadata_bytes
        if size > limit:
            raise ValidationError(field, f"must be at most {limit} bytes serialised, got {size}")
        return text

    def _draft(
        self,
        principal: Principal,
        deltas: Sequence[NewDelta],
        source: str,
        claim: IdempotencyClaim | None,
        render: Callable[[WriteResult], StoredResponse],
        per_item_conflicts: bool,
        positions: tuple[int, ...] = (),
    ) -> WriteDraft:
        allowances = self._settings.plan_allowances
        if principal.plan not in allowances:  # refused, not taken as unlimited
            raise PlanLimitExceededError(unknown_plan(principal.plan))
        now = self._clock()
        accepted_at = format_canonical(now)
        items: list[DeltaDraft] = []
        where = "items" if source == "writes" else "deltas"
        # 16 bytes of salt per item and 7 for the id, from the pool (no system call per request).
        entropy = random_bytes(16 * len(deltas) + 7)
        salts = entropy[7:]
        for index, delta in enumerate(deltas):
            position = positions[index] if positions else index
            field = f"{where}[{position}].metadata" if source != "delta" else "metadata"
            metadata = self._metadata_text(delta, field)
            items.append(
                DeltaDraft(
                    key=delta.key,
                    customer_id=delta.customer_id,
                    amount=delta.amount,
                    reason=delta.reason,
                    metadata=metadata,
                    occurred_at=delta.occurred_at or accepted_at,
                    explicit_time=delta.occurred_at is not None,
                    salt=salts[16 * index : 16 * index + 16],
                )
            )
        return WriteDraft(
            tenant_id=principal.tenant_id,
            request_id=new_request_id(entropy[:7], int(now.timestamp() * 1000)),
            source=source,
            accepted_at=accepted_at,
            items=items,
            idempotency=claim,
            allowance=allowances[principal.plan],
            per_item_conflicts=per_item_conflicts,
            positions=positions,
            render=render,
        )


def _json(value: Any) -> str:
    """Compact JSON text of a reply (stored with its idempotency key, replayed verbatim)."""
    return dumps(value).decode("utf-8")


def _new_reference() -> str:
    """A referenceId for an emitted delta that came without one."""
    return "ref_" + random_token(random_bytes(15))


def _require_write_access(principal: Principal) -> None:
    if principal.read_only:
        raise ForbiddenError("this API key is read-only; use a read-write key to write")


def _claim(idempotency_key: str | None, route: str, body: bytes) -> IdempotencyClaim | None:
    if idempotency_key is None:
        return None
    key = idempotency_key_value(idempotency_key)
    if key is None:
        raise ValidationError("Idempotency-Key", "header must be 1-255 printable characters")
    return IdempotencyClaim(key=key, route=route, body_hash=hashlib.sha256(body).digest())


# The replies of the write routes. Each is a module-level function bound to its request's data
# with ``functools.partial``, so that a draft, whose ``render`` the commit runs to store the reply
# under an ``Idempotency-Key``, can be pickled to the committer process (``trueup.cli.committer``).


def _render_writes(result: WriteResult, *, item_count: int) -> StoredResponse:
    return StoredResponse(202, _json(_writes_accepted(result.request_id, item_count)))


def _render_emit(result: WriteResult, *, delta: NewDelta) -> StoredResponse:
    # createdAt is the record's acceptance time, as GET /api/v1/balance/delta/{recordId} gives
    # it: for a repeat, the original's.
    if result.originals:
        original = result.originals[0]
        data = {"recordId": original.record_id, "status": original.status.upper(), "idempotent": True}
        created_at = original.accepted_at
    else:
        data = {"recordId": record_id(result.request_id, 0), "status": "QUEUED"}
        created_at = result.accepted_at
    data.update(
        {
            "customerId": delta.customer_id,
            "delta": delta.amount,
            "reason": delta.reason,
            "referenceId": delta.key,
            "createdAt": format_wire(created_at),
        }
    )
    return StoredResponse(202, _json({"success": True, "data": data}))


def _render_batch(
    result: WriteResult, *, entries: tuple[BatchEntry, ...], positions: tuple[int, ...]
) -> StoredResponse:
    """Every element of the batch in order; ``positions`` are the body indexes of the deltas
    that were sent to storage (the valid ones), in the order they were stored."""
    results: list[dict[str, Any]] = []
    conflicts = {conflict.index: conflict.error for conflict in result.conflicts}
    originals = {original.item: original for original in result.originals}
    stored_index = {index: position for position, index in enumerate(positions)}
    for entry in entries:
        row: dict[str, Any] = {"index": entry.index, "customerId": entry.customer_id, "delta": entry.amount}
        position = stored_index.get(entry.index)
        if entry.error is not None or position is None:
            row.update(status="FAILED", error=entry.error.message if entry.error else "invalid")
        elif position in conflicts:
            row.update(status="FAILED", error=conflicts[position].message, code=conflicts[position].code)
        elif position in originals:
            original = originals[position]
            row.update(status=original.status.upper(), recordId=original.record_id, idempotent=True)
        else:
            row.update(status="QUEUED", recordId=record_id(result.request_id, position), idempotent=False)
        results.append(row)
    failed = sum(1 for row in results if row["status"] == "FAILED")
    data = {"totalQueued": len(results) - failed, "totalFailed": failed, "results": results}
    return StoredResponse(202, _json({"success": True, "data": data}))


def _writes_accepted(request_id: str, item_count: int) -> dict[str, Any]:
    # The seed's exact 202 shape, with "success" beside it (DESIGN.md §2.8).
    return {
        "statusCode": 202,
        "success": True,
        "data": {
            "requestId": request_id,
            "itemCount": item_count,
            "status": "queued",
            "message": "Write accepted. Items are queued for verification.",
        },
    }


def _pending(key: str) -> dict[str, Any]:
    return {
        "success": True,
        "statusCode": 202,
        "code": "IDEMPOTENCY_PENDING",
        "message": (
            f"a request with Idempotency-Key {quoted(key)} is still being processed; retry to get its reply"
        ),
        "retryAfterSeconds": 1,
    }
