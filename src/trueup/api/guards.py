"""Refusing, before routing, request text that no route could use: NUL in the path or query,
and a header that may be given once given twice.

A NUL (``%00``) can be neither stored nor looked up on PostgreSQL (its text type refuses it, so
a lookup by such an id would fail as a server error) and matches nothing that was stored on
SQLite, since bodies with NUL in them are refused too (:mod:`trueup.core.strict_json`). One
check here, in front of every other middleware (the write fast path too), answers every route
alike: 400, naming the path or the query parameter.

``X-Api-Key``, ``Idempotency-Key`` and ``Content-Type`` given twice are refused the same way:
routes read the first, so a request could be authenticated, deduplicated or parsed by another
value than the one a proxy or a log in between took for it. So is a query parameter given twice
(``startingBalance=1&startingBalance=2``): no route takes a list, and the one read would be the
last.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from trueup.api.errors import error_response
from trueup.service.metrics import HTTP_RESPONSES

__all__ = ["RefuseAmbiguousInput"]

_NUL = "must not contain the NUL character (%00)"
_ONCE = {b"x-api-key": "X-Api-Key", b"idempotency-key": "Idempotency-Key", b"content-type": "Content-Type"}


def _repeated_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first of the headers in ``_ONCE`` given more than once, or ``None``."""
    seen: set[bytes] = set()
    for name, _ in headers:  # lower-case, as ASGI servers give them
        if name in _ONCE:
            if name in seen:
                return _ONCE[name]
            seen.add(name)
    return None


def _repeated_parameter(query: bytes) -> str | None:
    """The first query parameter given more than once, or ``None``."""
    if b"&" not in query:
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name[:64]
        seen.add(name)
    return None


def _nul_parameter(query: bytes) -> str | None:
    """The first query parameter whose name or value holds a NUL, or ``None``."""
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return (name.replace("\x00", "%00") or "query")[:64]
    return None


class RefuseAmbiguousInput:
    """Pure ASGI middleware: 400 for a NUL in the decoded path or in a query parameter, a
    header of ``_ONCE`` given twice, or a query parameter given twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = "path" if "\x00" in scope["path"] else _nul_parameter(scope.get("query_string", b""))
            problem = f"{field}: {_NUL}" if field is not None else None
            if problem is None and (header := _repeated_header(scope["headers"])) is not None:
                problem = f"{header}: must be given once"
            if problem is None and (name := _repeated_parameter(scope.get("query_string", b""))) is not None:
                problem = f"{name}: must be given once"
            if problem is not None:
                HTTP_RESPONSES.labels("unmatched", "4xx").inc()  # refused before any route
                await error_response(400, "VALIDATION_ERROR", problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
