"""``POST /api/v1/writes`` (seed) and ``GET /api/v1/writes/{requestId}``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trueup.api.body import read_json
from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors, json_body
from trueup.api.params import INTEGER_TEXT
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import reply_response, tree_head_json
from trueup.api.schemas.common import IDEMPOTENCY_KEY, documented_as
from trueup.api.schemas.writes import IdempotencyPending, WriteAccepted, WriteRequest, WriteStatus
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.ids import anchor_id, record_id
from trueup.core.timestamps import format_wire

router = APIRouter(tags=["writes"], route_class=RefusingUnknownParameters)


@router.post(
    "/api/v1/writes",
    status_code=202,
    summary="Submit a write: 1..1000 signed integer deltas, all-or-nothing",
    responses={
        202: {"model": WriteAccepted | IdempotencyPending, "description": "durably accepted"},
        **errors(400, 401, 402, 403, 409, 413, 415, 429, 503),
    },
    openapi_extra=json_body(WriteRequest, "items to record; unknown fields are ignored"),
)
async def submit_write(
    request: Request,
    services: ServicesDep,
    principal: Auth,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key"), documented_as(IDEMPOTENCY_KEY)
    ] = None,
) -> Response:
    services.writes.require_write(principal)  # a read-only key's 403 comes before any body error
    document, body = await read_json(request, services.settings, principal.tenant_id)
    reply = await services.writes.writes(principal, document, body, idempotency_key)
    return reply_response(reply)


@router.get(
    "/api/v1/writes/{requestId}",
    summary="A write request's items and how far each got (queued → verified)",
    responses={200: {"model": WriteStatus}, **errors(400, 401, 404)},
)
async def write_status(
    requestId: str,  # noqa: N803 - the path parameter is named as the API names it
    services: ServicesDep,
    principal: Auth,
    limit: Annotated[int, Query(ge=1, le=1000), INTEGER_TEXT] = 100,
    # Any item of a request (TRUEUP_MAX_ITEMS may allow more than 1,000).
    offset: Annotated[int, Query(ge=0, le=10**9), INTEGER_TEXT] = 0,
) -> JSONResponse:
    found = await run_in_threadpool(services.views.request_status, principal, requestId, limit, offset)
    view = found.request
    items: list[dict[str, Any]] = []
    for index, kind, record in view.items:
        sealed = record.leaf_index is not None
        items.append(
            {
                "index": index,
                "key": record.key,
                "accountId": record.customer_id,
                "bits": record.amount,
                "recordId": record_id(view.request_id, index),
                "status": "duplicate" if kind == "duplicate" else record.status,
                "anchorId": anchor_id(record.leaf_index)
                if sealed and record.leaf_index is not None
                else None,
                "leafIndex": record.leaf_index,
                "treeSize": record.sealed_size,
                "error": record.failure,
            }
        )
    return JSONResponse(
        {
            "success": True,
            "data": {
                "requestId": view.request_id,
                "status": found.status,
                "itemCount": view.item_count,
                "acceptedAt": format_wire(view.accepted_at),
                "verifiedAt": None if found.verified_at is None else format_wire(found.verified_at),
                "items": items,
                "limit": limit,
                "offset": offset,
                "treeHead": None if found.head is None else tree_head_json(found.head),
            },
        }
    )
