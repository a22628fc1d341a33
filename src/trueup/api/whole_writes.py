"""Plain small writes answered without uvicorn's request cycle.

One kind of request skips uvicorn's request cycle altogether: a plain small write (``POST
/api/v1/writes`` or ``/api/v1/balance/delta``, keep-alive HTTP/1.1, a ``Content-Length`` of at
most 64 KiB, nothing unusual in its head, no earlier request of the connection unanswered) whose
body comes in the same read as its head, nearly every single-item write. The protocol calls
:meth:`trueup.api.fastpath.WriteAnswers.answer_whole` itself and writes the reply as uvicorn's
cycle would, byte for byte; uvicorn's cycle, its ASGI messages and the middleware layers cost
about a quarter of the API process's CPU per single-item write (docs/architecture.md). A write
whose body has not all come by the end of the read goes the usual way from there, as if its head
had just come, and so does every request with anything unusual about it: the usual way handles
each such case (and the tests compare the two ways' replies).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from starlette.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr

from trueup.api.errors import REQUEST_ID_STATE
from trueup.api.fastpath import WriteAnswers
from trueup.api.reply_head import REQUEST_ID_HEADER, ReplyHeadProtocol, request_id

__all__ = ["WholeWriteProtocol"]


_WHOLE_BODY_MAX = 65_536
"""The largest ``Content-Length`` answered without uvicorn's cycle: a single or small write."""

_SEEN_ONCE = frozenset(
    (b"x-api-key", b"idempotency-key", b"content-type", b"content-length", b"host", REQUEST_ID_HEADER)
)
_NOT_WHOLE = frozenset((b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"))


_PLAIN_500 = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
    b"Internal Server Error"
)
"""What uvicorn answers (after its status line and default headers) when an app fails."""


class _NoEvent:
    """Stands in for the request cycle's ``message_event``, which nobody waits on here."""

    __slots__ = ()

    def set(self) -> None:
        pass


class _Answering:
    """The protocol's ``cycle`` while it answers a whole write itself: the attributes uvicorn's
    protocol reads and sets on its cycle (a pipelined request waits behind it, a shutdown or a
    lost connection is noted on it)."""

    __slots__ = ("disconnected", "heads", "keep_alive", "response_complete", "scope")

    message_event = _NoEvent()

    def __init__(self, scope: Any, heads: dict[bytes, bytes]) -> None:  # scope: uvicorn's HTTPScope
        self.scope = scope
        self.heads = heads
        """The request's headers of :data:`_SEEN_ONCE` (each given once), by name."""
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True


def _find_answers(app: Any) -> tuple[WriteAnswers | None, tuple[ProxyHeadersMiddleware, ...]]:
    """The app's :class:`WriteAnswers`, under uvicorn's proxy-headers layers (which only set the
    client's address and scheme, which no write reads; the access log's line does, and takes
    them from :func:`_as_forwarded`), and those layers. Under any other layer, ``None``:
    whatever it does must see every request, so every request goes the usual way."""
    proxies: list[ProxyHeadersMiddleware] = []
    while isinstance(app, ProxyHeadersMiddleware):
        proxies.append(app)
        app = app.app
    answers = getattr(getattr(app, "state", None), "write_answers", None)
    return (answers if isinstance(answers, WriteAnswers) else None), tuple(proxies)


async def _ignore(*_: Any) -> Any:  # app, receive and send of a layer run for its scope only
    return None


async def _as_forwarded(scope: Any, proxies: tuple[ProxyHeadersMiddleware, ...]) -> Any:
    """A copy of ``scope`` as uvicorn's proxy-headers layers hand it to the app: the client a
    trusted proxy names in ``X-Forwarded-For``, as the access log gives it for every request
    that goes the usual way."""
    forwarded: Any = dict(scope)  # uvicorn's HTTPScope, a TypedDict
    for proxy in proxies:
        layer = copy.copy(proxy)
        layer.app = _ignore
        await layer(forwarded, _ignore, _ignore)
    return forwarded


class WholeWriteProtocol(ReplyHeadProtocol):
    """``ReplyHeadProtocol`` that answers a plain small write itself (see the module doc): from
    its head (:meth:`_take_whole`) to its reply (:meth:`_answer_whole`)."""

    _whole: list[bytes] | None = None  # the body so far of a write this protocol answers itself
    _answering: _Answering | None = None
    _earlier_cycle: Any = None  # the cycle before it, put back if the write goes the usual way
    _answers: WriteAnswers | None = None
    _proxies: tuple[ProxyHeadersMiddleware, ...] = ()  # the proxy-headers layers above the app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A root path or a concurrency limit (neither of which `trueup serve` sets) changes how
        # uvicorn's cycle takes a request: then every request goes that way.
        plain_server = not self.root_path and self.limit_concurrency is None
        self._answers, self._proxies = _find_answers(self.app) if plain_server else (None, ())

    def _take_whole(self) -> bool:
        """Whether the request whose head just came is a plain small write, now taken to be
        answered here; ``False`` leaves it to go the usual way."""
        if self._answers is None or self.url not in self._answers.targets:
            return False
        heads = self._plain_write()
        if heads is None:
            return False
        self._begin_whole(heads)
        return True

    def _plain_write(self) -> dict[bytes, bytes] | None:
        """Whether this request is a plain small write that this protocol may answer itself: a
        ``POST`` over keep-alive HTTP/1.1 with a ``Host`` and a ``Content-Length`` of at most
        :data:`_WHOLE_BODY_MAX`, none of its own headers given twice, no transfer or content
        coding, no ``Expect``, no upgrade, and no earlier request of the connection unanswered.
        The rest go the usual way, where every such case is handled. Returns the request's
        headers of :data:`_SEEN_ONCE` by name, or ``None`` for a request that goes the usual way."""
        parser = self.parser
        if (
            parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.expect_100_continue
            or self.pipeline
            or (self.cycle is not None and not self.cycle.response_complete)
        ):
            return None
        heads: dict[bytes, bytes] = {}
        for name, value in self.headers:
            if name in _SEEN_ONCE:
                if name in heads:
                    return None
                heads[name] = value
            elif name in _NOT_WHOLE:
                return None
        if b"host" not in heads:  # refused the usual way (trueup.api.guards)
            return None
        length = heads.get(b"content-length")
        if length is None or len(length) > 6 or not length.isdigit():  # int() of 5,000 digits raises
            return None
        return heads if int(length) <= _WHOLE_BODY_MAX else None

    def _begin_whole(self, heads: dict[bytes, bytes]) -> None:
        path = self.url.decode("ascii")
        self.scope["method"] = "POST"
        self.scope["path"] = path
        self.scope["raw_path"] = self.url
        self.scope["query_string"] = b""
        self._earlier_cycle = self.cycle
        self._answering = _Answering(self.scope, heads)
        self.cycle = self._answering  # type: ignore[assignment]
        self._whole = []

    def on_body(self, body: bytes) -> None:
        if self._whole is not None:
            self._whole.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        whole, answering = self._whole, self._answering
        if whole is None or answering is None:
            super().on_message_complete()
            return
        self._whole = self._answering = self._earlier_cycle = None
        task = self.loop.create_task(self._answer_whole(answering, b"".join(whole)))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _go_usual_way(self) -> None:
        """Hand a write whose body has not all come to uvicorn's cycle, as if its head had just
        come: the body so far goes to that cycle, and the rest follows the usual way."""
        whole, self._whole, self._answering = self._whole, None, None
        self.cycle, self._earlier_cycle = self._earlier_cycle, None
        if self.transport.is_closing():  # the parser refused what followed the head
            return
        self._hold_heads()
        if whole:
            super().on_body(b"".join(whole))

    async def _answer_whole(self, answering: _Answering, body: bytes) -> None:
        found = {name: value.decode("latin-1") for name, value in answering.heads.items()}
        rid = request_id(answering.heads.get(REQUEST_ID_HEADER))
        answering.scope["state"][REQUEST_ID_STATE] = rid.decode("ascii")
        response: Response | None
        try:
            answers = self._answers
            assert answers is not None
            response = await answers.answer_whole(
                answering.scope,
                found.get(b"x-api-key"),
                found.get(b"idempotency-key"),
                found.get(b"content-type", ""),
                found[b"content-length"],  # always there: see _plain_write
                body,
            )
        except BaseException:  # as uvicorn's cycle: logged, and a plain 500 that closes
            self.logger.exception("Exception in ASGI application (x-request-id=%s)", rid.decode())
            response = None
        if self.flow.write_paused and not answering.disconnected:
            await self.flow.drain()
        if answering.disconnected:
            return  # as uvicorn's cycle: nothing written, and the request not counted as answered
        reply, status = None, 500
        if response is not None:
            try:
                reply, status = self._render(response, answering, rid), response.status_code
            except RuntimeError:
                self.logger.exception("Exception in ASGI application (x-request-id=%s)", rid.decode())
        if reply is None:
            answering.keep_alive = False
            reply = b"".join([STATUS_LINE[500], *self._default_head(rid), _PLAIN_500])
        if not self.transport.is_closing():
            self.transport.write(reply)
        if self.access_log:  # `trueup serve --access-log`: the line uvicorn's cycle logs
            client = get_client_addr(await _as_forwarded(answering.scope, self._proxies))
            self.access_logger.info(
                '%s - "POST %s HTTP/1.1" %d x-request-id=%s',
                client,
                answering.scope["path"],
                status,
                rid.decode(),
            )
        answering.response_complete = True
        if not answering.keep_alive:
            self.transport.close()
        self.on_response_complete()
        if response is not None and response.background is not None:
            await response.background()  # none of the write routes has one; as Starlette would

    def _render(self, response: Response, answering: _Answering, rid: bytes) -> bytes:
        """``response`` as uvicorn's cycle would write it: status line, the server's default
        headers and the request's id, the response's own, ``connection: close`` when the
        connection is closing (and a response that says ``connection: close`` closes it)."""
        parts = [STATUS_LINE[response.status_code], *self._default_head(rid)]
        closing = False
        for raw_name, value in response.raw_headers:
            name = raw_name.lower()
            if HEADER_VALUE_RE.search(value):  # as uvicorn's cycle: never sent
                raise RuntimeError("Invalid HTTP header value.")
            if name == b"connection" and b"close" in [token.lower().strip() for token in value.split(b",")]:
                answering.keep_alive = False
                closing = True
            parts += (name, b": ", value, b"\r\n")
        if not answering.keep_alive and not closing:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", bytes(response.body))
        return b"".join(parts)
