"""Period checkpoints: lock, list, and the receipt form (DESIGN.md §2.5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from trueup.api.body import read_json
from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors, json_body
from trueup.api.params import INTEGER_TEXT, OptionalText, Period, TimePreset, given
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import hex_root
from trueup.api.schemas.balances import (
    CheckpointBody,
    CheckpointListResponse,
    CheckpointResponse,
    ReceiptResponse,
)
from trueup.api.schemas.common import ACCOUNT_ID, documented_as
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.timestamps import format_wire
from trueup.storage.checkpoints import CheckpointRecord

router = APIRouter(tags=["checkpoints"], route_class=RefusingUnknownParameters)


def checkpoint_json(record: CheckpointRecord) -> dict[str, Any]:
    return {
        "checkpointId": record.id,
        "proofRoot": hex_root(record.proof_root),
        "customerId": record.customer_id,
        "period": record.period,
        "openingBalance": record.opening_balance,
        "closingBalance": record.closing_balance,
        "netChange": record.net,
        "totalCredits": record.credits,
        "totalDebits": record.debits,
        "deltasCount": record.deltas_count,
        "treeSize": record.tree_size,
        "status": "VERIFIED",
        "locked": True,
        "createdAt": format_wire(record.created_at),
    }


@router.post(
    "/api/v1/balance/checkpoint",
    summary="Lock a customer's period under a proof root (idempotent)",
    responses={
        200: {"model": CheckpointResponse},
        201: {"model": CheckpointResponse},
        **errors(400, 401, 403, 404, 409, 413, 415, 503),
    },
    openapi_extra=json_body(CheckpointBody),
)
async def lock_period(request: Request, services: ServicesDep, principal: Auth) -> JSONResponse:
    services.balances.require_lock_access(principal)  # a read-only key's 403 comes before any body error
    document, _ = await read_json(request, services.settings, principal.tenant_id)
    record, created = await run_in_threadpool(services.balances.lock_period, principal, document)
    return JSONResponse(
        {"success": True, "data": checkpoint_json(record)}, status_code=201 if created else 200
    )


@router.get(
    "/api/v1/balance/checkpoints",
    summary="Your period checkpoints, by customer and period",
    responses={200: {"model": CheckpointListResponse}, **errors(400, 401)},
)
async def list_checkpoints(
    services: ServicesDep,
    principal: Auth,
    customerId: Annotated[str | None, Query(max_length=128), documented_as(ACCOUNT_ID)] = None,  # noqa: N803
    period: Period = None,
    timePreset: TimePreset = None,  # noqa: N803 - PacSpace's SDK's name
    startDate: OptionalText = None,  # noqa: N803
    endDate: OptionalText = None,  # noqa: N803
    limit: Annotated[int, Query(ge=1, le=1000), INTEGER_TEXT] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9), INTEGER_TEXT] = 0,
) -> JSONResponse:
    months = given(period=period, timePreset=timePreset, startDate=startDate, endDate=endDate)
    records, total = await run_in_threadpool(
        services.balances.checkpoints, principal, customerId, months, limit, offset
    )
    return JSONResponse(
        {
            "success": True,
            "data": {
                "checkpoints": [checkpoint_json(r) for r in records],
                "total": total,
                "limit": limit,
                "offset": offset,
            },
        }
    )


@router.get(
    "/api/v1/balance/receipt/{customerId}",
    summary="A locked period in receipt form, for an invoice",
    responses={200: {"model": ReceiptResponse}, **errors(400, 401, 404)},
)
async def receipt(
    customerId: Annotated[str, Path(), documented_as(ACCOUNT_ID)],  # noqa: N803
    request: Request,
    services: ServicesDep,
    principal: Auth,
    # One of them is required: the service names period when none is given, as a 400.
    period: Period = None,
    timePreset: TimePreset = None,  # noqa: N803 - PacSpace's SDK's name
    startDate: OptionalText = None,  # noqa: N803
    endDate: OptionalText = None,  # noqa: N803
) -> JSONResponse:
    month = given(period=period, timePreset=timePreset, startDate=startDate, endDate=endDate)
    record = await run_in_threadpool(services.balances.receipt, principal, customerId, month)
    root = hex_root(record.proof_root)
    base = services.settings.public_url or str(request.base_url).rstrip("/")
    api_url = f"{base}/api/v1/verify/{root}"
    return JSONResponse(
        {
            "success": True,
            "data": {
                "checkpointId": record.id,
                "customerId": record.customer_id,
                "period": record.period,
                "proofRoot": root,
                "deltaCount": record.deltas_count,
                "startingBalance": record.opening_balance,
                "finalBalance": record.closing_balance,
                "netChange": record.net,
                "treeSize": record.tree_size,
                "verifyUrl": api_url,
                "verificationApiUrl": api_url,
            },
        }
    )


# PacSpace's name for the same route.
router.add_api_route(
    "/api/v1/balance/invoice-proof/{customerId}",
    receipt,
    methods=["GET"],
    operation_id="invoice_proof",
    summary="Alias of the receipt route (PacSpace's name)",
    responses={200: {"model": ReceiptResponse}, **errors(400, 401, 404)},
)
