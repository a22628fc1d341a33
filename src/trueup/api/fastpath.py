"""The two hot write routes answered without the router's layers, and without ASGI at all for
a request that arrives whole.

``POST /api/v1/writes`` and ``POST /api/v1/balance/delta`` are the routes clients call at high
rates. Under load FastAPI's middleware stack, routing and dependency solving cost about as much
as the write itself, so :class:`WriteFastPath` (a middleware added last, so it is the first of
ours to run, inside only Starlette's and FastAPI's own outer layers) answers exactly those two
paths by calling the same functions as their FastAPI routes (which stay, and document them in
OpenAPI). Every other request, and these paths with another method, go to the app unchanged.

:class:`WriteAnswers` is what both ways in share. The HTTP protocol
(:mod:`trueup.api.whole_writes`) calls :meth:`WriteAnswers.answer_whole` itself for a plain
request to one of the two paths whose body came with its head, so such a request skips uvicorn's
request cycle and the ASGI messages too; anything unusual about a request sends it the usual
way, which answers it exactly as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from trueup.api.body import check_json_head, read_json
from trueup.api.deps import authenticate_key
from trueup.api.errors import response_for
from trueup.api.routes.replies import reply_response
from trueup.core.strict_json import loads_strict
from trueup.service.container import Services
from trueup.service.ingest import Reply
from trueup.service.keys import Principal
from trueup.service.metrics import HTTP_RESPONSES

__all__ = ["WriteAnswers", "WriteFastPath"]

Handler = Callable[[Principal, Any, bytes, "str | None"], Awaitable[Reply]]


class WriteAnswers:
    """The replies of the two hot write routes, over ``services``."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.handlers: dict[str, Handler] = {
            "/api/v1/writes": services.writes.writes,
            "/api/v1/balance/delta": services.writes.emit,
        }
        self.targets = frozenset(path.encode() for path in self.handlers)
        """The request targets the HTTP protocol may answer whole (exactly these bytes: no query,
        no escapes)."""
        self._responses: dict[tuple[str, int], Counter] = {}

    async def answer(self, scope: Scope, receive: Receive) -> Response:
        """The reply to a request to one of :attr:`handlers`, its body read from ``receive``."""
        request = Request(scope, receive)
        try:
            principal = await authenticate_key(self.services, request.headers.get("x-api-key"))
            self.services.writes.require_write(principal)  # before the body, as the routes do
            document, body = await read_json(request, self.services.settings, principal.tenant_id)
            idempotency_key = request.headers.get("idempotency-key")
            handler = self.handlers[scope["path"]]
            response: Response = reply_response(await handler(principal, document, body, idempotency_key))
        except Exception as exc:  # noqa: BLE001 - mapped exactly as the app's handlers map it
            response = await response_for(request, exc)
        return self._counted(scope["path"], response)

    async def answer_whole(
        self,
        scope: Scope,
        api_key: str | None,
        idempotency_key: str | None,
        content_type: str,
        content_length: str,
        body: bytes,
    ) -> Response:
        """The reply to a request to one of :attr:`handlers` whose whole ``body`` has come, with
        the values of its headers (each given at most once). The same checks in the same order
        as :meth:`answer`: a request answers alike either way."""
        try:
            principal = await authenticate_key(self.services, api_key)
            self.services.writes.require_write(principal)
            # The body came whole, read by its Content-Length: the head's check is the size check.
            check_json_head(content_type, content_length, self.services.settings.max_body_bytes)
            handler = self.handlers[scope["path"]]
            response: Response = reply_response(
                await handler(principal, loads_strict(body), body, idempotency_key)
            )
        except Exception as exc:  # noqa: BLE001 - mapped exactly as the app's handlers map it
            response = await response_for(Request(scope), exc)
        return self._counted(scope["path"], response)

    def _counted(self, path: str, response: Response) -> Response:
        counted = (path, response.status_code // 100)
        counter = self._responses.get(counted)
        if counter is None:  # labels() looks the child up anew each time; these few are kept
            counter = self._responses[counted] = HTTP_RESPONSES.labels(path, f"{counted[1]}xx")
        counter.inc()
        return response


class WriteFastPath:
    """ASGI middleware: the two hot write routes answered by :class:`WriteAnswers`. A request
    with a query string goes the usual way, where the route refuses parameters it does not take
    (``trueup.api.unknown_params``): the hot routes take none, and a write sent as
    ``?dryRun=true`` must not be stored."""

    def __init__(self, app: ASGIApp, answers: WriteAnswers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in self.answers.handlers
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        response = await self.answers.answer(scope, receive)
        await response(scope, receive, send)
