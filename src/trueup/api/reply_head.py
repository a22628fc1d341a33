"""Each reply's head: the headers every reply carries, the request's id, and a head held back
to go out with its body.

uvicorn writes a response's status line and headers to the socket as soon as the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two ``send`` calls
per reply, and on loopback two TCP segments the client wakes up for. Under single-item writes
those two calls took about 18 % of the time the API process held the interpreter lock, and
one call 11 % (py-spy, 2026-12-04). Trueup's replies are small and whole, so
:class:`ReplyHeadProtocol` holds the head back and sends it with the first part of the body
(docs/architecture.md has the measurements).

A streamed reply's head therefore goes out with its first part, not before it: a route that
streams with pauses (server-sent events, say) would want the head at once, and Trueup has none.

Only the transport each request's cycle writes through changes: the HTTP handling, flow
control and errors stay uvicorn's own. ``uvicorn`` is pinned, and the tests read the bytes on
the wire, so a change in how it writes a reply shows up there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trueup.api.errors import REQUEST_ID_STATE

__all__ = ["REQUEST_ID_HEADER", "RESPONSE_HEADERS", "ReplyHeadProtocol", "request_id"]


RESPONSE_HEADERS: tuple[tuple[str, str], ...] = (("X-Content-Type-Options", "nosniff"),)
"""Headers every reply carries, whatever answers it: ``trueup serve`` gives them to uvicorn as
its default headers (``headers=``), which uvicorn writes at the head of every response of its
request cycle (the app's, its own 500 and 503) and this protocol at the head of every reply it
writes itself (writes answered whole, the refusals of a head too long or of bytes that are not
HTTP/1.1, its plain 500). So no reply is missed, and none pays for a layer of middleware.

``nosniff``: a browser takes a reply as the type it names, and never runs a JSON or text reply
it sniffed as HTML or script (an error message echoes what the client sent)."""


REQUEST_ID_HEADER = b"x-request-id"
"""Every reply names its HTTP request by an id in this header (not a write's ``req_…`` id, nor
a failure's ``err_…``), which its access log line and the log lines of its failures name too
(``x-request-id=…``): a client quoting it to an operator points at the lines of that request.
One the request brings in this header (a proxy's, say) is kept when it is 1 to 128 characters
of letters, digits and ``._:-`` (spaces around it aside); otherwise, or when given twice, a new
one is made. A client may send any id, so one it sent is not known to be unique."""

_GIVEN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(given: bytes | None) -> bytes:
    """The id of a request that brought ``given`` in ``X-Request-Id`` (``None``: none, or more
    than one): ``given`` when it is a usable one, else 16 new hex digits."""
    if given is not None and _GIVEN_ID.fullmatch(given := given.strip(b" \t")):
        return given
    # Not a secret, so the interpreter's generator (seeded from the system's, and again in a
    # forked child), without a system call a request: os.urandom's cost more under load.
    return f"{random.getrandbits(64):016x}".encode("ascii")


def _given_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    found = None
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if found is not None:
                return None  # given twice: neither is taken
            found = value
    return found


class _WithRequestId(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The access logger for one request: its line ends with the request's id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{msg} x-request-id={self.extra['id']}", kwargs  # type: ignore[index]


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim reply uvicorn writes, as these bytes, when a request expects it."""


class _HeadWithBody:
    """The transport of one request's cycle: the response head waits for the body's first write.

    A cycle writes an interim ``100 Continue`` (when the request asked for one), then the head,
    then the body: the first write that is not the interim reply is the head. A cycle that ends
    without writing again (the app failed after starting the response) closes the transport,
    which sends a head held back before closing. It keeps no reference to the cycle: the two
    would make a reference cycle, left for the garbage collector, per request.
    """

    __slots__ = ("_head", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._held = False

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            # The client left (or the connection is being closed): nothing can reach it, and
            # uvloop raises on a write after the loss. uvicorn marks only the newest of
            # pipelined requests disconnected, so an older one still answers into this.
            self._head = None
            return
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._held and data != _CONTINUE:
            self._head = data
            self._held = True
        else:
            self._transport.write(data)

    def close(self) -> None:
        head, self._head = self._head, None
        # A connection already lost (or closing) takes no head: uvloop's transport raises on a
        # write after the loss, where uvicorn would have written the head before it.
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's
        return getattr(self._transport, name)


class ReplyHeadProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that names each request (:data:`REQUEST_ID_HEADER`) and whose
    request cycles write each reply's head together with its body (:class:`_HeadWithBody`)."""

    def _hold_heads(self) -> None:
        """Hand the request whose head just came to uvicorn's request cycle, as its
        ``on_headers_complete`` does, and give the new cycle the request's id and a transport
        that holds its reply's head back for the body."""
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a new request's cycle: its id
            self._name_request(cycle)
        # A new request has a cycle over this request's scope whose task has not run yet (it
        # is only scheduled); an upgrade leaves the previous cycle in place, which is skipped.
        # A HEAD response writes no body, so its head is not held.
        if cycle is not None and cycle.scope is self.scope and cycle.scope["method"] != "HEAD":
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]

    def _name_request(self, cycle: Any) -> None:
        """Give the request of ``cycle`` (uvicorn's) its id (:data:`REQUEST_ID_HEADER`): in the
        headers its reply starts with, whatever answers it (the app, uvicorn's own 500), in its
        scope's state (:data:`~trueup.api.errors.REQUEST_ID_STATE`, for the log lines about it), and at the
        end of its access log line."""
        rid = request_id(_given_id(self.headers))
        cycle.default_headers = [*cycle.default_headers, (REQUEST_ID_HEADER, rid)]
        text = rid.decode("ascii")
        self.scope["state"][REQUEST_ID_STATE] = text
        if self.access_log:
            cycle.access_logger = _WithRequestId(self.access_logger, {"id": text})

    def _default_head(self, rid: bytes) -> list[bytes]:
        """The server's default headers and the request's id, as uvicorn's cycle writes them
        for a request :meth:`_name_request` named."""
        parts: list[bytes] = []
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (REQUEST_ID_HEADER, b": ", rid, b"\r\n")
        return parts
