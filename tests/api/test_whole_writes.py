"""Writes answered by the HTTP protocol itself: a real uvicorn server on 127.0.0.1 with
Trueup's protocol and app over a real database of each backend, read raw.

A plain small write whose body comes with its head is answered without uvicorn's request cycle
(:mod:`trueup.api.whole_writes`); every reply must be byte for byte what the usual way gives,
and anything unusual about a request must send it the usual way. The protocol here counts the
writes it answered itself, so each test knows which way a request went.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
import uvloop
from starlette.middleware.gzip import GZipMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from trueup.api.app import create_app
from trueup.api.fastpath import WriteAnswers
from trueup.api.http_protocol import OneWriteHttpToolsProtocol
from trueup.api.reply_head import RESPONSE_HEADERS
from trueup.api.whole_writes import _find_answers
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings


class _Counting(OneWriteHttpToolsProtocol):
    whole: ClassVar[list[bytes]] = []  # the targets of the writes answered whole, in order

    async def _answer_whole(self, answering: Any, body: bytes) -> None:
        type(self).whole.append(answering.scope["raw_path"])
        await super()._answer_whole(answering, body)


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    """Settings a test changes from the defaults (parametrize to change them)."""
    return {}


@pytest.fixture
def services(database_url: str, tmp_path: Path, settings_changes: dict[str, Any]) -> Iterator[Services]:
    settings = replace(Settings(), data_dir=tmp_path, database_url=database_url, **settings_changes)
    opened = open_services(settings)
    yield opened
    opened.close()


@asynccontextmanager
async def _server(services: Services) -> AsyncIterator[int]:
    _Counting.whole = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            create_app(services),
            http=_Counting,
            headers=list(RESPONSE_HEADERS),  # as `trueup serve` gives them
            lifespan="off",
            log_level="critical",
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)


def _run(services: Services, test: Callable[[int], Awaitable[None]]) -> None:
    """Run ``test`` against a server over ``services``, on uvloop as ``trueup serve`` runs."""

    async def main() -> None:
        async with _server(services) as port:
            await test(port)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _request(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", *headers]
    if not any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    """One client connection that reads whole replies (each has a Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    async def reply(self) -> bytes:
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end >= 0 and self.buffer.startswith(b"HTTP/1.1 100 "):
                reply, self.buffer = self.buffer[: head_end + 4], self.buffer[head_end + 4 :]
                return reply
            if head_end >= 0:
                match = re.search(rb"(?im)^content-length: *(\d+)\r$", self.buffer[: head_end + 2])
                assert match is not None, self.buffer[:head_end]
                end = head_end + 4 + int(match.group(1))
                if len(self.buffer) >= end:
                    reply, self.buffer = self.buffer[:end], self.buffer[end:]
                    return reply
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            assert chunk, f"the server closed the connection; received {self.buffer!r}"
            self.buffer += chunk

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""


@asynccontextmanager
async def _connect(port: int) -> AsyncIterator[_Connection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield _Connection(reader, writer)
    finally:
        writer.close()


async def _exchange(port: int, request: bytes) -> bytes:
    async with _connect(port) as connection:
        connection.writer.write(request)
        return await connection.reply()


_VARYING = re.compile(
    rb'(date: [^\r]*|x-request-id: [^\r]*|"(?:requestId|acceptedAt|timestamp|id)":"[^"]*"|content-length: \d+'
    rb"|req_[A-Za-z0-9]+)"
)


def _shape(reply: bytes) -> bytes:
    """A reply with what differs between two equal requests (ids, times, and so lengths) blanked."""
    return _VARYING.sub(lambda m: m.group(0).split(b":")[0] + b":~", reply)


def _write(key: str, item_key: str) -> bytes:
    return json.dumps({"items": [{"key": item_key, "accountId": "c1", "bits": 250, "reason": "r"}]}).encode()


def test_each_reply_to_a_whole_write_is_the_usual_ones_byte_for_byte(services: Services) -> None:
    key = services.keys.create("acme").key
    read_only = services.keys.create("acme", read_only=True).key
    json_type = "Content-Type: application/json"
    cases: list[tuple[str, Callable[[str], tuple[str, bytes, tuple[str, ...]]]]] = [
        ("accepted", lambda n: ("/api/v1/writes", _write(key, f"w-{n}"), (f"X-Api-Key: {key}", json_type))),
        (
            "emit",
            lambda n: (
                "/api/v1/balance/delta",
                json.dumps({"key": f"e-{n}", "accountId": "c1", "bits": -5, "reason": "r"}).encode(),
                (f"X-Api-Key: {key}", json_type),
            ),
        ),
        ("no key", lambda n: ("/api/v1/writes", _write(key, f"k-{n}"), (json_type,))),
        (
            "unknown key",
            lambda n: ("/api/v1/writes", _write(key, f"u-{n}"), ("X-Api-Key: pk_live_nope", json_type)),
        ),
        (
            "read-only key",
            lambda n: ("/api/v1/writes", _write(key, f"o-{n}"), (f"X-Api-Key: {read_only}", json_type)),
        ),
        ("not JSON", lambda n: ("/api/v1/writes", b"{", (f"X-Api-Key: {key}", json_type))),
        ("no type", lambda n: ("/api/v1/writes", _write(key, f"t-{n}"), (f"X-Api-Key: {key}",))),
        (
            "other charset",
            lambda n: (
                "/api/v1/writes",
                _write(key, f"c-{n}"),
                (f"X-Api-Key: {key}", f"{json_type}; charset=latin-1"),
            ),
        ),
        (
            "invalid item",
            lambda n: ("/api/v1/writes", b'{"items":[{"key":"x"}]}', (f"X-Api-Key: {key}", json_type)),
        ),
        ("empty", lambda n: ("/api/v1/writes", b"", (f"X-Api-Key: {key}", json_type))),
        (
            "idempotent",
            lambda n: (
                "/api/v1/writes",
                _write(key, f"i-{n}"),
                (f"X-Api-Key: {key}", json_type, f"Idempotency-Key: idem-{n}"),
            ),
        ),
    ]

    async def test(port: int) -> None:
        for name, make in cases:
            path, body, headers = make("whole")
            whole = await _exchange(port, _request(path, body, *headers))
            assert _Counting.whole[-1:] == [path.encode()], name
            counted = len(_Counting.whole)
            path, body, headers = make("usual")
            # A query string (which no write route reads) sends a request the usual way.
            usual = await _exchange(port, _request(path + "?", body, *headers))
            assert len(_Counting.whole) == counted, name
            assert _shape(whole) == _shape(usual), name
            assert whole.split(b"\r\n", 1)[0] == usual.split(b"\r\n", 1)[0], name
        # a replay under the same idempotency key, answered whole, repeats the stored reply
        path, body, headers = cases[-1][1]("whole")
        first = await _exchange(port, _request(path, body, *headers))
        again = await _exchange(port, _request(path, body, *headers))
        assert first.split(b"\r\n\r\n", 1)[1] == again.split(b"\r\n\r\n", 1)[1]

    _run(services, test)


@pytest.mark.parametrize("settings_changes", [{"rate_limit_burst": 4, "rate_limit_per_s": 0.001}])
def test_every_reply_to_a_whole_write_carries_the_server_s_headers_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every reply of uvicorn's cycle: ``nosniff`` (``RESPONSE_HEADERS``), once, whatever the
    status, the plain 500 of a failure included."""
    key = services.keys.create("acme").key
    read_only = services.keys.create("acme", read_only=True).key
    json_type = "Content-Type: application/json"
    emit = json.dumps({"customerId": "c1", "delta": 1, "reason": "r"}).encode()
    requests = {
        "accepted": _request("/api/v1/writes", _write(key, "h-1"), f"X-Api-Key: {key}", json_type),
        "emitted": _request("/api/v1/balance/delta", emit, f"X-Api-Key: {key}", json_type),
        "no key": _request("/api/v1/writes", _write(key, "h-2"), json_type),
        "read-only key": _request("/api/v1/writes", _write(key, "h-3"), f"X-Api-Key: {read_only}", json_type),
        "no type": _request("/api/v1/writes", _write(key, "h-4"), f"X-Api-Key: {key}"),
        "not JSON": _request("/api/v1/writes", b"{", f"X-Api-Key: {key}", json_type),
        "rate limited": _request("/api/v1/writes", _write(key, "h-5"), f"X-Api-Key: {key}", json_type),
    }

    async def failing(*_: object) -> None:
        raise RuntimeError("the answer failed")

    async def test(port: int) -> None:
        found = {}
        for name, request in requests.items():
            reply = await _exchange(port, request)
            found[name] = (reply.split(b" ", 2)[1], reply.count(b"\r\nx-content-type-options: nosniff\r\n"))
            assert len(_request_ids(reply)) == 1, name
        monkeypatch.setattr(WriteAnswers, "answer_whole", failing)
        async with _connect(port) as connection:
            connection.writer.write(requests["accepted"])
            reply = await connection.reply()
            assert await connection.closed()
        found["failed"] = (reply.split(b" ", 2)[1], reply.count(b"\r\nx-content-type-options: nosniff\r\n"))
        assert len(_request_ids(reply)) == 1  # the plain 500 too
        assert len(_Counting.whole) == len(found)  # every one answered whole
        assert found == {
            "accepted": (b"202", 1),
            "emitted": (b"202", 1),
            "no key": (b"401", 1),
            "read-only key": (b"403", 1),
            "no type": (b"415", 1),
            "not JSON": (b"400", 1),
            "rate limited": (b"429", 1),
            "failed": (b"500", 1),
        }

    _run(services, test)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/writes", b'{"items":[{"key":"spaced-1","accountId":"c1","bits":7}]}'),
        ("/api/v1/balance/delta", b'{"customerId":"c1","delta":7,"reason":"r"}'),  # its key made up
    ],
)
def test_an_idempotency_key_is_the_same_key_whatever_whitespace_surrounds_it(
    services: Services, path: str, body: bytes
) -> None:
    """RFC 9110 section 5.5: a field value has no leading or trailing whitespace, which the parser
    leaves at its end. A retry whose key came with a space or tab after it (another client, a
    proxy) must replay the first reply, not store the write again, either way in."""
    key = services.keys.create("acme").key
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json")

    async def test(port: int) -> None:
        first = await _exchange(port, _request(path, body, *headers, "Idempotency-Key: spaced"))
        assert first.startswith(b"HTTP/1.1 202 "), first
        for target, spaced in [(path, "spaced \t"), (path + "?", "spaced "), (path, "spaced  ")]:
            again = await _exchange(port, _request(target, body, *headers, f"Idempotency-Key: {spaced}"))
            assert again.split(b"\r\n\r\n", 1)[1] == first.split(b"\r\n\r\n", 1)[1], (spaced, again)
        assert _Counting.whole == [path.encode()] * 3
        with services.storage.engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM deltas") == 1

    _run(services, test)


def test_a_write_whose_body_comes_later_goes_the_usual_way(services: Services) -> None:
    key = services.keys.create("acme").key
    request = _request(
        "/api/v1/writes", _write(key, "late-1"), f"X-Api-Key: {key}", "Content-Type: application/json"
    )
    cut = request.index(b"\r\n\r\n") + 10

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(request[:cut])
            await connection.writer.drain()
            await asyncio.sleep(0.2)
            connection.writer.write(request[cut:])
            reply = await connection.reply()
            assert reply.startswith(b"HTTP/1.1 202 "), reply
            assert _Counting.whole == []
            # the connection goes on, and the next write that comes whole is answered whole
            connection.writer.write(
                _request(
                    "/api/v1/writes",
                    _write(key, "late-2"),
                    f"X-Api-Key: {key}",
                    "Content-Type: application/json",
                )
            )
            assert (await connection.reply()).startswith(b"HTTP/1.1 202 ")
            assert _Counting.whole == [b"/api/v1/writes"]

    _run(services, test)


def test_pipelined_requests_are_answered_in_order_whichever_way_each_goes(services: Services) -> None:
    key = services.keys.create("acme").key
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json")
    pipelined = (
        _request("/api/v1/writes", _write(key, "p-1"), *headers)
        + b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
        + _request("/api/v1/writes", _write(key, "p-2"), *headers)
        + _request("/api/v1/writes", b"{", *headers)
    )

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(pipelined)
            replies = [await connection.reply() for _ in range(4)]
        assert [reply.split(b" ", 2)[1] for reply in replies] == [b"202", b"200", b"202", b"400"]
        # the first came whole with nothing before it; the others waited behind it
        assert _Counting.whole[:1] == [b"/api/v1/writes"]

    _run(services, test)


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (("X-Api-Key: {key}",), b"400"),  # the key twice: refused by name, the usual way
        (("Content-Type: application/json",), b"400"),
        (("Expect: 100-continue",), b"202"),
        (("Transfer-Encoding: chunked",), b"202"),
        (("Connection: close",), b"202"),
    ],
)
def test_a_write_with_anything_unusual_goes_the_usual_way(
    services: Services, extra: tuple[str, ...], status: bytes
) -> None:
    key = services.keys.create("acme").key
    body = _write(key, "unusual-1")
    extra = tuple(line.format(key=key) for line in extra)
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json", *extra)
    if "Transfer-Encoding: chunked" in extra:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(_request("/api/v1/writes", body, *headers))
            reply = await connection.reply()
            if b"100 Continue" in reply.split(b"\r\n", 1)[0]:
                reply = await connection.reply()
            assert reply.split(b" ", 2)[1] == status, reply
            if "Connection: close" in extra:
                assert b"connection: close\r\n" in reply
                assert await connection.closed()
        assert _Counting.whole == []

    _run(services, test)


def test_a_write_whose_client_leaves_before_the_reply_is_still_stored_once(services: Services) -> None:
    key = services.keys.create("acme").key
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json")

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(_request("/api/v1/writes", _write(key, "gone-1"), *headers))
            await connection.writer.drain()
        # the server answers the next connection; the write of the one that left was committed
        async with _connect(port) as connection:
            connection.writer.write(_request("/api/v1/writes", _write(key, "gone-2"), *headers))
            assert (await connection.reply()).startswith(b"HTTP/1.1 202 ")
        for _ in range(200):
            with services.storage.engine.read() as tx:
                stored = tx.scalar("SELECT COUNT(*) FROM deltas WHERE item_key IN ('gone-1', 'gone-2')")
            if stored == 2:
                break
            await asyncio.sleep(0.05)
        assert stored == 2
        assert _Counting.whole == [b"/api/v1/writes", b"/api/v1/writes"]

    _run(services, test)


def test_writes_sent_before_the_client_shuts_its_side_are_answered_then_closed(services: Services) -> None:
    """``nc -N`` shuts its side once the request is sent: the 202 still comes (it was lost, the
    write stored), for a write answered whole and for one pipelined behind it, which goes the
    usual way; then the connection closes."""
    key = services.keys.create("acme").key
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json")

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(
                _request("/api/v1/writes", _write(key, "half-1"), *headers)
                + _request("/api/v1/writes", _write(key, "half-2"), *headers)
            )
            connection.writer.write_eof()
            assert (await connection.reply()).startswith(b"HTTP/1.1 202 ")
            assert (await connection.reply()).startswith(b"HTTP/1.1 202 ")
            assert await connection.closed()
        assert _Counting.whole == [b"/api/v1/writes"]

    _run(services, test)


def test_a_content_length_of_thousands_of_digits_goes_the_usual_way(services: Services) -> None:
    """The parser takes any number of leading zeros; ``int()`` of more than 4,300 digits raises,
    and the request was left without a reply."""
    key = services.keys.create("acme").key
    length = "Content-Length: " + "0" * 5_000 + "2"

    async def test(port: int) -> None:
        headers = (f"X-Api-Key: {key}", "Content-Type: application/json", length)
        reply = await _exchange(port, _request("/api/v1/writes", b"{}", *headers))
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
        assert b"items" in reply  # the app's own refusal, naming the field
        assert _Counting.whole == []

    _run(services, test)


def test_a_write_followed_by_bytes_that_are_not_http_gets_its_202_first(services: Services) -> None:
    """A write answered whole, then garbage in the same read: the 202 comes, then the 400 that
    refuses the garbage, then the end (uvicorn wrote its 400 at once and closed: the write was
    stored and its 202 lost)."""
    key = services.keys.create("acme").key
    headers = (f"X-Api-Key: {key}", "Content-Type: application/json")

    async def test(port: int) -> None:
        async with _connect(port) as connection:
            connection.writer.write(
                _request("/api/v1/writes", _write(key, "g-1"), *headers) + b"\x00GARBAGE\r\n\r\n"
            )
            assert (await connection.reply()).startswith(b"HTTP/1.1 202 ")
            refusal = await connection.reply()
            assert refusal.startswith(b"HTTP/1.1 400 ")
            assert json.loads(refusal.partition(b"\r\n\r\n")[2])["code"] == "VALIDATION_ERROR"
            assert await connection.closed()
        assert _Counting.whole == [b"/api/v1/writes"]

    _run(services, test)


@pytest.mark.parametrize(
    ("settings_changes", "case"),
    [
        ({"max_body_bytes": 1_024}, "too large"),
        ({"rate_limit_per_s": 0.001, "rate_limit_burst": 1}, "rate limited"),
    ],
)
def test_a_write_refused_by_a_limit_is_answered_alike_either_way(
    services: Services, settings_changes: dict[str, Any], case: str
) -> None:
    key = services.keys.create("acme").key
    headers = [f"X-Api-Key: {key}", "Content-Type: application/json"]
    body = _write(key, "limited")
    if case == "too large":
        body = body[:-2] + b" " * (2_002 - len(body)) + body[-2:]
        headers.append("Content-Length: 02002")  # the message quotes the header as it came

    async def test(port: int) -> None:
        if case == "rate limited":  # the key's one request of its burst
            assert (
                await _exchange(port, _request("/api/v1/writes", _write(key, "first"), *headers))
            ).startswith(b"HTTP/1.1 202 ")
        whole = await _exchange(port, _request("/api/v1/writes", body, *headers))
        usual = await _exchange(port, _request("/api/v1/writes?", body, *headers))
        status = b"413" if case == "too large" else b"429"
        assert whole.split(b" ", 2)[1] == usual.split(b" ", 2)[1] == status, (whole, usual)
        assert _shape(whole) == _shape(usual)
        assert whole.split(b"\r\n\r\n", 1)[1] == usual.split(b"\r\n\r\n", 1)[1]
        assert _Counting.whole[-1:] == [b"/api/v1/writes"]

    _run(services, test)


def test_only_uvicorn_s_proxy_headers_layer_is_looked_through_for_the_answers(services: Services) -> None:
    app = create_app(services)
    assert _find_answers(app) == (app.state.write_answers, ())
    proxy = ProxyHeadersMiddleware(app)
    assert _find_answers(proxy) == (app.state.write_answers, (proxy,))  # kept for the access log
    # a layer of the operator's own must see every request: none is answered whole under it
    assert _find_answers(GZipMiddleware(app))[0] is None
    assert _find_answers(ProxyHeadersMiddleware(GZipMiddleware(app)))[0] is None


def test_a_write_answered_whole_during_a_graceful_shutdown_is_stored_and_closes_its_connection(
    tmp_path: Path,
) -> None:
    # On SQLite only: the test holds SQLite's writer from a connection of its own.
    database_url = f"sqlite:///{tmp_path / 'trueup.db'}"
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=database_url))
    key = services.keys.create("acme").key
    request = _request(
        "/api/v1/writes", _write(key, "at-shutdown"), f"X-Api-Key: {key}", "Content-Type: application/json"
    )

    async def main() -> None:
        _Counting.whole = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            config = uvicorn.Config(
                create_app(services), http=_Counting, lifespan="off", log_level="critical"
            )
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            # Another connection holds SQLite's writer, so the write's group commit waits for it.
            holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            async with _connect(sock.getsockname()[1]) as connection:
                connection.writer.write(request)
                while not _Counting.whole:  # the protocol has the write and is answering it
                    await asyncio.sleep(0.01)
                server.should_exit = True  # a graceful shutdown: answers in flight are waited for
                await asyncio.sleep(0.2)
                holder.execute("COMMIT")
                reply = await connection.reply()
                assert reply.startswith(b"HTTP/1.1 202 "), reply
                assert b"\r\nconnection: close\r\n" in reply
                assert await connection.closed()
            await asyncio.wait_for(serving, 10)
            holder.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
        with services.storage.engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM deltas WHERE item_key = 'at-shutdown'") == 1
    finally:
        services.close()


_NEW_ID = re.compile(rb"[0-9a-f]{16}")


def _request_ids(reply: bytes) -> list[bytes]:
    head = reply.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"\r\nx-request-id: ([^\r]*)", head)


def test_every_reply_names_its_request_whichever_way_it_is_answered(services: Services) -> None:
    """``X-Request-Id``: a usable one the request brings is kept, otherwise each reply has a new
    one, once, whatever answers it (the protocol itself, the app, a refusal of bytes)."""
    key = services.keys.create("acme").key
    json_type = "Content-Type: application/json"

    def write(n: int, *more: str, query: str = "") -> bytes:
        return _request(
            f"/api/v1/writes{query}", _write(key, f"r-{n}"), f"X-Api-Key: {key}", json_type, *more
        )

    given = "trace-1.a:b_C"
    requests = {
        "whole": (write(1), True),
        "usual": (write(2, query="?"), False),
        "not found": (
            b"GET /api/v1/writes/req_nobody HTTP/1.1\r\nHost: t\r\nX-Api-Key: " + key.encode() + b"\r\n\r\n",
            False,
        ),
        "probe": (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", False),
        "given, whole": (write(3, f"X-Request-Id: {given}"), True),
        "given, usual": (write(4, f"X-Request-Id: {given}", query="?"), False),
        "unusable, whole": (write(5, "X-Request-Id: two words"), True),
        "too long, usual": (write(6, "X-Request-Id: " + "a" * 129, query="?"), False),
        "given twice": (write(7, "X-Request-Id: one", "X-Request-Id: two"), False),
        "given, padded": (write(8, "X-Request-Id: padded  "), True),  # spaces are not the value's
    }

    async def test(port: int) -> None:
        found: dict[str, list[bytes]] = {}
        for name, (request, whole) in requests.items():
            counted = len(_Counting.whole)
            reply = await _exchange(port, request)
            assert len(_Counting.whole) == counted + whole, name
            found[name] = _request_ids(reply)
        async with _connect(port) as connection:  # bytes that are not HTTP: the protocol refuses them
            connection.writer.write(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            found["refused"] = _request_ids(await connection.reply())
        async with _connect(port) as connection:  # refused in the body of a request: its id
            chunked = f"POST /api/v1/writes HTTP/1.1\r\nHost: t\r\nX-Api-Key: {key}\r\n{json_type}\r\n"
            connection.writer.write(
                chunked.encode()
                + f"X-Request-Id: {given}\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n".encode()
            )
            refused = await connection.reply()
            assert refused.startswith(b"HTTP/1.1 400 "), refused
            found["refused in a body"] = _request_ids(refused)
        assert all(len(ids) == 1 for ids in found.values()), found
        assert found["given, padded"] == [b"padded"]
        kept = {name for name, ids in found.items() if ids == [given.encode()]}
        assert kept == {"given, whole", "given, usual", "refused in a body"}
        made = [ids[0] for name, ids in found.items() if name not in kept and name != "given, padded"]
        assert all(_NEW_ID.fullmatch(made_id) for made_id in made), found
        assert len(set(made)) == len(made)

    _run(services, test)


def test_the_log_line_of_a_failure_names_the_request_s_id(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = services.keys.create("acme").key

    def failing(*_: object) -> None:
        raise RuntimeError("the check failed")

    monkeypatch.setattr(services.writes, "require_write", failing)
    json_type = "Content-Type: application/json"
    whole = _request("/api/v1/writes", _write(key, "f-1"), f"X-Api-Key: {key}", json_type)
    usual = _request("/api/v1/writes?", _write(key, "f-2"), f"X-Api-Key: {key}", json_type)

    async def test(port: int) -> None:
        for request in (whole, usual):
            reply = await _exchange(port, request)
            assert reply.startswith(b"HTTP/1.1 500 ")
            (rid,) = _request_ids(reply)
            named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unhandled error ")]
            assert named[-1].endswith(f" on POST /api/v1/writes x-request-id={rid.decode()}"), named

    with caplog.at_level(logging.ERROR, logger="trueup.api.errors"):
        _run(services, test)
    assert len(_Counting.whole) == 1
