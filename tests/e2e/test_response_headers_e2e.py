"""Every reply of the real server says ``X-Content-Type-Options: nosniff``, once: the routes'
answers and errors of every kind, HEAD, the writes the HTTP protocol answers itself, and its own
refusals of bytes that are not HTTP/1.1 or of a head too long."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess, create_key, wait_until

_NOSNIFF = [b"nosniff"]


def _sniffing(reply: bytes) -> list[bytes]:
    """The values of the ``X-Content-Type-Options`` headers of a raw reply's head."""
    head = reply.partition(b"\r\n\r\n")[0]
    return re.findall(rb"(?im)^x-content-type-options: *([^\r]*)\r?$", head)


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _raw(port: int, *parts: bytes, pause_s: float = 0.0) -> bytes:
    """Send ``parts`` (each in one write, ``pause_s`` apart) and read one whole reply: its
    ``Content-Length`` worth of body, or all until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        for n, part in enumerate(parts):
            if n:
                time.sleep(pause_s)
            conn.sendall(part)
        received = b""
        while True:
            head, found, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
            if found and length is not None and len(body) >= int(length.group(1)):
                return received
            chunk = conn.recv(65536)
            if not chunk:
                return received
            received += chunk


def _post(path: str, body: bytes, *headers: str) -> bytes:
    """A request with a ``Content-Length``, head and body as one write: a write route's answers it
    whole when nothing about it is unusual."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _item(key: str) -> bytes:
    return json.dumps({"items": [{"key": key, "accountId": "sniff", "bits": 1}]}).encode()


def test_every_kind_of_reply_says_nosniff(tmp_path: Path) -> None:
    key = create_key(tmp_path, None)
    read_only = create_key(tmp_path, None, "acme", "--read-only")
    limited = create_key(tmp_path, None, "acme")
    limited_id = limited.removeprefix("pk_live_").partition(".")[0]
    env = {
        "TRUEUP_MAX_BODY_BYTES": "1024",
        "TRUEUP_BODY_TIMEOUT_S": "0.5",
        "TRUEUP_MAX_QUEUE_DEPTH": "4",  # the four writes below fill it: no sequencer seals them
        "TRUEUP_RATE_LIMIT_OVERRIDES": f"{limited_id}=0.001/1",
    }
    answered: list[tuple[str, int, int, list[bytes]]] = []  # (what, status wanted, status, values)

    with ServerProcess(tmp_path, None, extra_env=env, extra_args=["--no-sequencer"]) as server:
        url, port = server.base_url, server.port
        auth = {"X-Api-Key": key}
        json_auth = [f"X-Api-Key: {key}", "Content-Type: application/json"]
        too_big = json.dumps({"items": [{"key": "big", "accountId": "a", "bits": 1, "reason": "r" * 2000}]})

        def asked(what: str, wanted: int, reply: httpx.Response) -> None:
            values = [value.encode() for value in reply.headers.get_list("x-content-type-options")]
            answered.append((what, wanted, reply.status_code, values))

        def sent(what: str, wanted: int, reply: bytes) -> None:
            answered.append((what, wanted, _status(reply), _sniffing(reply)))

        # Routes answered through the app: successes, HEAD, documents of other types.
        asked("healthz", 200, httpx.get(f"{url}/healthz"))
        asked("HEAD healthz", 200, httpx.head(f"{url}/healthz"))
        asked("readyz", 200, httpx.get(f"{url}/readyz"))
        asked("metrics", 200, httpx.get(f"{url}/metrics"))
        asked("openapi.json", 200, httpx.get(f"{url}/openapi.json"))
        asked("docs (HTML)", 200, httpx.get(f"{url}/docs"))
        asked("log checkpoint (text)", 200, httpx.get(f"{url}/api/v1/log/checkpoint"))
        asked("usage", 200, httpx.get(f"{url}/api/v1/balance/usage", headers=auth))
        asked("HEAD usage", 200, httpx.head(f"{url}/api/v1/balance/usage", headers=auth))

        # Errors of the app: each kind, from routing, the guards, the routes.
        asked("unknown route", 404, httpx.get(f"{url}/api/v1/nothing-here"))
        asked("HEAD unknown route", 404, httpx.head(f"{url}/api/v1/nothing-here"))
        asked("trailing slash", 404, httpx.get(f"{url}/api/v1/balance/usage/", headers=auth))
        asked("method not allowed", 405, httpx.delete(f"{url}/api/v1/writes", headers=auth))
        asked("no key", 401, httpx.get(f"{url}/api/v1/balance/usage"))
        asked("unknown customer", 404, httpx.get(f"{url}/api/v1/balance/derive/nobody", headers=auth))
        asked("bad query", 400, httpx.get(f"{url}/api/v1/balance/customers?limit=x", headers=auth))
        asked("NUL in query", 400, httpx.get(f"{url}/api/v1/balance/customers?search=%00", headers=auth))
        compare = {"customerId": "c", "yourBalance": 1.5, "theirBalance": 1, "startingBalance": 0}
        asked("bad body", 400, httpx.post(f"{url}/api/v1/balance/compare", headers=auth, json=compare))
        batch = f"{url}/api/v1/balance/delta/batch"
        asked("not JSON type", 415, httpx.post(batch, headers=auth, content=b"{}"))
        json_type = {**auth, "Content-Type": "application/json"}
        asked("body too large", 413, httpx.post(batch, headers=json_type, content=too_big.encode()))
        webhook = {"url": "https://8.8.8.8/hook"}
        asked(
            "read-only key",
            403,
            httpx.post(f"{url}/api/v1/webhooks", headers={"X-Api-Key": read_only}, json=webhook),
        )
        sent(
            "body that stops coming",
            408,
            _raw(port, _post("/api/v1/balance/compare", b"{" * 100, *json_auth)[:-90]),
        )

        # Writes the HTTP protocol answers itself (the head and a small body in one read).
        sent(
            "write: no key",
            401,
            _raw(port, _post("/api/v1/writes", _item("k0"), "Content-Type: application/json")),
        )
        sent(
            "write: read-only",
            403,
            _raw(port, _post("/api/v1/writes", _item("k0"), f"X-Api-Key: {read_only}")),
        )
        sent(
            "write: not JSON type", 415, _raw(port, _post("/api/v1/writes", _item("k0"), f"X-Api-Key: {key}"))
        )
        sent("write: too large", 413, _raw(port, _post("/api/v1/writes", too_big.encode(), *json_auth)))
        sent("write: malformed", 400, _raw(port, _post("/api/v1/writes", b"{", *json_auth)))
        sent("write: invalid item", 400, _raw(port, _post("/api/v1/writes", b'{"items":[{}]}', *json_auth)))
        limited_auth = {"X-Api-Key": limited}
        asked("rate limit: first", 200, httpx.get(f"{url}/api/v1/balance/usage", headers=limited_auth))
        limited_write = _post(
            "/api/v1/writes", _item("k0"), f"X-Api-Key: {limited}", "Content-Type: application/json"
        )
        sent("write: rate limited", 429, _raw(port, limited_write))
        asked("rate limited", 429, httpx.get(f"{url}/api/v1/balance/usage", headers=limited_auth))

        # The four writes that fill the queue: answered whole, chunked, with the body later, emit.
        sent("write: accepted", 202, _raw(port, _post("/api/v1/writes", _item("k1"), *json_auth)))
        chunked = _post("/api/v1/writes", b"", *json_auth, "Transfer-Encoding: chunked")
        chunked = chunked.replace(b"Content-Length: 0\r\n", b"")
        body = _item("k2")
        sent("write: chunked", 202, _raw(port, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)))
        later = _post("/api/v1/writes", _item("k3"), *json_auth)
        sent("write: body later", 202, _raw(port, later[:-10], later[-10:], pause_s=0.2))
        emit = json.dumps({"customerId": "sniff", "delta": 1, "reason": "r", "referenceId": "k4"}).encode()
        sent("emit: accepted", 202, _raw(port, _post("/api/v1/balance/delta", emit, *json_auth)))

        def refused() -> bool:
            return _status(_raw(port, _post("/api/v1/writes", _item("k5"), *json_auth))) == 503

        wait_until(refused)  # the queue's depth is read every 0.5 s
        sent("write: queue full", 503, _raw(port, _post("/api/v1/writes", _item("k5"), *json_auth)))
        batch_body = {"deltas": [{"customerId": "c", "delta": 1, "reason": "r"}]}
        asked("batch: queue full", 503, httpx.post(batch, headers=auth, json=batch_body))

        # Refusals written by the HTTP protocol before any app sees the request.
        sent("not HTTP/1.1", 400, _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n"))
        sent("bad target", 400, _raw(port, b"GET http://a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n"))
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * (8 * 65536) + b"\r\n\r\n"
        sent("head too long", 431, _raw(port, huge))
        upgrade = _post("/api/v1/writes", _item("k6"), *json_auth, "Connection: Upgrade", "Upgrade: h2c")
        sent("upgrade with a body", 400, _raw(port, upgrade))

    assert [(what, status) for what, wanted, status, _ in answered if status != wanted] == []
    assert [(what, values) for what, _, _, values in answered if values != _NOSNIFF] == []


def test_a_multi_process_server_says_nosniff(tmp_path: Path) -> None:
    """``--workers`` starts its API processes another way: uvicorn's supervisor spawns them."""
    key = create_key(tmp_path, None)
    write = _post("/api/v1/writes", _item("w1"), f"X-Api-Key: {key}", "Content-Type: application/json")
    with ServerProcess(tmp_path, None, extra_args=["--workers", "2"]) as server:
        replies = [
            _raw(server.port, write),
            _raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            _raw(server.port, b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        ]
    assert [(_status(reply), _sniffing(reply)) for reply in replies] == [
        (202, _NOSNIFF),
        (200, _NOSNIFF),
        (400, _NOSNIFF),
    ]
