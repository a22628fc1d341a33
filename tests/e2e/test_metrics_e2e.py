"""/metrics exposes ingest, commit, queue, seal and per-route status counts."""

from __future__ import annotations

import socket

import httpx

from tests.e2e.conftest import Running
from tests.e2e.server import wait_until


def test_metrics_cover_ingest_commit_queue_seal_and_errors(running: Running) -> None:
    ok = httpx.post(
        f"{running.url}/api/v1/writes",
        headers=running.headers,
        json={"items": [{"key": "metrics-1", "accountId": "m", "bits": 1}]},
    )
    assert ok.status_code == 202
    bad = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, content=b"{")
    assert bad.status_code == 400
    unknown = httpx.get(f"{running.url}/api/v1/balance/delta/rec_nothing", headers=running.headers)
    assert unknown.status_code == 404

    def value(text: str, name: str) -> float:
        found = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
        return float(found[0]) if found else 0.0

    def sealed() -> bool:
        # Recorded by the API process whether the sequencer is its thread or its child process.
        text = httpx.get(f"{running.url}/metrics").text
        return value(text, "trueup_seal_seconds_count") > 0 and value(text, "trueup_sealed_leaves_total") > 0

    wait_until(sealed)
    text = httpx.get(f"{running.url}/metrics").text
    for name in (
        'trueup_ingest_items_total{source="writes"}',
        "trueup_commit_seconds_bucket",
        "trueup_queue_depth",
        "trueup_queue_oldest_age_seconds",
        "trueup_tree_size",
        'trueup_http_responses_total{route="/api/v1/writes",status="4xx"}',
        'trueup_http_responses_total{route="/api/v1/writes",status="2xx"}',
        # the route's template as it reads, without the router's converter ({recordId:record_id})
        'trueup_http_responses_total{route="/api/v1/balance/delta/{recordId}",status="4xx"}',
    ):
        assert name in text, name


def _unmatched_4xx(running: Running) -> float:
    name = 'trueup_http_responses_total{route="unmatched",status="4xx"} '
    found = [line for line in httpx.get(f"{running.url}/metrics").text.splitlines() if line.startswith(name)]
    return float(found[0].split()[1]) if found else 0.0


def _raw_status_line(running: Running, sent: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(sent)
        reply = b""
        while b"\r\n" not in reply and (part := sock.recv(65536)):
            reply += part
    return reply.split(b"\r\n", 1)[0]


def test_the_refusals_the_http_protocol_writes_itself_are_counted(running: Running) -> None:
    """Bytes that are not HTTP/1.1, a head too long and a body asking to switch protocols are
    answered by the server's HTTP protocol, outside the app and its counting middleware: none
    was counted, so a client sending them by the thousand showed in no 4xx rate."""
    before = _unmatched_4xx(running)
    for sent, status in (
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNot A Header\r\n\r\n", b"400"),
        # Longer than the bound and two reads of 256 KiB (the read a head begins in and the one
        # it ends in are not counted): refused however the bytes are split into reads.
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 1_000_000 + b"\r\n\r\n", b"431"),
        (
            b"POST /api/v1/writes HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            b"400",
        ),
    ):
        assert _raw_status_line(running, sent).split()[1] == status
    assert _unmatched_4xx(running) == before + 3
