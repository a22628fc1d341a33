"""Refusing, before routing, request text that no route could use: NUL in the path or query,
and a header that may be given once given twice.

A NUL (``%00``) can be neither stored nor looked up on PostgreSQL (its text type refuses it, so
a lookup by such an id would fail as a server error) and matches nothing that was stored on
SQLite, since bodies with NUL in them are refused too (:mod:`trueup.core.strict_json`). One
check here, in front of every other middleware (the write fast path too), answers every route
alike: 400, naming the path or the query parameter.

So is a path with an encoded slash (``%2F``): routes match the decoded path, so
``/api/v1%2Fwrites`` was a write, which a proxy's rule for ``/api/v1/writes`` does not see,
and ``/derive/a%2Fb`` answered "no route" rather than naming the id; no id holds a slash.

So are a path or a query parameter whose bytes (percent-encoded or not) are not UTF-8: they
would reach the routes with each bad byte made U+FFFD, and a search or an id asked with them
would answer for another text than the one sent.

``X-Api-Key``, ``Idempotency-Key``, ``Content-Type`` and ``Host`` given twice are refused the
same way: routes read the first, so a request could be authenticated, deduplicated or parsed by
another value than the one a proxy or a log in between took for it (RFC 9112 §3.2 asks a 400 of
two ``Host`` lines, and of an HTTP/1.1 request with none, which the HTTP parser passes). So is
a query parameter given twice
(``startingBalance=1&startingBalance=2``): no route takes a list, and the one read would be the
last.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from trueup.api.errors import error_response
from trueup.service.metrics import HTTP_RESPONSES

__all__ = ["RefuseAmbiguousInput"]

_NUL = "must not contain the NUL character (%00)"
_NOT_UTF8 = "must be UTF-8 (percent-encoded or not)"
_SLASH = "must not contain an encoded slash (%2F): no id holds a slash"
_ONCE = {
    b"x-api-key": "X-Api-Key",
    b"idempotency-key": "Idempotency-Key",
    b"content-type": "Content-Type",
    b"host": "Host",
}


def _header_problem(scope: Scope) -> str | None:
    """What is wrong with the headers: the first of those in ``_ONCE`` given more than once, or
    no ``Host`` in an HTTP/1.1 request (RFC 9112 §3.2: a 400; HTTP/1.0 may leave it out)."""
    seen: set[bytes] = set()
    for name, _ in scope["headers"]:  # lower-case, as ASGI servers give them
        if name in _ONCE:
            if name in seen:
                return f"{_ONCE[name]}: must be given once"
            seen.add(name)
    if b"host" not in seen and scope.get("http_version") == "1.1":
        return "Host: missing; an HTTP/1.1 request must name the host it is sent to"
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


def _is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` (part of a request target) is UTF-8 once its percent-escapes are undone."""
    if raw.isascii() and b"%" not in raw:
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _not_utf8(scope: Scope) -> str | None:
    """``path``, or the first query parameter, whose bytes are not UTF-8; ``None`` if none."""
    if not _is_utf8(scope.get("raw_path") or b""):
        return "path"
    for pair in (scope.get("query_string") or b"").split(b"&"):
        if not _is_utf8(pair):
            name = pair.partition(b"=")[0]
            return (unquote_to_bytes(name).decode("utf-8")[:64] or "query") if _is_utf8(name) else "query"
    return None


class RefuseAmbiguousInput:
    """Pure ASGI middleware: 400 for a NUL in the decoded path or in a query parameter, an
    encoded slash in the path, a path or query parameter that is not UTF-8, a header of
    ``_ONCE`` given twice, an HTTP/1.1 request without ``Host``, or a query parameter given
    twice."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = "path" if "\x00" in scope["path"] else _nul_parameter(scope.get("query_string", b""))
            problem = f"{field}: {_NUL}" if field is not None else None
            if problem is None and b"%2f" in (scope.get("raw_path") or b"").lower():
                problem = f"path: {_SLASH}"
            if problem is None and (field := _not_utf8(scope)) is not None:
                problem = f"{field}: {_NOT_UTF8}"
            if problem is None:
                problem = _header_problem(scope)
            if problem is None and (name := _repeated_parameter(scope.get("query_string", b""))) is not None:
                problem = f"{name}: must be given once"
            if problem is not None:
                HTTP_RESPONSES.labels("unmatched", "4xx").inc()  # refused before any route
                await error_response(400, "VALIDATION_ERROR", problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
