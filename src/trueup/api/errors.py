"""The one table from error to HTTP status, and the error envelope every route uses.

``{"success": false, "statusCode": N, "error": "<reason phrase>", "code": "UPPER_SNAKE",
"message": "..."}`` (+ ``retryAfterSeconds`` where it applies). A 500 carries a request id
and never a stack trace; bad input never reaches a 500.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from trueup.api.responses import JSONResponse
from trueup.core import errors as domain
from trueup.core.json_text import quoted
from trueup.core.strict_json import describe
from trueup.service.group_commit import STORAGE_RETRY_AFTER_S, incident_of
from trueup.service.metrics import HTTP_RESPONSES, route_label
from trueup.storage.errors import StorageFullError, StorageUnavailableError

__all__ = [
    "REQUEST_ID_STATE",
    "STATUS_BY_ERROR",
    "error_body",
    "error_response",
    "install_error_handlers",
    "named",
    "quiet_relogged_errors",
    "response_for",
    "shown_path",
]

log = logging.getLogger(__name__)

REQUEST_ID_STATE = "http_request_id"
"""Where a request's scope state (``request.state``) holds the id its reply's ``X-Request-Id``
names it by, as text (set by the HTTP protocol of ``trueup serve``)."""

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: tuple[tuple[type[domain.DomainError], int], ...] = (
    (domain.ValidationError, 400),
    (domain.InvalidApiKeyError, 401),
    (domain.PlanLimitExceededError, 402),
    (domain.ForbiddenError, 403),
    (domain.NotFoundError, 404),
    (domain.ConflictError, 409),
    (domain.RequestTimeoutError, 408),
    (domain.PayloadTooLargeError, 413),
    (domain.UnsupportedMediaTypeError, 415),
    (domain.RateLimitedError, 429),
    (domain.UnavailableError, 503),
)

_CODE_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "INVALID_API_KEY",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


_PHRASES = {413: "Content Too Large"}
"""Reason phrases RFC 9110 renamed, which this Python's ``HTTPStatus`` still spells the old way."""


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": False,
        "statusCode": status,
        "error": _PHRASES.get(status) or HTTPStatus(status).phrase,
        "code": code,
        "message": message,
    }
    body.update(extra)
    return body


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers: dict[str, str] = {}
    if "retryAfterSeconds" in extra:
        headers["Retry-After"] = str(extra["retryAfterSeconds"])
    if status == 401:
        headers["WWW-Authenticate"] = 'ApiKey header="X-Api-Key"'
    if status == 408:  # the rest of the body may still come: the connection cannot be reused
        headers["Connection"] = "close"
    return JSONResponse(error_body(status, code, message, **extra), status_code=status, headers=headers)


def status_of(error: domain.DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 400


def _domain_response(error: domain.DomainError) -> JSONResponse:
    extra: dict[str, Any] = {}
    retry_after = getattr(error, "retry_after_seconds", None)  # rate limits, a log far behind
    if retry_after is not None:
        extra["retryAfterSeconds"] = retry_after
    incident = getattr(error, "incident_id", None)  # a failure the log names by it
    if incident is not None:
        extra["requestId"] = incident
    return error_response(status_of(error), error.code, error.message, **extra)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, domain.DomainError)
    return _domain_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:5]:
        location = error.get("loc", ())
        where = ".".join(str(part) for part in location if part not in ("query", "path", "header"))
        message = error.get("msg", "is invalid")
        if error.get("type") == "missing":  # in the domain's words, as a body's missing field
            message = "is required"
        # The value, as the domain's own messages show it; a missing one has none to show.
        elif "input" in error and ", got " not in message:
            message = f"{message}, got {describe(error['input'])}"
        problems.append(f"{where or 'request'}: {message}")
    return error_response(400, "VALIDATION_ERROR", "; ".join(problems) or "invalid request")


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, "ERROR")
    path = request.scope["path"]
    if status == 404:
        message = f"no route {request.method} {shown_path(path)}"
        if _routed(request, path=path.rstrip("/")):
            message += f"; paths take no trailing slash: {shown_path(path.rstrip('/'))}"
    elif status == 405:
        message = f"{request.method} is not allowed on {shown_path(path)}"
    else:
        message = str(exc.detail)
    response = error_response(status, code, message)
    if status == 405:
        response.headers["Allow"] = _allowed_methods(request)
    return response


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (RFC 9110 §15.5.6: a 405 names them all;
    Starlette's own names only those of the first route whose path matched)."""
    return ", ".join(method for method in _METHODS if _routed(request, method=method))


def _routed(request: Request, **changed: str) -> bool:
    """Whether some route takes this request with ``changed`` (``method``, ``path``), asked of
    the router as a request of its own would be."""
    scope = {**request.scope, **changed}
    if scope["path"] == "":
        return False
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


async def _on_storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The reply quotes the id the log line names the failure by, as a failed group commit's does.
    incident = incident_of(exc)
    log.error(
        "storage unavailable %s on %s %s%s: %s",
        incident,
        request.method,
        shown_path(request.scope["path"]),
        named(request.scope),
        exc,
    )
    reply = exc.reply if isinstance(exc, StorageUnavailableError) else StorageUnavailableError.reply
    if isinstance(exc, StorageFullError) and request.method in ("GET", "HEAD"):
        reply = exc.read_reply
    return error_response(
        503, "SERVICE_UNAVAILABLE", reply, retryAfterSeconds=STORAGE_RETRY_AFTER_S, requestId=incident
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = incident_of(exc)
    log.error(
        "unhandled error %s on %s %s%s",
        incident,
        request.method,
        shown_path(request.scope["path"]),
        named(request.scope),
        exc_info=exc,
    )
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__
        exc.incident_id = incident  # type: ignore[attr-defined]  # logged: see _LoggedAlready
    return error_response(
        500, "INTERNAL_ERROR", "internal error; quote this id when reporting it", requestId=incident
    )


_LONGEST_PATH = 200
"""Characters of a request's path that a message or a log line shows (a path may be 64 KiB)."""


def shown_path(path: str) -> str:
    """A request's (decoded) path as a message or log line shows it: as it is when every
    character prints and it is short, else quoted as a JSON string, cut to
    :data:`_LONGEST_PATH` characters, with a ``\\uXXXX`` escape for every character that does
    not print (a line feed, a line separator, a right-to-left override): shown, never acted on."""
    if len(path) <= _LONGEST_PATH and path.isprintable():
        return path
    return quoted(path, _LONGEST_PATH)


def named(scope: Mapping[str, Any]) -> str:
    """`` x-request-id=…``: the id the reply to the request of ``scope`` names it by (its
    ``X-Request-Id``, given by the HTTP protocol of ``trueup serve``), for a log line about it;
    empty without one."""
    given = scope.get("state", {}).get(REQUEST_ID_STATE)
    return f" x-request-id={given}" if given else ""


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    """The app's handler of last resort. Starlette sends its reply from outside every
    middleware of ours, so it is counted here (the write fast path counts its own). A failure
    after a reply has started is counted twice, as that reply's class and as a 5xx."""
    HTTP_RESPONSES.labels(route_label(request.scope.get("route")), "5xx").inc()
    return await _on_unexpected(request, exc)


async def response_for(request: Request, exc: Exception) -> JSONResponse:
    """The reply the app's handlers give ``exc`` (for code that answers outside the router)."""
    if isinstance(exc, domain.DomainError):
        return _domain_response(exc)
    if isinstance(exc, StorageUnavailableError):
        return await _on_storage_unavailable(request, exc)
    return await _on_unexpected(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(domain.DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(StorageUnavailableError, _on_storage_unavailable)
    app.add_exception_handler(Exception, _on_unhandled)


class _LoggedAlready(logging.Filter):
    """Drops a record of an exception that carries the id it was logged with (``incident_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(getattr(record.exc_info[1], "incident_id", None), str))


def quiet_relogged_errors() -> None:
    """Leave out of the log the second traceback of an error the app has logged with its id.

    Starlette raises an unhandled error again once the app's handler has answered it, and
    uvicorn logs it ("Exception in ASGI application") with the same traceback and no id: read
    as a second error."""
    logging.getLogger("uvicorn.error").addFilter(_LoggedAlready())
