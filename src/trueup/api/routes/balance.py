"""Derive (seed) and compare (seed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from trueup.api.body import read_json
from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors, json_body
from trueup.api.params import OptionalText, Period, TimePreset, integer_schema, one_of
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import delta_json, hex_root
from trueup.api.schemas.balances import CompareBody, CompareResponse, DeriveResponse
from trueup.api.schemas.common import ACCOUNT_ID, documented_as
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.compare import to_wire
from trueup.core.ids import anchor_id
from trueup.core.scopes import DERIVE_PARAMS, MAX_BALANCE, MAX_OFFSET
from trueup.core.timestamps import MAX_TIME, format_wire, format_wire_ms
from trueup.service.balances import Derived

router = APIRouter(tags=["balance"], route_class=RefusingUnknownParameters)


StartingBalance = Annotated[str | None, Query(), integer_schema(-MAX_BALANCE, MAX_BALANCE)]
Limit = Annotated[str | None, Query(), integer_schema(1, 1000)]
Offset = Annotated[str | None, Query(), integer_schema(0, MAX_OFFSET)]
CheckpointType = Annotated[
    str | None, Query(max_length=200), one_of("itemsRoot", "anchorId", "proofRoot", "recordId")
]
Order = Annotated[str | None, Query(max_length=200), one_of("asc", "desc")]


@router.get(
    "/api/v1/balance/derive/{customerId}",
    summary="Derive a customer's balance from verified deltas (with checkpoints and scopes)",
    responses={200: {"model": DeriveResponse}, **errors(400, 401, 404, 503)},
)
async def derive(
    customerId: Annotated[str, Path(), documented_as(ACCOUNT_ID)],  # noqa: N803 - the seed's name
    request: Request,
    services: ServicesDep,
    principal: Auth,
    startingBalance: StartingBalance = None,  # noqa: N803 - declared for OpenAPI, read from the query below
    startingCheckpoint: OptionalText = None,  # noqa: N803
    startingCheckpointType: CheckpointType = None,  # noqa: N803
    limit: Limit = None,
    offset: Offset = None,
    order: Order = None,
    period: Period = None,
    timePreset: TimePreset = None,  # noqa: N803
    startDate: OptionalText = None,  # noqa: N803
    endDate: OptionalText = None,  # noqa: N803
    asOf: OptionalText = None,  # noqa: N803
) -> JSONResponse:
    # Declared above for the OpenAPI document; parsed by the core so every error names its
    # field the same way on every route.
    params = {name: request.query_params[name] for name in DERIVE_PARAMS if name in request.query_params}
    derived = await run_in_threadpool(services.balances.derive, principal, customerId, params)
    return JSONResponse({"success": True, "data": derive_json(derived)})


def derive_json(derived: Derived) -> dict[str, Any]:
    head = derived.head
    query = derived.query
    newest = derived.newest
    scope: dict[str, Any] = {"kind": "all"}
    if derived.checkpoint is not None:
        scope = {"kind": "checkpoint", **derived.checkpoint}
    elif query.start is not None or query.end is not None:
        scope = {
            "kind": "period" if query.period else "time",
            "period": query.period,
            "start": None if query.start is None else format_wire(query.start),
            # None: open-ended (asOf the last microsecond of 9999 has no end after it to show).
            "endExclusive": None if query.end in (None, MAX_TIME) else format_wire(query.end),
        }
    return {
        "customerId": derived.customer_id,
        "computedBalance": derived.balance,
        "startingBalance": query.starting_balance,
        "deltasCount": derived.summary.count,
        "latestCheckpoint": hex_root(head.root),
        "startingCheckpoint": derived.checkpoint,
        "deltas": [delta_json(delta) for delta in derived.deltas],
        "windowSummaries": [
            {
                "period": m.period,
                "totalCredits": m.credits,
                "totalDebits": m.debits,
                "netChange": m.net,
                "deltasCount": m.count,
            }
            for m in derived.summary.months
        ],
        "verificationProof": {
            "rootHash": hex_root(head.root),
            "algorithm": "sha256",
            "timestamp": format_wire_ms(head.timestamp_ms),
            "treeSize": head.size,
            "checkpoint": head.checkpoint,
            "inclusionProof": None
            if newest is None
            else {
                "anchorId": anchor_id(newest.leaf_index),
                "leafIndex": newest.leaf_index,
                "leafHash": newest.leaf_hash.hex(),
                "proof": [node.hex() for node in newest.path],
            },
        },
        "limit": query.limit,
        "offset": query.offset,
        "order": "desc" if query.descending else "asc",
        "scope": scope,
    }


@router.post(
    "/api/v1/balance/compare",
    summary="Compare your balance with a counterparty's: who is wrong, when, and which delta",
    responses={200: {"model": CompareResponse}, **errors(400, 401, 404, 413, 415, 503)},
    openapi_extra=json_body(CompareBody),
)
async def compare(request: Request, services: ServicesDep, principal: Auth) -> JSONResponse:
    document, _ = await read_json(request, services.settings, principal.tenant_id)
    result, starting, head = await run_in_threadpool(services.balances.compare, principal, document)
    data = to_wire(result)
    data["startingBalance"] = starting
    data["latestCheckpoint"] = hex_root(head.root)
    return JSONResponse({"success": True, "data": data})
