"""The tenant's customers and its plan usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors
from trueup.api.params import INTEGER_TEXT, Period, given, integer_schema
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import delta_json
from trueup.api.schemas.balances import CustomerListResponse, CustomerResponse, UsageResponse
from trueup.api.schemas.common import ACCOUNT_ID, documented_as
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.scopes import MAX_DELTA_PAGE
from trueup.core.timestamps import format_wire
from trueup.storage.balance_records import AccountRecord

router = APIRouter(tags=["customers"], route_class=RefusingUnknownParameters)


def _customer(account: AccountRecord) -> dict[str, Any]:
    return {
        "customerId": account.customer_id,
        "balance": account.balance,
        "deltaCount": account.delta_count,
        "firstActivity": format_wire(account.first_activity) if account.first_activity else None,
        "lastActivity": format_wire(account.last_activity) if account.last_activity else None,
    }


@router.get(
    "/api/v1/balance/customers",
    summary="Your customers with balance, delta count and last activity",
    responses={200: {"model": CustomerListResponse}, **errors(400, 401)},
)
async def customers(
    services: ServicesDep,
    principal: Auth,
    search: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000), INTEGER_TEXT] = 50,
    page: Annotated[int, Query(ge=1, le=10**7), INTEGER_TEXT] = 1,
) -> JSONResponse:
    found, total = await run_in_threadpool(services.balances.customers, principal, search, limit, page)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "customers": [_customer(a) for a in found],
                "total": total,
                "page": page,
                "limit": limit,
            },
        }
    )


@router.get(
    "/api/v1/balance/customers/{customerId}",
    summary="One customer: balance, delta count, activity and monthly totals",
    responses={200: {"model": CustomerResponse}, **errors(400, 401, 404)},
)
async def customer(
    customerId: Annotated[str, Path(), documented_as(ACCOUNT_ID)],  # noqa: N803
    services: ServicesDep,
    principal: Auth,
    period: Period = None,
    # Read as text: the core parses them, naming each in its errors as derive's limit is named.
    deltaPage: Annotated[str | None, Query(), integer_schema(1, MAX_DELTA_PAGE)] = None,  # noqa: N803 - the SDK's
    deltaLimit: Annotated[str | None, Query(), integer_schema(1, 1000)] = None,  # noqa: N803
) -> JSONResponse:
    params = given(period=period, deltaPage=deltaPage, deltaLimit=deltaLimit)
    view = await run_in_threadpool(services.balances.customer, principal, customerId, params)
    query = view.query
    return JSONResponse(
        {
            "success": True,
            "data": {
                **_customer(view.account),
                "period": query.period,
                "windowSummaries": [
                    {
                        "period": m.period,
                        "totalCredits": m.credits,
                        "totalDebits": m.debits,
                        "netChange": m.net,
                        "deltasCount": m.count,
                    }
                    for m in view.months
                ],
                "deltas": [delta_json(delta) for delta in view.deltas],
                "deltasInScope": view.deltas_in_scope,
                "deltaPage": query.offset // query.limit + 1,
                "deltaLimit": query.limit,
            },
        }
    )


@router.get(
    "/api/v1/balance/usage",
    summary="Your plan, its monthly allowance and this month's use",
    responses={200: {"model": UsageResponse}, **errors(401)},
)
async def usage(services: ServicesDep, principal: Auth) -> JSONResponse:
    data = await run_in_threadpool(services.keys.usage, principal)
    return JSONResponse({"success": True, "data": data})
