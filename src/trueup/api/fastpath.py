"""The two hot write routes answered straight from ASGI, without the router's layers.

``POST /api/v1/writes`` and ``POST /api/v1/balance/delta`` are the routes clients call at high
rates. Under load FastAPI's middleware stack, routing and dependency solving cost about as much
as the write itself, so this middleware (added last, so it is the first of ours to run, inside
only Starlette's and FastAPI's own outer layers) answers exactly those two paths by calling the
same functions as their FastAPI routes (which stay, and document them in OpenAPI). Every other
request, and these paths with another method, go to the app unchanged. Moving it in front of
those outer layers too was measured and gained nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from trueup.api.body import read_json
from trueup.api.deps import authenticate_key
from trueup.api.errors import response_for
from trueup.api.routes.replies import reply_response
from trueup.service.container import Services
from trueup.service.ingest import Reply
from trueup.service.keys import Principal
from trueup.service.metrics import HTTP_RESPONSES

__all__ = ["WriteFastPath"]

Handler = Callable[[Principal, Any, bytes, "str | None"], Awaitable[Reply]]


class WriteFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.handlers: dict[str, Handler] = {
            "/api/v1/writes": services.writes.writes,
            "/api/v1/balance/delta": services.writes.emit,
        }
        self.responses: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            principal = await authenticate_key(self.services, request.headers.get("x-api-key"))
            self.services.writes.require_write(principal)  # before the body, as the routes do
            document, body = await read_json(request, self.services.settings)
            idempotency_key = request.headers.get("idempotency-key")
            response: Response = reply_response(await handler(principal, document, body, idempotency_key))
        except Exception as exc:  # noqa: BLE001 - mapped exactly as the app's handlers map it
            response = await response_for(request, exc)
        counted = (scope["path"], response.status_code // 100)
        counter = self.responses.get(counted)
        if counter is None:  # labels() looks the child up anew each time; these few are kept
            counter = self.responses[counted] = HTTP_RESPONSES.labels(counted[0], f"{counted[1]}xx")
        counter.inc()
        await response(scope, receive, send)
