"""Webhook endpoints (``/api/v1/webhooks``) and deliveries as PacSpace lists them
(``/api/v1/balance/webhooks``), DESIGN.md §2.7."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trueup.api.body import read_json
from trueup.api.deps import Auth, ServicesDep
from trueup.api.openapi import errors, json_body
from trueup.api.params import INTEGER_TEXT
from trueup.api.responses import JSONResponse
from trueup.api.routes.replies import reply_response
from trueup.api.schemas.common import DELIVERY_STATUS, IDEMPOTENCY_KEY, documented_as
from trueup.api.schemas.webhooks import (
    WebhookCreateBody,
    WebhookDeletedResponse,
    WebhookDeliveriesResponse,
    WebhookEndpointListResponse,
    WebhookEventResponse,
    WebhookRetryResponse,
    WebhookSecretResponse,
)
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.core.errors import ValidationError
from trueup.core.timestamps import format_canonical, format_wire
from trueup.service.webhook_targets import MAX_URL_LENGTH
from trueup.service.webhooks import ENDPOINT_CREATE_ROUTE
from trueup.storage.webhooks import DeliveryView, EndpointRecord

router = APIRouter(tags=["webhooks"], route_class=RefusingUnknownParameters)


def _time(value: str | None) -> str | None:
    return None if value is None else format_wire(value)


def endpoint_json(endpoint: EndpointRecord) -> dict[str, Any]:
    # previousSecretExpiresAt is null once the previous secret has stopped signing: a time in
    # the past would read as an overlap still to come to a client that does not compare clocks.
    now = format_canonical(datetime.now(UTC))
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events) or ["*"],
        "createdAt": format_wire(endpoint.created_at),
        "rotatedAt": _time(endpoint.rotated_at),
        "previousSecretExpiresAt": _time(endpoint.previous_signs_until(now)),
    }


def delivery_json(delivery: DeliveryView) -> dict[str, Any]:
    # PacSpace's SDK upper-cases every "status" it reads and turns values it does not know
    # into "QUEUED"; deliveryStatus carries the same value untouched.
    return {
        "eventId": delivery.event_id,
        "event": delivery.event_type,
        "webhookId": delivery.endpoint_id,
        "url": delivery.url,
        "status": delivery.status,
        "deliveryStatus": delivery.status,
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "lastAttemptAt": _time(delivery.last_attempt_at),
        "nextAttemptAt": _time(delivery.next_attempt_at),
        "deliveredAt": _time(delivery.delivered_at),
        "createdAt": format_wire(delivery.created_at),
    }


@router.post(
    "/api/v1/webhooks",
    status_code=201,
    summary="Register a webhook endpoint; its whsec_ secret is shown only in this reply",
    responses={201: {"model": WebhookSecretResponse}, **errors(400, 401, 403, 409, 413, 415, 429)},
    openapi_extra=json_body(WebhookCreateBody),
)
async def create_endpoint(
    request: Request,
    services: ServicesDep,
    principal: Auth,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key"), documented_as(IDEMPOTENCY_KEY)
    ] = None,
) -> Response:
    services.webhooks.require_write(principal)  # a read-only key's 403 comes before any body error
    document, body = await read_json(request, services.settings, principal.tenant_id)
    route = ENDPOINT_CREATE_ROUTE
    replay = await run_in_threadpool(services.writes.replay, principal, idempotency_key, route, body)
    if replay is not None:
        return reply_response(replay)  # a retried create: the same endpoint and secret
    issued = await run_in_threadpool(services.webhooks.prepare, principal, document)
    payload = {"success": True, "data": {**endpoint_json(issued.endpoint), "secret": issued.secret}}
    # The endpoint and its reply are stored together: a retry racing this request replays it.
    reply = await run_in_threadpool(
        services.writes.remember,
        principal,
        idempotency_key,
        route,
        body,
        201,
        payload,
        services.webhooks.storing(issued),
    )
    return reply_response(reply)


@router.get(
    "/api/v1/webhooks",
    summary="Your active webhook endpoints (secrets are never shown again)",
    responses={200: {"model": WebhookEndpointListResponse}, **errors(401, 429)},
)
async def list_endpoints(services: ServicesDep, principal: Auth) -> JSONResponse:
    endpoints = await run_in_threadpool(services.webhooks.endpoints, principal)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "webhooks": [endpoint_json(e) for e in endpoints],
                "total": len(endpoints),
            },
        }
    )


def _deleted(endpoints: list[EndpointRecord]) -> JSONResponse:
    first = endpoints[0]
    data = {"id": first.id, "url": first.url, "deleted": True, "ids": [e.id for e in endpoints]}
    return JSONResponse({"success": True, "data": data})


async def _delete(services: ServicesDep, principal: Auth, endpoint_id: str) -> JSONResponse:
    endpoint = await run_in_threadpool(services.webhooks.delete, principal, endpoint_id)
    return _deleted([endpoint])


@router.delete(
    "/api/v1/webhooks",
    summary="Delete the endpoint named by ?id=, or every one with the ?url=; pending deliveries fail",
    responses={200: {"model": WebhookDeletedResponse}, **errors(400, 401, 403, 404, 429)},
)
async def delete_endpoint_by_query(
    services: ServicesDep,
    principal: Auth,
    id: Annotated[str | None, Query(description="the endpoint's id; give it or url, not both")] = None,
    url: Annotated[str | None, Query(description="the endpoint's url; give it or id, not both")] = None,
) -> JSONResponse:
    # A read-only key's 403 comes first, before anything about the parameters or the lookup.
    services.webhooks.require_write(principal)
    if (id is None) == (url is None):
        raise ValidationError("id", "give exactly one of id or url to name the endpoint")
    for name, value, longest in (("id", id, 64), ("url", url, MAX_URL_LENGTH)):
        if value is not None and len(value) > longest:
            raise ValidationError(name, f"must be at most {longest} characters, got {len(value):,}")
    if id is None:
        assert url is not None
        return _deleted(await run_in_threadpool(services.webhooks.delete_by_url, principal, url))
    return await _delete(services, principal, id)


@router.delete(
    "/api/v1/webhooks/{webhookId}",
    summary="Delete an endpoint; its pending deliveries fail",
    responses={200: {"model": WebhookDeletedResponse}, **errors(401, 403, 404, 429)},
)
async def delete_endpoint(
    webhookId: str,  # noqa: N803 - the wire name
    services: ServicesDep,
    principal: Auth,
) -> JSONResponse:
    return await _delete(services, principal, webhookId)


@router.post(
    "/api/v1/webhooks/{webhookId}/rotate",
    summary="Rotate the secret: the new one is shown once; the old one also signs for 24 hours",
    responses={200: {"model": WebhookSecretResponse}, **errors(401, 403, 404, 429)},
)
async def rotate_secret(
    webhookId: str,  # noqa: N803 - the wire name
    services: ServicesDep,
    principal: Auth,
) -> JSONResponse:
    issued = await run_in_threadpool(services.webhooks.rotate, principal, webhookId)
    data = {**endpoint_json(issued.endpoint), "secret": issued.secret}
    return JSONResponse({"success": True, "data": data})


@router.get(
    "/api/v1/balance/webhooks",
    summary="Webhook deliveries, newest first (PacSpace's list_webhook_deliveries)",
    responses={200: {"model": WebhookDeliveriesResponse}, **errors(400, 401, 429)},
)
async def list_deliveries(
    services: ServicesDep,
    principal: Auth,
    status: Annotated[
        str | None,
        Query(max_length=20),
        documented_as(DELIVERY_STATUS, "pending, delivered or failed (any case); empty or omitted: all"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100), INTEGER_TEXT] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9), INTEGER_TEXT] = 0,
) -> JSONResponse:
    deliveries, total = await run_in_threadpool(
        services.webhooks.deliveries, principal, status, limit, offset
    )
    return JSONResponse(
        {
            "success": True,
            "data": {
                "deliveries": [delivery_json(d) for d in deliveries],
                "total": total,
                "limit": limit,
                "offset": offset,
            },
        }
    )


@router.get(
    "/api/v1/balance/webhooks/{eventId}",
    summary="One event: its payload, its deliveries and every recorded attempt",
    responses={200: {"model": WebhookEventResponse}, **errors(401, 404, 429)},
)
async def event_detail(
    eventId: str,  # noqa: N803 - the wire name
    services: ServicesDep,
    principal: Auth,
) -> JSONResponse:
    detail = await run_in_threadpool(services.webhooks.event, principal, eventId)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "eventId": detail.event_id,
                "event": detail.event_type,
                "payload": json.loads(detail.payload),
                "deliveries": [delivery_json(d) for d in detail.deliveries],
                "attempts": [
                    {
                        "webhookId": a.endpoint_id,
                        "attempt": a.attempt,
                        "startedAt": format_wire(a.started_at),
                        "durationMs": a.duration_ms,
                        "statusCode": a.status_code,
                        "error": a.error,
                    }
                    for a in detail.attempts
                ],
            },
        }
    )


@router.post(
    "/api/v1/balance/webhooks/{eventId}/retry",
    summary="Send an event again now, with a fresh retry budget (PacSpace's retry_webhook)",
    responses={200: {"model": WebhookRetryResponse}, **errors(401, 403, 404, 409, 429)},
)
async def retry_event(
    eventId: str,  # noqa: N803 - the wire name
    services: ServicesDep,
    principal: Auth,
) -> JSONResponse:
    queued = await run_in_threadpool(services.webhooks.retry, principal, eventId)
    return JSONResponse(
        {
            "success": True,
            "data": {
                "eventId": eventId,
                "status": "pending",
                "deliveryStatus": "pending",
                "queued": queued,
            },
        }
    )
