"""uvicorn's httptools protocol, sending each response's head and body in one write.

uvicorn writes a response's status line and headers to the socket as soon as the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two ``send`` calls
per reply, and on loopback two TCP segments the client wakes up for. Under single-item writes
those two calls took about 18 % of the time the API process held the interpreter lock, and
one call 11 % (py-spy, 2026-12-04). Trueup's replies are small and whole, so this protocol
holds the head back and sends it with the first part of the body (docs/architecture.md has the
measurements).

A streamed reply's head therefore goes out with its first part, not before it: a route that
streams with pauses (server-sent events, say) would want the head at once, and Trueup has none.

Only the transport each request's cycle writes through changes: the HTTP handling, flow
control and errors stay uvicorn's own. ``uvicorn`` is pinned, and the tests read the bytes on
the wire, so a change in how it writes a reply shows up there.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["OneWriteHttpToolsProtocol"]


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


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose requests answer with one write each (see the module doc)."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # A new request has a cycle over this request's scope whose task has not run yet (it
        # is only scheduled); an upgrade leaves the previous cycle in place, which is skipped.
        # A HEAD response writes no body, so its head is not held.
        if cycle is not None and cycle.scope is self.scope and cycle.scope["method"] != "HEAD":
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]
