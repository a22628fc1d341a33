"""uvicorn's httptools protocol as ``trueup serve`` runs it: each reply in one write, plain
small writes answered without uvicorn's request cycle, and the limits of what a connection may
send.

Three layers, each a module: :mod:`trueup.api.reply_head` names each request and holds a reply's
head back to go out with its body; :mod:`trueup.api.whole_writes` answers a plain small write
itself; this module's :class:`OneWriteHttpToolsProtocol` bounds how long and how much a client
may take (a head's time and length, a reply it does not read, trailers), refuses what is not
HTTP/1.1 after the replies owed before it, and answers every request a client sent before it
shut its side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import httptools
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from trueup.api.errors import REQUEST_ID_STATE, error_body
from trueup.api.reply_head import request_id
from trueup.api.whole_writes import WholeWriteProtocol
from trueup.service.metrics import HTTP_RESPONSES

__all__ = ["OneWriteHttpToolsProtocol", "unlog_refused_bytes"]


_UPGRADE_REFUSED = json.dumps(
    error_body(
        400,
        "VALIDATION_ERROR",
        "Upgrade: this server speaks HTTP/1.1 and does not switch protocols for a request with a "
        "body; send it without Upgrade and Connection: Upgrade (curl: --http1.1, not --http2)",
    ),
    separators=(",", ":"),
).encode()


async def _refuse_upgrade(scope: Scope, receive: Receive, send: Send) -> None:
    """The reply to a request with a body that asks to switch protocols (``Upgrade: h2c``,
    say), which the parser stops reading at its head: its body would be read as empty."""
    HTTP_RESPONSES.labels("unmatched", "4xx").inc()  # answered instead of the app, which counts the rest
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_UPGRADE_REFUSED)).encode()),
                (b"connection", b"close"),  # the rest of what the client sends is not HTTP/1.1
            ],
        }
    )
    await send({"type": "http.response.body", "body": _UPGRADE_REFUSED})


_TARGET_MAX = 65_535
"""The longest request target httptools can take apart (it keeps its parts' offsets in 16 bits):
a longer one is refused as too long (414), not as invalid."""


class OneWriteHttpToolsProtocol(WholeWriteProtocol):
    """``WholeWriteProtocol`` (each reply in one write, plain small writes answered whole),
    which refuses a protocol upgrade it cannot make on a request with a body, which closes
    a connection whose request head does not arrive within :attr:`head_timeout_s` and one
    whose client takes none of its replies for :attr:`reply_timeout_s`, which answers a head
    longer than :attr:`max_head_bytes` with a 431 and closes the connection, which drops a
    chunked body's trailer fields and bounds them as it bounds a head, and which answers bytes
    that are not HTTP/1.1 with the JSON 400 every other refusal has, after the replies to the
    requests before them.

    uvicorn closes a connection idle between requests (its keep-alive timeout), and Trueup's
    routes time out a slow body (``TRUEUP_BODY_TIMEOUT_S``), but nothing limited a new
    connection that sends nothing, or a request head sent a byte at a time: each held a
    connection open for as long as the client liked. Nor did anything limit a head's length:
    httptools keeps a header's value until it ends, so a 128 MB header was read whole (and
    answered), and six sent at once took the API process to 550 MB. A chunked body's trailer
    section was kept the same way (40 MB of trailers on four connections took it to 242 MB),
    and uvicorn appended its fields to the request's headers, which the app may read after the
    body: a trailer could supply a header the head did not have.
    """

    head_timeout_s: float = 30.0
    """Seconds the server waits for a request head it is ready to read: on a new connection, once
    a head has begun, or after bytes that begin none (a stray CRLF, which also stops uvicorn's
    keep-alive timer)."""

    reply_timeout_s: float = 30.0
    """Seconds the server waits for a client that does not read its replies: while the replies
    not yet sent fill the transport's buffer, a wait this long in which the client took none
    of them closes the connection. uvicorn waited for as long as the client liked, and a
    client that pipelined requests and never read held the connection, its reply and every
    request it had queued behind it (5.6 MB for 2,000 GETs of a page of 100 deltas)."""

    max_head_bytes: int = 64 * 1024
    """How much of a request head is read before it is refused, counted over the reads that are
    all head: not the one it begins in, nor the one it ends in (how many bytes of those are the
    head's is not known here). So no head of this length or less is refused, and no connection
    keeps more than this and two reads (of 256 KiB at most) of one."""

    _head_timer: asyncio.TimerHandle | None = None
    _reply_timer: asyncio.TimerHandle | None = None  # runs while writing is paused
    _unsent = 0  # bytes in the transport's buffer when the reply timer was armed
    _timer_heads = 0  # how many heads had come when the timer was armed
    _heads = 0  # heads that have come on this connection
    _in_head = False
    _head_bytes = -1  # of the head now coming, from the read after the one it began in
    _refused = False  # bytes were refused (see _refuse): what still comes is read and dropped
    _refusal: bytes | None = None  # the refusal's reply, while replies before it are still to come
    _refusal_after = 0  # how many replies come before it
    _refusal_status = 400  # the refusal's status, counted in /metrics once it is written
    _replies = 0  # replies written on this connection
    _mid_body = False  # a request's head has come and its body has not all come
    _stopping = False  # the server is stopping (shutdown)
    _chunk_begun = False  # a chunk's size line came, and nothing after it yet (its data, its end)
    _chunk_events = 0  # chunk headers, body parts, chunk and message ends, counted
    _trailer_bytes = 0  # of the trailer section now coming, in reads that are all trailers
    _client_done = False  # the client shut its side with requests still being answered
    _client_done_after = 0  # how many replies are written before the connection closes then
    _untaken_target = 0  # bytes of the target of a head that could not be taken, let go of

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped until the connection closes
        in_chunk, events = self._chunk_begun, self._chunk_events
        super().data_received(data)  # bytes the parser refuses: send_400_response
        if self._refused:
            return
        if self._in_head and not self.transport.is_closing():
            self._head_bytes = 0 if self._head_bytes < 0 else self._head_bytes + len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        elif in_chunk and events == self._chunk_events and not self.transport.is_closing():
            # A whole read after a chunk's size line without any of its data: a chunk of data
            # gives its first byte to on_body at once, so this is the last chunk's (size 0)
            # trailer section. As with a head, the read it began in is not counted.
            self._trailer_bytes += len(data)
            if self._trailer_bytes > self.max_head_bytes:
                self._refuse_trailers()
                return
        if self._whole is not None:
            # A write's head came without all of its body: it goes the usual way after all.
            self._go_usual_way()
        self._watch_head()

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's own type
        """The client has shut its side of the connection (``nc -N`` and some proxies do once
        a request is sent): the requests it sent are still answered, and then the connection
        closes. asyncio's default closed it at once, so every reply not yet written was lost
        (a write stored, its 202 never sent). A request whose body has not all come cannot be
        answered: its app hears that the client left, and the connection closes once the
        requests before it are answered (a refusal waiting behind them is sent first)."""
        if self._refused and self._refusal is None:
            return None  # a lingering close: the client's end finishes it
        owed = self._heads - self._replies  # requests taken and not yet answered
        cycle = self.cycle
        if self._mid_body and cycle is not None and not getattr(cycle, "response_started", False):
            owed -= 1  # its body will never come whole, and it has no reply begun
            cycle.disconnected = True
            cycle.message_event.set()
        if owed <= 0 and self._refusal is None:
            return None  # nothing to answer: closed
        self._client_done = True
        self._client_done_after = self._replies + owed
        # Each reply is waited for up to the head's time: an app that waits to hear that the
        # client left (none of Trueup's routes does) hears it then, as a client that has gone
        # sends the same end as one that only shut its side.
        self._close_later()
        return True  # the way back stays open until the replies are written

    def _close_later(self) -> None:
        """(Re)start the connection's one timer: it closes the connection after
        :attr:`head_timeout_s` unless stopped first (a head that comes, a reply written)."""
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # reading resumes: a head it held back may be waiting
        self._replies += 1
        if self._refused:
            if self._refusal is not None and self._replies >= self._refusal_after:
                self._send_refusal()  # bytes refused came behind this reply
            elif self._refusal is not None:
                self._close_later()  # each reply before the refusal gets the whole wait
        elif self._client_done:
            if self._replies >= self._client_done_after:
                self._stop_head_timer()
                self.transport.close()  # every request the client sent is answered
            else:
                self._close_later()  # the wait for the next reply
        else:
            self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_reply_timer()
        super().connection_lost(exc)
        # The requests queued behind the one being answered will never be: each cycle points
        # back at this protocol, so kept they were left for the cyclic collector, which runs
        # rarely here (trueup.service.collector), and a client that pipelined requests and left
        # added its queue to the API process's memory: about 100 MB for 20 queues of 2,000.
        self.pipeline.clear()

    def pause_writing(self) -> None:
        """The replies not yet sent passed the transport's high-water mark: the client is not
        reading them as fast as they come, or at all. See :attr:`reply_timeout_s`."""
        super().pause_writing()
        self._unsent = self.transport.get_write_buffer_size()
        self._stop_reply_timer()
        self._reply_timer = self.loop.call_later(self.reply_timeout_s, self._reply_timed_out)

    def resume_writing(self) -> None:
        self._stop_reply_timer()
        super().resume_writing()

    def _stop_reply_timer(self) -> None:
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None

    def _reply_timed_out(self) -> None:
        """A client that took some of the replies since the timer was armed gets another wait;
        one that took none is cut off. Aborted, not closed: a close waits to send what the
        buffer holds, which this client does not take."""
        self._reply_timer = None
        unsent = self.transport.get_write_buffer_size()
        if unsent < self._unsent:
            self._unsent = unsent
            self._reply_timer = self.loop.call_later(self.reply_timeout_s, self._reply_timed_out)
            return
        self._stop_head_timer()
        self.transport.abort()

    def _watch_head(self) -> None:
        """Keep one timer running while the server waits for a request head from the client.

        It waits when a head has begun, or when no request is being answered or queued and
        uvicorn's keep-alive timer is not running (a new connection, or one whose keep-alive a
        stray byte stopped). It does not while reading is paused (flow control: the client is
        not being read). A head that comes in the same read as it begins, nearly every one,
        arms no timer; each head that comes restarts the wait for the next.
        """
        cycle = self.cycle
        waiting = self._in_head or (
            self.timeout_keep_alive_task is None
            and (cycle is None or cycle.response_complete)
            and not self.pipeline
        )
        if not waiting or self.flow.read_paused or self.transport.is_closing():
            self._stop_head_timer()
        elif self._head_timer is None or self._timer_heads != self._heads:
            self._timer_heads = self._heads
            self._close_later()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = -1

    def _refuse_head(self) -> None:
        """Refuse a head longer than :attr:`max_head_bytes` (see :meth:`_refuse`)."""
        message = f"the request head is longer than {self.max_head_bytes:,} bytes; send shorter headers"
        self._refuse(431, "HEADERS_TOO_LARGE", message)

    def _refuse_trailers(self) -> None:
        """Refuse a trailer section longer than :attr:`max_head_bytes` (see :meth:`_refuse`)."""
        message = (
            f"the request's trailer section is longer than {self.max_head_bytes:,} bytes; "
            "send the body without trailers"
        )
        self._refuse(431, "HEADERS_TOO_LARGE", message)

    def _unsupported_upgrade_warning(self) -> None:
        """Nothing logged for an upgrade the server does not make (``Upgrade: websocket`` or
        ``h2c``): the request is answered over HTTP/1.1 as usual (RFC 9110 §7.8 lets a server
        ignore the header), or refused by name when it has a body. uvicorn logged two warnings
        a request, one telling the operator to install a WebSocket library, which any client
        could have written without a key; what clients get wrong is answered, not logged."""

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes the parser refuses (a bad header, a bad chunk size): it
        wrote a plain-text 400 at once, ahead of the replies to requests before it, and closed
        the connection, so a write stored just before had its 202 lost (and the close could
        reset the 400 away). It is called while the parser's error is being handled."""
        error = sys.exc_info()[1]
        reason = str(error) if isinstance(error, httptools.HttpParserError) and str(error) else msg
        cause = error.__context__ if isinstance(error, httptools.HttpParserCallbackError) else None
        if isinstance(cause, httptools.HttpParserInvalidURLError):
            if self._untaken_target > _TARGET_MAX:
                message = f"the request target is {self._untaken_target:,} bytes, longer than {_TARGET_MAX:,}"
                self._refuse(414, "URI_TOO_LONG", message)
                return
            reason = "invalid request target"  # CONNECT host:port, a port past 65535, ...
        elif cause is not None:
            # One of this protocol's (or uvicorn's) callbacks failed on what the parser passed:
            # refused like bytes that are not HTTP, and logged, as it may be a bug here.
            self.logger.warning("a request refused when taking it failed", exc_info=cause)
        self._refuse(400, "VALIDATION_ERROR", f"the request is not valid HTTP/1.1: {reason}")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Refuse what the client is sending, and end the connection.

        What still comes is read and dropped, and what the parser kept of it let go (2.6 MB
        for a head of tiny headers). The refusal is the reply to the request the refused bytes
        are part of, after the replies to every request before it (a write's 202 among them),
        and then the connection ends (:meth:`_linger`). If they are part of a request's body (a
        bad chunk, trailers), that body never ends: its app hears that the client left, and
        what it sends is dropped; a reply it has already begun is cut off, as when an app fails
        after its head, and one it has already sent is all the client gets.
        """
        self._refused = True
        self._stop_head_timer()
        if self._in_head:  # a head nobody else holds: what the parser kept of it goes
            self.headers.clear()  # the list the refused request's scope holds too
            self.url = b""
        self.headers = []
        self.parser = httptools.HttpRequestParser(self)
        before = self._heads  # requests whose heads came before the refused bytes
        cycle = self.cycle
        if self._mid_body and cycle is not None:  # the refused bytes are in its body
            before -= 1
            cycle.waiting_for_100_continue = False  # nothing more is written for it but its reply
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()  # its app's wait for the rest of the body ends
            if getattr(cycle, "response_started", cycle.response_complete):
                if cycle.response_complete:
                    self._linger()
                else:
                    self.transport.close()
                return
        body = json.dumps(error_body(status, code, message), separators=(",", ":")).encode()
        head = [
            STATUS_LINE[status],
            *self._default_head(self._refused_request_id(cycle if self._mid_body else None)),
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        ]
        self._refusal = b"".join(head) + body
        self._refusal_status = status
        self._refusal_after = before
        if self._replies >= before:
            self._send_refusal()
        else:
            self._close_later()  # the wait for the replies before it

    @staticmethod
    def _refused_request_id(cycle: Any) -> bytes:
        """The id of a refusal's reply: that of the request whose body the refused bytes are in
        (a bad chunk, trailers too long), else a new one (bytes that never made a request)."""
        named = (
            getattr(cycle, "scope", {}).get("state", {}).get(REQUEST_ID_STATE) if cycle is not None else None
        )
        return named.encode("ascii") if named else request_id(None)

    def shutdown(self) -> None:
        """The server is stopping: a connection whose refusal has been sent is closed at once,
        not left to linger (uvicorn would wait for it, as for a request being answered)."""
        self._stopping = True
        if self._refused and self._refusal is None:
            self._stop_head_timer()
            self.transport.close()
            return
        super().shutdown()

    def _send_refusal(self) -> None:
        reply, self._refusal = self._refusal, None
        if reply is not None and not self.transport.is_closing():
            self.transport.write(reply)
            # Written here, outside the app and its counting middleware; refused before any route.
            HTTP_RESPONSES.labels("unmatched", f"{self._refusal_status // 100}xx").inc()
            self._linger()

    def _linger(self) -> None:
        """End the connection after a refusal, keeping the reply from being reset away.

        The client is most likely still sending: closed at once, with its bytes unread, the
        connection would be reset, and the reset can destroy the reply before the client reads
        it. So the server's side ends where the transport can end it alone (not over TLS), and
        what still comes is read and dropped for up to :attr:`head_timeout_s` (a "lingering
        close"). uvicorn's keep-alive timer, armed by the reply before, is stopped, and reading
        resumes if flow control had paused it. A client that has shut its side, a server that
        is stopping, and a transport that cannot end its side alone (TLS) close at once.
        """
        if self._client_done or self._stopping or not self.transport.can_write_eof():
            self._stop_head_timer()
            self.transport.close()
            return
        self.transport.write_eof()
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self._close_later()

    def on_headers_complete(self) -> None:
        self._in_head = False
        # If taking the head fails (a URL the parser passed that uvicorn cannot split), the
        # parser refuses the request (send_400_response): it is not one to wait for a reply to,
        # and no cycle holds what was parsed of it.
        try:
            self._take_head()
        except BaseException:
            self.headers.clear()
            self._untaken_target = len(self.url)  # send_400_response says if it was too long
            self.url = b""
            raise
        self._heads += 1
        self._mid_body = True

    def _take_head(self) -> None:
        if not self.url.startswith(b"/"):
            self._take_absolute_target()
        if self._take_whole():
            return
        if self.parser.should_upgrade() and not self._should_upgrade() and self._has_body():
            # uvicorn would log "Unsupported upgrade request." and hand the app this request
            # with an empty body (the parser stops at the head of an upgrade); a bodiless one
            # (a GET) is answered as usual.
            app, self.app = self.app, _refuse_upgrade
            try:
                self._hold_heads()
            finally:
                self.app = app
            return
        self._hold_heads()

    def _take_absolute_target(self) -> None:
        """An absolute-form target (``http://host:port/path?q``, as sent to a proxy): its host
        is the request's, whatever ``Host`` says (RFC 9112 §3.2.2: the server ignores the
        field and uses the target's), so each ``Host`` line takes the target's authority; two
        are still refused, and none is a 400 as for any HTTP/1.1 request. An empty path names
        the root, ``/`` (RFC 9110 §4.2.3): the parser splits it into no path at all, which
        uvicorn failed on, refusing a valid request. A target the parser cannot split raises,
        as before."""
        parsed = httptools.parse_url(self.url)
        if parsed.schema is None or not parsed.host:
            return  # not absolute-form (``*``, say): uvicorn's as it was
        if parsed.path is None:
            self.url = b"/" if parsed.query is None else b"/?" + parsed.query
        host = b"[" + parsed.host + b"]" if b":" in parsed.host else parsed.host
        authority = host if parsed.port is None else host + b":" + str(parsed.port).encode()
        # In place: the request's scope holds this list.
        self.headers[:] = [(name, authority if name == b"host" else value) for name, value in self.headers]

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() not in (b"", b"0")
            ):
                return True
        return False

    def on_chunk_header(self) -> None:
        # The parser hands a trailer field to on_header as it does a header, and uvicorn
        # appends it to the request's headers, which are the scope's: the app would read a
        # trailer as a header (one the head did not have, an API key, say). Trailers come
        # only after the last chunk's size line, so from a chunk on, the fields go to a list
        # nobody reads: none is merged into the header section (RFC 9110, section 6.5.1).
        self.headers = []
        self._chunk_begun = True
        self._chunk_events += 1
        self._trailer_bytes = 0

    def on_chunk_complete(self) -> None:
        self._chunk_begun = False
        self._chunk_events += 1

    def on_body(self, body: bytes) -> None:
        self._chunk_begun = False
        self._chunk_events += 1
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._chunk_begun = False
        self._chunk_events += 1
        self._mid_body = False
        super().on_message_complete()


_UVICORN_REFUSED = "Invalid HTTP request received."
"""What uvicorn's protocol logs, as a warning, before it calls :meth:`send_400_response`."""


class _RefusedBytesUnlogged(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _UVICORN_REFUSED


def unlog_refused_bytes() -> None:
    """Leave out of the log uvicorn's warning for bytes that are not HTTP/1.1.

    It names neither the client nor what was wrong, and any client could write one line of it
    per request; the refusal itself is answered with a 400 saying what the parser found
    (:meth:`OneWriteHttpToolsProtocol.send_400_response`) and counted in ``/metrics`` as
    ``unmatched``, as every other 4xx is answered and counted, and not logged."""
    logging.getLogger("uvicorn.error").addFilter(_RefusedBytesUnlogged())
