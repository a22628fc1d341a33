"""One write per reply: a real uvicorn server on 127.0.0.1 with Trueup's protocol, read raw.

The server's protocol is a subclass that records every write on the real socket's transport,
so each test sees both what the client received and how many writes carried it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from trueup.api.http_protocol import OneWriteHttpToolsProtocol, unlog_refused_bytes
from trueup.api.reply_head import RESPONSE_HEADERS

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class _Recorder:
    """The connection's transport, keeping a copy of each write."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Recording(OneWriteHttpToolsProtocol):
    writes: ClassVar[list[bytes]] = []  # the writes of every connection, in order; replaced per test

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Recorder(transport, self.writes))  # type: ignore[arg-type]


_HEARD: list[str] = []
"""The type of the last message each request's app received (``http.disconnect``, say)."""


async def _app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Echoes the body; ``/stream`` answers in three parts; ``/fail`` fails after starting;
    ``/raise`` fails before starting; ``/headers`` answers the names of the request's headers;
    ``/early`` answers before reading."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/raise":
        raise RuntimeError("failed before starting the response")
    if scope["path"] == "/early":  # answered before its body is read
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"early"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"three"})
        return
    _HEARD.append(message["type"])
    reply = b"echo:" + body
    if scope["path"] == "/headers":  # the names of the request's headers, read after its body
        reply = b"headers:" + b",".join(name for name, _ in scope["headers"])
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(reply)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/fail":
        raise RuntimeError("failed after starting the response")
    await send({"type": "http.response.body", "body": reply})


@asynccontextmanager
async def _uvicorn(
    app: Any, protocol: type[OneWriteHttpToolsProtocol], keep_alive_s: int = 5
) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """A uvicorn server of ``app`` with ``protocol`` on 127.0.0.1: ``(server, port)``."""
    _Recording.writes = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app,
            http=protocol,
            headers=list(RESPONSE_HEADERS),  # as `trueup serve` gives them
            lifespan="off",
            log_level="critical",
            timeout_keep_alive=keep_alive_s,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield server, sock.getsockname()[1]
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)


@asynccontextmanager
async def _server() -> AsyncIterator[int]:
    async with _uvicorn(_app, _Recording) as (_, port):
        yield port


async def _exchange(port: int, request: bytes, until: Callable[[bytes], bool]) -> bytes:
    """Send ``request`` raw and read until ``until(received)`` or the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        received = b""
        while not until(received):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            received += chunk
        return received
    finally:
        writer.close()


def _post(path: str, body: bytes, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _run(test: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _server() as port:
            await test(port)

    asyncio.run(main())


def test_a_reply_goes_out_in_one_write() -> None:
    async def test(port: int) -> None:
        received = await _exchange(port, _post("/", b"hello"), lambda got: got.endswith(b"echo:hello"))
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert _Recording.writes == [received]

    _run(test)


def test_pipelined_requests_get_one_write_each_in_order() -> None:
    async def test(port: int) -> None:
        request = _post("/", b"a") + _post("/", b"bb")
        received = await _exchange(port, request, lambda got: got.endswith(b"echo:bb"))
        assert received.count(b"HTTP/1.1 200 OK") == 2
        assert received.index(b"echo:a") < received.index(b"echo:bb")
        assert len(_Recording.writes) == 2
        assert b"".join(_Recording.writes) == received

    _run(test)


def test_head_replies_are_not_held_back() -> None:
    async def test(port: int) -> None:
        request = b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n"
        received = await _exchange(port, request, lambda got: got.endswith(b"\r\n\r\n"))
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"echo:" not in received
        assert _Recording.writes == [received]

    _run(test)


def test_100_continue_goes_out_first_and_alone() -> None:
    async def test(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            writer.write(head)
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"ok")
            rest = b""
            while not rest.endswith(b"echo:ok"):
                rest += await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()
        assert _Recording.writes == [interim, rest]

    _run(test)


def test_a_streamed_reply_sends_its_head_with_the_first_part() -> None:
    async def test(port: int) -> None:
        received = await _exchange(port, _post("/stream", b""), lambda got: got.endswith(b"0\r\n\r\n"))
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked" in received
        assert _Recording.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
        assert len(_Recording.writes) == 3
        assert b"".join(_Recording.writes) == received

    _run(test)


def test_an_app_failing_after_its_head_still_sends_the_head_then_closes() -> None:
    async def test(port: int) -> None:
        received = await _exchange(port, _post("/fail", b"x"), lambda _: False)  # until closed
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"\r\n\r\n")  # the head as uvicorn wrote it, and no body
        assert _Recording.writes == [received]

    _run(test)


def test_connection_close_is_answered_then_closed() -> None:
    async def test(port: int) -> None:
        received = await _exchange(port, _post("/", b"bye", "Connection: close"), lambda _: False)
        assert received.endswith(b"echo:bye")
        assert b"connection: close" in received.lower()
        assert _Recording.writes == [received]

    _run(test)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_other_methods_are_answered_in_one_write(method: str) -> None:
    async def test(port: int) -> None:
        request = f"{method} / HTTP/1.1\r\nHost: test\r\n\r\n".encode()
        received = await _exchange(port, request, lambda got: got.endswith(b"echo:"))
        assert _Recording.writes == [received]

    _run(test)


def test_requests_leave_no_garbage_behind() -> None:
    """Each request's cycle is freed when its reply is done, not left for the collector (a
    transport that pointed back at its cycle made a reference cycle per request)."""

    async def test(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(20):
                writer.write(_post("/", str(n).encode()))
                received = b""
                while not received.endswith(f"echo:{n}".encode()):
                    received += await asyncio.wait_for(reader.read(65536), 10)
            alive = [o for o in gc.get_objects() if isinstance(o, RequestResponseCycle)]
            assert len(alive) <= 1  # the connection's latest, which it still holds
        finally:
            writer.close()

    gc.collect()
    gc.disable()
    try:
        _run(test)
    finally:
        gc.enable()


def _leave(writer: asyncio.StreamWriter) -> None:
    """Close the connection as a client that has gone does: at once, with a reset (a client
    that only shuts its side is still there to be answered)."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def test_a_client_gone_before_a_failing_app_writes_nothing_on_uvloop() -> None:
    """The server runs on uvloop, whose transport refuses a write once the connection is lost:
    a head held back must not be written then (uvicorn wrote it before the loss)."""
    problems: list[dict[str, Any]] = []

    async def failing(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        while (await receive())["type"] != "http.disconnect":
            pass  # the request's own body, then the client leaving
        raise RuntimeError("failed after the client left")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: problems.append(context))
        async with _uvicorn(failing, OneWriteHttpToolsProtocol) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            while not server.server_state.tasks:  # the request has reached the app
                await asyncio.sleep(0.01)
            _leave(writer)
            while server.server_state.tasks:  # the app has failed and uvicorn has closed up
                await asyncio.sleep(0.01)
        gc.collect()  # a task whose exception nobody read reports it when it is collected
        await asyncio.sleep(0)

    uvloop.run(main())
    assert problems == []


def test_a_reply_to_an_older_pipelined_request_after_the_client_left_is_dropped_on_uvloop() -> None:
    """Two requests sent at once, then the client leaves: uvicorn marks only the newer one
    disconnected, so the older one's app still replies, into a transport that is closing
    (uvloop raised there, which the app saw as its own failure: a 500 in the log)."""
    failures: list[BaseException] = []

    async def slow(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await asyncio.sleep(0.2)  # the client leaves meanwhile
        try:
            await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        except BaseException as exc:
            failures.append(exc)
            raise

    async def main() -> None:
        async with _uvicorn(slow, OneWriteHttpToolsProtocol) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_post("/", b"1") + _post("/", b"2"))
            while not server.server_state.tasks:  # the first request has reached the app
                await asyncio.sleep(0.01)
            _leave(writer)
            while server.server_state.tasks:
                await asyncio.sleep(0.01)

    uvloop.run(main())
    assert failures == []


def test_a_request_with_a_body_asking_to_upgrade_is_refused_by_name() -> None:
    """``curl --http2`` on http:// asks to switch to h2c. The parser stops at the head of such a
    request, so its body would have reached the app empty ("not valid JSON"). Nothing is
    logged: uvicorn wrote two warnings for each such request, whoever sent it."""
    logged = _Kept()
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level

    async def test(port: int) -> None:
        # After the server's start, whose logging set-up sets the level and the handlers.
        uvicorn_log.setLevel(logging.WARNING)
        uvicorn_log.addHandler(logged)
        await _upgrades_answered(port)

    try:
        _run(test)
    finally:
        uvicorn_log.removeHandler(logged)
        uvicorn_log.setLevel(level)
    assert logged.messages == []


class _Kept(logging.Handler):
    """The messages logged through it, at every level its logger lets through."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _upgrades_answered(port: int) -> None:
    upgrade = (
        "Connection: Upgrade, HTTP2-Settings",
        "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA",
    )
    received = await _exchange(port, _post("/", b'{"items": []}', *upgrade), lambda _: False)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in head.lower()
    reply = json.loads(body)
    assert reply["code"] == "VALIDATION_ERROR" and reply["message"].startswith("Upgrade: ")
    assert _Recording.writes == [received]
    # Without a body, the request is answered as usual.
    for asked in (upgrade, ("Connection: Upgrade", "Upgrade: websocket")):
        plain = "GET / HTTP/1.1\r\nHost: test\r\n" + "\r\n".join(asked) + "\r\n\r\n"
        assert (await _exchange(port, plain.encode(), lambda got: got.endswith(b"echo:"))).startswith(
            b"HTTP/1.1 200 OK\r\n"
        )


class _QuickHead(_Recording):
    head_timeout_s = 0.3


def _run_quick(test: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _uvicorn(_app, _QuickHead) as (_, port):
            await test(port)

    asyncio.run(main())


@pytest.mark.parametrize("sent", [b"", b"POST / HTTP/1.1\r\nHost: te"], ids=["nothing", "half a head"])
def test_a_connection_whose_head_does_not_come_is_closed(sent: bytes) -> None:
    async def test(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(sent)
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        finally:
            writer.close()
        assert _Recording.writes == []

    _run_quick(test)


def test_a_head_that_came_leaves_the_connection_to_its_keep_alive() -> None:
    """A head sent in two parts within the time, then a pause longer than it (but shorter
    than uvicorn's keep-alive), then a second request: both are answered."""

    async def test(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            first = _post("/", b"one")
            writer.write(first[:10])
            await asyncio.sleep(0.1)
            writer.write(first[10:])
            received = b""
            while not received.endswith(b"echo:one"):
                received += await asyncio.wait_for(reader.read(65536), 10)
            await asyncio.sleep(0.6)
            writer.write(_post("/", b"two"))
            while not received.endswith(b"echo:two"):
                received += await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()

    _run_quick(test)


async def _slow_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``_app``, except that ``/slowget`` answers a second late without reading its body."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/slowget":
        await _app(scope, receive, send)
        return
    await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"slow"})


async def _read_until(reader: asyncio.StreamReader, end: bytes) -> bytes:
    received = b""
    while not received.endswith(end):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        if not chunk:
            break
        received += chunk
    return received


def test_a_stray_crlf_does_not_turn_the_head_timeout_off() -> None:
    """A bare CRLF begins no request (and stops uvicorn's keep-alive timer)."""

    async def main() -> None:
        async with _uvicorn(_app, _QuickHead) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"\r\n")
                assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
            finally:
                writer.close()

    asyncio.run(main())


def test_a_head_held_back_behind_a_slow_reply_is_not_timed_while_reading_is_paused() -> None:
    """A slow GET, a POST queued behind it (reading pauses) and half of a third head: the wait
    for that head starts when reading resumes, not while the server was not reading."""

    async def main() -> None:
        async with _uvicorn(_slow_app, _QuickHead) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                third = _post("/", b"three")
                writer.write(b"GET /slowget HTTP/1.1\r\nHost: t\r\n\r\n" + _post("/", b"two") + third[:12])
                await asyncio.sleep(0.05)
                writer.write(third[12:])
                received = await _read_until(reader, b"echo:three")
            finally:
                writer.close()
            assert received.count(b"HTTP/1.1 200 OK") == 3, received

    asyncio.run(main())


def test_pipelined_heads_each_restart_the_wait() -> None:
    """Thirty requests, every read ending in the middle of the next head, 50 ms apart: longer
    in all than the head timeout, each head well within it."""

    async def main() -> None:
        async with _uvicorn(_app, _QuickHead) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                requests = [_post("/", b"n%d" % i) for i in range(30)]
                stream = b"".join(requests)
                cuts = [sum(len(r) for r in requests[:i]) + 10 for i in range(len(requests))]
                for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
                    writer.write(stream[start:end])  # ends 10 bytes into the next head
                    await asyncio.sleep(0.05)
                received = await _read_until(reader, b"echo:n29")
            finally:
                writer.close()
            assert received.count(b"HTTP/1.1 200 OK") == 30

    asyncio.run(main())


_LOOPS = pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


@_LOOPS
def test_a_head_too_long_is_answered_431_and_the_connection_closed(runner: Any) -> None:
    """httptools keeps a header's value until it ends: a 128 MB header was read whole. The
    head is refused once it passes the bound, with the error body every other refusal has."""

    async def test(port: int) -> None:
        limit = OneWriteHttpToolsProtocol.max_head_bytes
        request = _post("/", b"x", "X-Huge: " + "h" * (16 * limit))
        received = await _exchange(port, request, lambda got: False)  # read until closed
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"connection: close" in head
        error = json.loads(body)
        assert (error["statusCode"], error["code"]) == (431, "HEADERS_TOO_LARGE")
        assert f"longer than {limit:,} bytes" in error["message"]
        assert b"echo:" not in received

    async def main() -> None:
        async with _server() as port:
            await test(port)

    runner(main())


_EVERY_KIND = {
    "answered": _post("/", b"hi", "Connection: close"),
    "streamed": _post("/stream", b"", "Connection: close"),
    "HEAD": b"HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    "app failed": _post("/raise", b"x"),  # uvicorn's plain 500
    "upgrade with a body": _post("/", b"{}", "Connection: Upgrade", "Upgrade: h2c"),
    "not HTTP/1.1": b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    "bad target": b"GET http://a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "head too long": _post("/", b"x", "X-Huge: " + "h" * (16 * OneWriteHttpToolsProtocol.max_head_bytes)),
    "refused after a reply": _post("/", b"one") + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
}


@_LOOPS
def test_every_reply_carries_the_server_s_headers_once(runner: Any) -> None:
    """uvicorn writes the server's own headers (``RESPONSE_HEADERS``: ``nosniff``) at the head
    of every reply of its cycle; the replies this protocol writes itself carry them too."""
    assert ("X-Content-Type-Options", "nosniff") in RESPONSE_HEADERS

    async def main() -> None:
        found: dict[str, list[tuple[bytes, int]]] = {}
        async with _server() as port:
            for name, request in _EVERY_KIND.items():
                received = await _exchange(port, request, lambda _: False)  # read until closed
                heads = re.findall(rb"HTTP/1\.1 \d{3} .*?\r\n\r\n", received, re.S)
                nosniff = b"\r\nx-content-type-options: nosniff\r\n"
                found[name] = [(head[9:12], head.count(nosniff)) for head in heads]
        assert found == {
            "answered": [(b"200", 1)],
            "streamed": [(b"200", 1)],
            "HEAD": [(b"200", 1)],
            "app failed": [(b"500", 1)],
            "upgrade with a body": [(b"400", 1)],
            "not HTTP/1.1": [(b"400", 1)],
            "bad target": [(b"400", 1)],
            "head too long": [(b"431", 1)],
            "refused after a reply": [(b"200", 1), (b"400", 1)],
        }

    runner(main())


class _Reads(asyncio.Transport):
    """A connection's transport as the protocol sees it, for feeding it reads of chosen sizes."""

    def __init__(self, can_end: bool) -> None:
        super().__init__()
        self.written = b""
        self.closed = self.ended = False
        self.can_end = can_end
        self.heard: list[str] = []  # what the apps had heard when the connection was lost
        self.paused = False  # reading
        self.written_after_end = b""  # which uvloop refuses

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        if self.ended:
            self.written_after_end += bytes(data)
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return self.can_end  # not over TLS

    def write_eof(self) -> None:
        self.ended = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _fed(
    reads: list[bytes],
    can_end: bool = True,
    app: Any = _app,
    then: Callable[[OneWriteHttpToolsProtocol, _Reads], Awaitable[None]] | None = None,
) -> _Reads:
    """The transport after Trueup's protocol (over ``app``) was fed ``reads`` one by one, and
    ``then`` ran, before the connection was lost."""

    async def main() -> _Reads:
        config = uvicorn.Config(app, http=OneWriteHttpToolsProtocol, lifespan="off", log_level="critical")
        config.load()
        protocol = OneWriteHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = _Reads(can_end)
        protocol.connection_made(transport)
        for read in reads:
            protocol.data_received(read)
            await asyncio.sleep(0.01)  # the app answers what came
        transport.heard = list(_HEARD)
        if then is not None:
            await then(protocol, transport)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(main())


def test_the_head_bound_counts_only_reads_that_are_all_head() -> None:
    """A head within the bound is answered however the reads cut it, even one that begins in a
    read mostly taken by the body before it; one still coming after more than the bound beyond
    its first read is refused, the rest of it unread."""
    limit = OneWriteHttpToolsProtocol.max_head_bytes
    first = _post("/", b"a" * 300_000)
    second = _post("/", b"b", "X-Long: " + "l" * (limit - 200))
    cut = len(first) - 100_000
    fed = _fed([first[:cut], first[cut:] + second[:40_000], second[40_000:]])
    assert fed.written.count(b"HTTP/1.1 200 OK") == 2
    assert fed.written.endswith(b"echo:b")
    assert not fed.ended

    too_long = _post("/", b"c", "X-Long: " + "l" * (2 * limit))
    reads = [too_long[:1_000], too_long[1_000 : 2_000 + limit], too_long[2_000 + limit :]]
    fed = _fed(reads)
    assert fed.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert fed.ended and b"echo:" not in fed.written  # the rest read and dropped
    fed = _fed(reads, can_end=False)  # a TLS transport cannot end its side alone: it closes
    assert fed.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert fed.closed and not fed.ended


@_LOOPS
@pytest.mark.parametrize("path", ["/", "/slowget"])
def test_requests_sent_before_the_client_shuts_its_side_are_answered_then_closed(
    runner: Any, path: str
) -> None:
    """A client may shut its side once its requests are sent (``nc -N``, some proxies): the
    replies still come, in order, and then the server closes the connection."""

    async def main() -> None:
        # Closed once answered, not by the keep-alive timeout (longer than the read's wait).
        async with _uvicorn(_slow_app, _Recording, keep_alive_s=60) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(_post(path, b"one") + _post("/", b"two"))
                writer.write_eof()
                received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            finally:
                writer.close()
            first = b"slow" if path == "/slowget" else b"echo:one"
            assert received.count(b"HTTP/1.1 200 OK") == 2
            assert received.index(first) < received.index(b"echo:two")
            assert received.endswith(b"echo:two")

    runner(main())


def test_a_client_that_shuts_its_side_mid_body_is_closed_on() -> None:
    async def test(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_post("/", b"whole body")[:-4])
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()

    _run(test)


class _SecondHead(_Recording):
    head_timeout_s = 1.5


def test_after_the_client_shuts_its_side_each_reply_gets_the_whole_wait() -> None:
    """Three replies of a second each, after the client shut its side: the wait for a reply
    (1.5 s here) starts again when one is written, so none is cut off."""

    async def main() -> None:
        async with _uvicorn(_slow_app, _SecondHead, keep_alive_s=60) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"".join(_post("/slowget", b"") for _ in range(3)))
                writer.write_eof()
                received = await asyncio.wait_for(reader.read(), 10)
            finally:
                writer.close()
            assert received.count(b"HTTP/1.1 200 OK") == 3
            assert received.endswith(b"slow")

    uvloop.run(main())


def test_a_head_too_long_behind_a_reply_to_come_is_refused_after_it() -> None:
    """The reply to the request before it comes first (a write's 202 was lost with the
    connection), then the 431, then the end."""

    async def main() -> None:
        async with _uvicorn(_slow_app, _Recording) as (_, port):
            limit = OneWriteHttpToolsProtocol.max_head_bytes
            request = _post("/slowget", b"one") + _post("/", b"x", "X-Huge: " + "h" * (16 * limit))
            received = await _exchange(port, request, lambda got: False)  # read until closed
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
            slow_end = received.index(b"slow") + len(b"slow")
            assert received[slow_end:].startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert received.endswith(b'send shorter headers"}')

    uvloop.run(main())


def _chunked(path: str, chunks: list[bytes], trailers: bytes) -> bytes:
    """A chunked ``POST``: its head, ``chunks``, the last chunk and the trailer section."""
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + b"0\r\n" + trailers + b"\r\n"


def test_a_trailer_field_is_not_read_as_a_header() -> None:
    """uvicorn appended trailer fields to the request's headers, which an app reads after the
    body (FastAPI does): a trailer could supply an API key the head did not have."""

    async def test(port: int) -> None:
        request = _chunked("/headers", [b"hello"], b"X-Api-Key: trailing\r\nX-Other: 1\r\n")
        received = await _exchange(
            port, request, lambda got: b"headers:" in got and got.endswith(b"encoding")
        )
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"headers:host,transfer-encoding")

    _run(test)


def test_the_trailer_bound_counts_only_reads_that_are_all_trailers() -> None:
    """A trailer section within the bound is read (and dropped) however the reads cut it, the
    body's chunks in reads of their own included; one longer is refused with a 431, and the app
    hears that the client left."""
    limit = OneWriteHttpToolsProtocol.max_head_bytes
    within = _chunked("/", [b"one", b"two"], b"X-Long: " + b"l" * (limit + 1000) + b"\r\n")
    start = within.index(b"0\r\nX-Long") + 20  # the first read of the trailers ends here
    reads = [within[:60], within[60:start], within[start : start + limit], within[start + limit :]]
    fed = _fed(reads)
    assert fed.written.startswith(b"HTTP/1.1 200 OK\r\n") and fed.written.endswith(b"echo:onetwo")
    assert not fed.ended

    _HEARD.clear()
    too_long = _chunked("/", [b"one"], b"X-Long: " + b"l" * (2 * limit) + b"\r\n")
    start = too_long.index(b"0\r\nX-Long")
    cuts = [start + 10, start + 10 + limit // 2, start + 20 + limit, start + 30 + limit]
    fed = _fed([too_long[a:b] for a, b in zip([0, *cuts], [*cuts, len(too_long)], strict=True)])
    assert fed.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), fed.written[:80]
    error = json.loads(fed.written.partition(b"\r\n\r\n")[2])
    assert error["code"] == "HEADERS_TOO_LARGE" and "trailer section" in error["message"]
    assert fed.ended and b"echo:" not in fed.written  # the app's late reply dropped
    assert fed.heard == ["http.disconnect"]  # at the refusal, not when the connection went

    # A server stopping closes such a connection at once: uvicorn waited for its request to be
    # answered (it never is), up to the graceful shutdown's 10 s.
    async def stop(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        protocol.shutdown()
        assert transport.closed

    _fed([too_long[a:b] for a, b in zip([0, *cuts], [*cuts, len(too_long)], strict=True)], then=stop)


@_LOOPS
def test_trailers_too_long_on_a_real_connection_are_answered_431(runner: Any) -> None:
    async def test(port: int) -> None:
        limit = OneWriteHttpToolsProtocol.max_head_bytes
        request = _chunked("/", [b"body"], b"X-Huge: " + b"h" * (16 * limit) + b"\r\n")
        received = await _exchange(port, request, lambda got: False)  # read until closed
        assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert received.endswith(b'send the body without trailers"}')

    async def main() -> None:
        async with _server() as port:
            await test(port)

    runner(main())


@_LOOPS
def test_bytes_that_are_not_http_get_the_usual_error_body_after_the_replies_before_them(runner: Any) -> None:
    """uvicorn answered the parser's refusal with a plain-text 400 at once, ahead of the reply
    to the request before it, and closed the connection: that reply (a write's 202) was lost."""

    async def main() -> None:
        async with _uvicorn(_slow_app, _Recording) as (_, port):
            request = _post("/slowget", b"one") + b"POST / HTTP/1.1\r\nBad Name: x\r\n\r\n"
            received = await _exchange(port, request, lambda got: False)  # read until closed
            assert received.startswith(b"HTTP/1.1 200 OK\r\n")
            rest = received[received.index(b"slow") + len(b"slow") :]
            assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            head, _, body = rest.partition(b"\r\n\r\n")
            assert b"content-type: application/json" in head and b"connection: close" in head
            error = json.loads(body)
            assert (error["statusCode"], error["code"]) == (400, "VALIDATION_ERROR")
            assert error["message"].startswith("the request is not valid HTTP/1.1: Invalid header")

    runner(main())


def test_bytes_that_are_not_http_are_answered_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's warning said neither who nor what, one line per request any client sends."""
    unlog_refused_bytes()
    uvicorn_log = logging.getLogger("uvicorn.error")
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        uvicorn_log.warning("Invalid HTTP request received.")
        uvicorn_log.warning("ASGI callable returned without starting response.")  # others still are
    assert [r.getMessage() for r in caplog.records] == ["ASGI callable returned without starting response."]


def test_a_bad_chunk_ends_its_request_s_body_and_is_answered_400() -> None:
    """The refused bytes are in a request's body: its app hears that the client left (its body
    never ends), and the client gets the 400 instead of a reply."""
    _HEARD.clear()
    request = _chunked("/", [b"one"], b"")
    bad = request.replace(b"0\r\n\r\n", b"zz\r\nmore\r\n")
    fed = _fed([bad[:60], bad[60:]])
    assert fed.written.startswith(b"HTTP/1.1 400 Bad Request\r\n"), fed.written[:80]
    assert b"not valid HTTP/1.1" in fed.written and b"echo:" not in fed.written
    assert fed.heard == ["http.disconnect"]
    assert fed.ended


def test_a_request_whose_head_cannot_be_taken_is_refused_at_once() -> None:
    """A URL the parser passes and uvicorn cannot split: the request was counted as one to wait
    for a reply to, and the 400 never came."""
    fed = _fed([b"GET http://a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert fed.written.startswith(b"HTTP/1.1 400 Bad Request\r\n"), fed.written[:80]
    assert fed.ended


def test_bytes_refused_after_a_reply_that_came_before_its_body_are_still_answered() -> None:
    """The reply to ``/early`` is whole before its body has come (uvicorn's cycle then keeps
    saying more body is coming): the 400 to the bad request after it still comes."""
    bad = b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"
    fed = _fed([_post("/early", b"abcde")[:-5], b"abcde" + bad])
    assert fed.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert fed.written[fed.written.index(b"early") + 5 :].startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_refused_body_after_expect_100_continue_writes_nothing_after_the_end() -> None:
    """The request's app starts after the refusal ended the server's side: its first receive
    wrote the interim 100 Continue after the end (uvloop raises, and the route logged a 500)."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    fed = _fed([head + b"5\r\nhello\r\nzz\r\n"])
    assert fed.written.startswith(b"HTTP/1.1 400 Bad Request\r\n") and fed.ended
    assert fed.written_after_end == b""


def test_reading_resumes_for_the_lingering_close() -> None:
    """A body past uvicorn's high-water mark pauses reading until the app takes it; the app of a
    refused body never does, so the rest of what the client sends was never read and dropped."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    fed = _fed([head + b"%x\r\n%s\r\nzz\r\n" % (100_000, b"b" * 100_000)])
    assert fed.written.startswith(b"HTTP/1.1 400 Bad Request\r\n") and fed.ended
    assert not fed.paused


def test_a_refused_head_is_let_go_of_whole() -> None:
    """The request's scope held the parsed headers of a refused head (12.9 MB of tiny ones)."""
    limit = OneWriteHttpToolsProtocol.max_head_bytes
    tiny = _post("/", b"x", *["a:"] * (limit // 2))
    reads = [tiny[:1_000], tiny[1_000 : 2_000 + limit], tiny[2_000 + limit :]]

    async def check(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert transport.written.startswith(b"HTTP/1.1 431 ")
        assert protocol.scope["headers"] == []

    _fed(reads, then=check)


def test_a_refusal_waits_for_each_reply_before_it_and_a_stopping_server_does_not_linger() -> None:
    """Two slow replies before the refusal: each restarts the wait (1.5 s here, a second a
    reply), so neither is cut off; a client that has ended its side, or a server that is
    stopping, has the connection closed once the refusal is sent, not left to linger."""
    requests = _post("/slowget", b"") * 2 + b"\x00GARBAGE\r\n\r\n"

    async def main() -> None:
        async with _uvicorn(_slow_app, _SecondHead, keep_alive_s=60) as (_, port):
            received = await _exchange(port, requests, lambda got: False)  # read until closed
            assert received.count(b"HTTP/1.1 200 OK") == 2
            assert received[received.rindex(b"slow") + 4 :].startswith(b"HTTP/1.1 400 Bad Request\r\n")

    uvloop.run(main())

    async def half_closed(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert protocol.eof_received() is True  # replies are still to come
        while not transport.closed:
            await asyncio.sleep(0.05)
        assert b"400 Bad Request" in transport.written and not transport.ended

    _fed([requests], app=_slow_app, then=half_closed)

    async def stopping(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        protocol.shutdown()
        while not transport.closed:
            await asyncio.sleep(0.05)
        assert b"400 Bad Request" in transport.written and not transport.ended

    bad_chunk = _chunked("/", [b"one"], b"").replace(b"0\r\n\r\n", b"zz\r\n")
    _fed([_post("/slowget", b"") + bad_chunk], app=_slow_app, then=stopping)

    async def lingering(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        while not transport.ended:
            await asyncio.sleep(0.05)
        assert protocol.eof_received() is None  # the client's end finishes the lingering close

    _fed([requests], app=_slow_app, then=lingering)


def test_a_client_that_ends_its_side_mid_body_still_gets_the_replies_before_it() -> None:
    """The newest request's body will never come whole: its app hears that the client left, and
    the replies to the requests before it (and a refusal waiting behind them) still come; asyncio
    closed the connection at once, so a stored write's 202 was lost."""
    _HEARD.clear()
    partial = _post("/", b"0123456789")[:-4]
    bad_chunk = _chunked("/", [b"one"], b"").replace(b"0\r\n\r\n", b"zz\r\n")
    for after, refused in ((partial, False), (bad_chunk, True)):

        async def half_closed(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
            assert protocol.eof_received() is True
            while not transport.closed:
                await asyncio.sleep(0.05)

        fed = _fed([_post("/slowget", b"") + after], app=_slow_app, then=half_closed)
        assert fed.written.startswith(b"HTTP/1.1 200 OK\r\n")
        rest = fed.written[fed.written.index(b"slow") + 4 :]
        assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n") if refused else rest == b""
        assert not fed.ended
    assert _HEARD == ["http.disconnect"] * 2  # each second request's app


def test_a_head_whose_taking_fails_is_let_go_of_and_its_target_named() -> None:
    async def check(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"not valid HTTP/1.1: invalid request target" in transport.written
        assert protocol.scope["headers"] == []

    _fed([b"GET http://a:99999/ HTTP/1.1\r\nHost: x\r\n" + b"a:\r\n" * 1_000 + b"\r\n"], then=check)
    _fed([b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"], then=check)


def test_a_target_too_long_to_take_apart_is_refused_as_too_long_not_as_invalid() -> None:
    """httptools takes apart targets of up to 65,535 bytes; a longer one, valid but long, is a
    414 that says so (it read "invalid request target")."""

    async def too_long(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert transport.written.startswith(b"HTTP/1.1 414 "), transport.written[:80]
        assert b'"code":"URI_TOO_LONG"' in transport.written
        assert b"the request target is 66,000 bytes, longer than 65,535" in transport.written

    target = b"/healthz?" + b"a" * (66_000 - len(b"/healthz?"))
    _fed([b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"], then=too_long)

    async def answered(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert not transport.written.startswith(b"HTTP/1.1 414"), transport.written[:80]

    longest = b"/healthz?" + b"a" * (65_535 - len(b"/healthz?"))
    _fed([b"GET " + longest + b" HTTP/1.1\r\nHost: x\r\n\r\n"], then=answered)


@pytest.mark.parametrize(
    ("target", "path", "query", "host"),
    [
        (b"http://example.com", b"/", b"", b"example.com"),
        (b"http://example.com:8000?a=1", b"/", b"a=1", b"example.com:8000"),
        (b"http://abs.example:1234/a/b?c=1", b"/a/b", b"c=1", b"abs.example:1234"),
        (b"https://[::1]:8443/x", b"/x", b"", b"[::1]:8443"),
    ],
)
def test_an_absolute_target_names_the_host_and_an_empty_path_the_root(
    target: bytes, path: bytes, query: bytes, host: bytes
) -> None:
    """RFC 9110 section 4.2.3: an http URI's empty path is "/". uvicorn split such a target
    into no path at all and failed on it, so a valid request was refused as "User callback
    error", with a traceback logged each time. RFC 9112 section 3.2.2: the target's host is
    the request's, not the ``Host`` line's (a receipt's ``verifyUrl`` is built from it)."""

    async def check(protocol: OneWriteHttpToolsProtocol, transport: _Reads) -> None:
        assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n"), transport.written[:200]
        assert (protocol.scope["raw_path"], protocol.scope["query_string"]) == (path, query)
        assert [v for n, v in protocol.scope["headers"] if n == b"host"] == [host]

    _fed([b"POST " + target + b" HTTP/1.1\r\nHost: other.example\r\nContent-Length: 2\r\n\r\nok"], then=check)


_BIG = b"x" * (1 << 20)


async def _big_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Answers every request with 1 MiB, more than the socket's buffers take at once here."""
    if scope["type"] != "http":
        return
    headers = [(b"content-length", str(len(_BIG)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _BIG})


class _QuickReply(_Recording):
    reply_timeout_s = 0.5


async def _connect_small(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose receive buffer is small, so that replies not read fill the server's."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


@_LOOPS
def test_a_client_that_reads_none_of_its_replies_is_cut_off(runner: Any) -> None:
    """Pipelined GETs whose replies are never read: the server's writes wait for the client, and
    uvicorn waited for as long as it liked, keeping the connection, the reply and every request
    queued behind it. A wait in which the client takes nothing ends the connection."""

    async def main() -> None:
        async with _uvicorn(_big_app, _QuickReply) as (server, port):
            _, writer = await _connect_small(port)
            try:
                writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 40)
                for _ in range(200):  # 20 s at most: much longer than the server's wait
                    if not server.server_state.connections:
                        break
                    await asyncio.sleep(0.1)
                assert not server.server_state.connections, "the connection is still open"
            finally:
                writer.transport.abort()

    runner(main())


@_LOOPS
def test_a_client_that_reads_its_replies_slowly_gets_them_all(runner: Any) -> None:
    """Each wait in which the client took some of the replies is followed by another."""

    async def main() -> None:
        async with _uvicorn(_big_app, _QuickReply) as (_, port):
            reader, writer = await _connect_small(port)
            try:
                writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 4)
                received = 0
                while received < 4 * len(_BIG):
                    chunk = await asyncio.wait_for(reader.read(65536), 10)
                    assert chunk, f"closed by the server after {received:,} bytes"
                    received += len(chunk)
                    await asyncio.sleep(0.02)  # about 3 MB/s at most
            finally:
                writer.close()

    runner(main())


def test_requests_queued_behind_a_reply_are_let_go_of_when_the_client_leaves() -> None:
    """Pipelined requests behind a slow reply, and the client gone before any is answered: the
    queued requests' cycles point back at the connection's protocol, and kept in its queue they
    were left for the cyclic collector, which the server runs rarely."""

    async def main() -> None:
        async with _uvicorn(_slow_app, _Recording) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            queued = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 200
            writer.write(b"GET /slowget HTTP/1.1\r\nHost: t\r\n\r\n" + queued)
            for _ in range(100):  # until the server has taken them all
                if sum(len(c.pipeline) for c in server.server_state.connections) >= 199:
                    break
                await asyncio.sleep(0.05)
            writer.transport.abort()
            for _ in range(100):
                if not server.server_state.connections and not server.server_state.tasks:
                    break
                await asyncio.sleep(0.05)
            alive = [o for o in gc.get_objects() if isinstance(o, RequestResponseCycle)]
            assert len(alive) <= 1  # the one being answered, which the protocol still holds

    gc.collect()
    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
