"""The answer to a request cut off by a stopping server: a 503 that says to retry.

A graceful stop answers the requests in flight for up to 10 s (docs/scaling.md, "Stopping"),
then uvicorn cancels those still unanswered, typically a request whose body has not all come.
Left to uvicorn, the cancellation is logged as an "Exception in ASGI application" with its
traceback and answered with a plain-text ``500 Internal Server Error``, which tells a client
(or a load balancer) that the server failed on that request. Usually nothing of it was stored
(its body had not all come), but a write cut off while its commit was in flight may have been;
either way a retry with the same keys stores each delta once, so the right answer is the
envelope's ``503 SERVICE_UNAVAILABLE`` with ``Retry-After``: retry, elsewhere or later.

Only uvicorn's shutdown cancels a request's task (a client that goes away is told through
``receive`` instead), so a cancellation reaching this layer before any reply began is a stop.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trueup.api.errors import error_response, named, shown_path
from trueup.service.group_commit import STORAGE_RETRY_AFTER_S
from trueup.service.metrics import HTTP_RESPONSES, route_label

__all__ = ["CUT_OFF_MESSAGE", "AnswerCutOffRequests"]

log = logging.getLogger(__name__)

CUT_OFF_MESSAGE = (
    "the server is stopping and cut this request off unanswered; retry it "
    "(a write retried with the same keys stores each delta once)"
)


class AnswerCutOffRequests:
    """Pure ASGI middleware, the app's outermost: a request cancelled by the server's stop
    before its reply began is answered 503 (with ``Connection: close``), not uvicorn's 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            if started:
                raise  # uvicorn closes the connection, as for any reply cut short
            log.warning(
                "stopping: %s %s cut off unanswered; answered 503%s",
                scope["method"],
                shown_path(scope["path"]),
                named(scope),
            )
            HTTP_RESPONSES.labels(route_label(scope.get("route")), "5xx").inc()
            reply = error_response(
                503, "SERVICE_UNAVAILABLE", CUT_OFF_MESSAGE, retryAfterSeconds=STORAGE_RETRY_AFTER_S
            )
            reply.headers["Connection"] = "close"
            # The reply ends the request, and with it the task uvicorn cancelled: not re-raised.
            await reply(scope, receive, send)
