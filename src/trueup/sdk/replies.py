"""Reading a reply's body with a bound on its length, before and after decoding.

httpx decodes a body a whole chunk at a time and a stack of codings (``gzip, gzip``) in one
go, with no bound: a reply of a few hundred bytes can become gigabytes before anything sees its
length. So the client asks for ``gzip`` or nothing (``Accept-Encoding: gzip``), reads the raw
bytes, and inflates them here, never past the bound.
"""

from __future__ import annotations

import zlib

import httpx

from trueup.core.url_passwords import without_password
from trueup.proof.errors import shown
from trueup.sdk.errors import TrueupError

__all__ = ["ACCEPTED_ENCODING", "read_body", "send_bounded"]

ACCEPTED_ENCODING = "gzip"
"""The ``Accept-Encoding`` the client sends: the one coding :func:`read_body` inflates."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS


def read_body(reply: httpx.Response, limit: int, source: str) -> bytes:
    """The body of a streamed ``reply``, decoded; a ``BAD_REPLY`` :class:`TrueupError` once it
    passes ``limit`` bytes (as sent, or decoded), for a coding other than ``gzip`` or none, and
    for a body its coding does not describe. ``source`` names the server in the messages."""
    coding = reply.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity", "gzip", "x-gzip"):
        raise _bad(
            reply, f"a reply from {source} in a content coding the client did not ask for: {shown(coding)}"
        )
    inflater = None if coding in ("", "identity") else zlib.decompressobj(_GZIP_WBITS)
    parts: list[bytes] = []
    sent = size = 0
    try:
        for raw in reply.iter_raw():
            sent += len(raw)
            piece = raw
            if inflater is not None:
                # At most one byte past the limit: enough to tell it was passed.
                piece = inflater.decompress(raw, limit + 1 - size)
                if inflater.unconsumed_tail:
                    size = limit + 1
            size += len(piece)
            if sent > limit or size > limit:
                raise _bad(reply, f"a reply from {source} longer than {limit} bytes")
            parts.append(piece)
        if inflater is not None:
            parts.append(inflater.flush())
    except zlib.error as exc:
        raise _bad(reply, f"a reply from {source} that cannot be decoded: {exc}") from None
    # An empty body is empty whatever its coding says (httpx reads it so; a proxy's 503 may be one).
    if inflater is not None and sent and not inflater.eof:  # its trailer (the checksum) never came
        raise _bad(reply, f"a reply from {source} whose gzip stream ends early")
    if inflater is not None and inflater.unused_data:  # a second member, or bytes that are none
        raise _bad(reply, f"a reply from {source} with bytes after its gzip stream")
    if sum(len(part) for part in parts) > limit:
        raise _bad(reply, f"a reply from {source} longer than {limit} bytes")
    return b"".join(parts)


def send_bounded(http: httpx.Client, request: httpx.Request, limit: int) -> httpx.Response:
    """Send ``request`` and return its reply read whole, its body decoded (:func:`read_body`:
    at most ``limit`` bytes, as sent or decoded), as a reply httpx had read itself."""
    streamed = http.send(request, stream=True)
    try:
        server = without_password(str(request.url.copy_with(path="/", query=None)).rstrip("/"))
        body = read_body(streamed, limit, server)
    finally:
        streamed.close()
    # The body as read, decoded: the headers that described its coding no longer apply.
    kept = [  # as they came, in bytes: a value that is not ASCII is not refused here
        (name, value)
        for name, value in streamed.headers.raw
        if name.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")
    ]
    return httpx.Response(
        streamed.status_code, headers=kept, content=body, request=request, extensions=streamed.extensions
    )


def _bad(reply: httpx.Response, message: str) -> TrueupError:
    return TrueupError(
        "BAD_REPLY", message, reply.status_code, http_request_id=reply.headers.get("x-request-id")
    )
