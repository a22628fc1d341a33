"""``/metrics`` and the middleware that counts responses by route and status class."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trueup.api.deps import ServicesDep
from trueup.api.unknown_params import RefusingUnknownParameters
from trueup.service.metrics import HTTP_RESPONSES, refresh_database_gauges, render, route_label

__all__ = ["ResponseCounter", "router"]

router = APIRouter(tags=["health"], route_class=RefusingUnknownParameters)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format)",
    responses={200: {"content": {"text/plain": {}}, "description": "metrics"}},
)
async def metrics(services: ServicesDep) -> Response:
    # The gauges read from the database, each read waiting at most PROBE_WAIT_S: a 503 when down.
    await run_in_threadpool(refresh_database_gauges, services.storage)
    return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")


class ResponseCounter:
    """Pure ASGI middleware: counts every response as (route template, 2xx/4xx/5xx…)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                template = route_label(scope.get("route"))
                HTTP_RESPONSES.labels(template, f"{message['status'] // 100}xx").inc()
            await send(message)

        await self.app(scope, receive, counting_send)
