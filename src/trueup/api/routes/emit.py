"""PacSpace's emit surface: one delta, a batch, and a delta's status (DESIGN.md §2.2)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from trueup.api.body import read_json
from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors, json_body
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import reply_response, tree_head_json
from trueup.api.schemas.common import IDEMPOTENCY_KEY, documented_as
from trueup.api.schemas.writes import (
    DeltaStatusResponse,
    EmitBatchBody,
    EmitBatchResponse,
    EmitBody,
    EmitResponse,
    IdempotencyPending,
)
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.ids import anchor_id, record_id
from trueup.core.timestamps import format_wire
from trueup.proof import leaf_fields_to_json

router = APIRouter(tags=["emit"], route_class=RefusingUnknownParameters)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key"), documented_as(IDEMPOTENCY_KEY)]


class _RecordIdConvertor(StringConvertor):
    """A ``{recordId}`` of the delta status route: any path segment but ``batch``.

    ``/api/v1/balance/delta/batch`` is the batch route's path. Without this, ``GET`` of it
    would be taken as the status of a record named ``batch`` (404, "record not found")
    instead of the 405 naming ``POST`` that a method the path does not take gets."""

    regex = "(?!batch$)[^/]+"


register_url_convertor("record_id", _RecordIdConvertor())


@router.post(
    "/api/v1/balance/delta",
    status_code=202,
    summary="Emit one delta (202 once durable)",
    responses={
        202: {"model": EmitResponse | IdempotencyPending},
        **errors(400, 401, 402, 403, 409, 413, 415, 429, 503),
    },
    openapi_extra=json_body(EmitBody),
)
async def emit(
    request: Request, services: ServicesDep, principal: Auth, idempotency_key: IdempotencyKey = None
) -> Response:
    services.writes.require_write(principal)  # a read-only key's 403 comes before any body error
    document, body = await read_json(request, services.settings, principal.tenant_id)
    return reply_response(await services.writes.emit(principal, document, body, idempotency_key))


@router.post(
    "/api/v1/balance/delta/batch",
    status_code=202,
    summary="Emit up to 1000 deltas; each is queued or fails on its own",
    responses={
        202: {"model": EmitBatchResponse | IdempotencyPending},
        **errors(400, 401, 402, 403, 409, 413, 415, 429, 503),
    },
    openapi_extra=json_body(EmitBatchBody),
)
async def emit_batch(
    request: Request, services: ServicesDep, principal: Auth, idempotency_key: IdempotencyKey = None
) -> Response:
    services.writes.require_write(principal)
    document, body = await read_json(request, services.settings, principal.tenant_id)
    return reply_response(await services.writes.emit_batch(principal, document, body, idempotency_key))


@router.get(
    "/api/v1/balance/delta/{recordId:record_id}",
    summary="A delta's status by rec_… or a_… id; once verified, its inclusion proof",
    responses={200: {"model": DeltaStatusResponse}, **errors(400, 401, 404)},
)
async def delta_status(recordId: str, services: ServicesDep, principal: Auth) -> JSONResponse:  # noqa: N803
    found = await run_in_threadpool(services.views.delta_status, principal, recordId)
    record = found.record
    sealed = record.leaf_index
    return JSONResponse(
        {
            "success": True,
            "data": {
                "recordId": record_id(record.request_id, record.item_index),
                "status": record.status.upper(),
                "customerId": record.customer_id,
                "delta": record.amount,
                "reason": record.reason,
                "referenceId": record.key,
                # As stored (canonical JSON, RFC 8785): its digest is the leaf's metadataDigest.
                "metadata": None if record.metadata is None else json.loads(record.metadata),
                "occurredAt": format_wire(record.occurred_at),
                "createdAt": format_wire(record.accepted_at),
                "verifiedAt": None if record.verified_at is None else format_wire(record.verified_at),
                "anchorId": None if sealed is None else anchor_id(sealed),
                "leafIndex": sealed,
                "error": record.failure,
                # RFC 9162 §2.1.3: this leaf in the tree head below; the leaf and its hash make
                # the reply checkable on its own, as a proof bundle is.
                "leaf": None if found.leaf is None else leaf_fields_to_json(found.leaf),
                "leafHash": None if found.leaf_hash is None else found.leaf_hash.hex(),
                "inclusionProof": None if found.head is None else [node.hex() for node in found.proof],
                "treeHead": None
                if found.head is None
                else {**tree_head_json(found.head), "checkpoint": found.head.checkpoint},
            },
        }
    )
