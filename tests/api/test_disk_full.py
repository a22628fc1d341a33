"""A database whose disk is full: every write is a 503 that says when to retry and stores
nothing, and once there is room again the same writes are stored as if nothing had happened.

The disk is made full on demand on each backend, on a real database: on SQLite the writer's
``PRAGMA max_page_count`` is set to the pages the file holds (SQLite then answers SQLITE_FULL,
as it does when the file system has no room), on PostgreSQL a trigger on the deltas raises
SQLSTATE 53100 ``disk_full``, what the server says when it cannot extend a file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import disk_full
from trueup.api.app import create_app
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings
from trueup.storage.errors import StorageFullError


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=database_url))
    yield opened
    opened.close()


def _items(prefix: str, count: int) -> list[dict[str, Any]]:
    # 4 KiB of metadata each: every write needs pages the database does not have yet.
    return [
        {"key": f"{prefix}-{i}", "accountId": "cust_1", "bits": i + 1, "metadata": {"pad": "x" * 4000}}
        for i in range(count)
    ]


_WRITES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("/api/v1/writes", {"items": _items("plain", 20)}, {}),
    ("/api/v1/writes", {"items": _items("keyed", 20)}, {"Idempotency-Key": "idem-1"}),
    (
        "/api/v1/balance/delta/batch",
        {
            "deltas": [
                {"customerId": "cust_1", "delta": -(i + 1), "reason": "r", "referenceId": f"batch-{i}"}
                | {"metadata": {"pad": "y" * 4000}}
                for i in range(20)
            ]
        },
        {},
    ),
]


def test_writes_to_a_full_disk_are_503s_that_store_nothing_and_succeed_once_there_is_room(
    services: Services,
) -> None:
    key = services.keys.create("acme").key

    async def send_all(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post(path, json=body, headers={"X-Api-Key": key} | headers)
            for path, body, headers in _WRITES
        ]

    ready: list[httpx.Response] = []

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://trueup") as client:
            with disk_full(services):
                refused = await send_all(client)
                ready.append(await client.get("/readyz"))
            retried = await send_all(client)
            ready.append(await client.get("/readyz"))
            return refused, retried

    refused, retried = asyncio.run(scenario())
    # Reads go on, so the server stays ready, and says that writes are failing and why.
    assert [reply.status_code for reply in ready] == [200, 200]
    assert ready[0].json()["data"]["writes"] == f"failing: {StorageFullError.reply}"
    assert ready[1].json()["data"]["writes"] == "ok"
    for reply in refused:
        assert reply.status_code == 503, reply.text
        body = reply.json()
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert body["message"] == StorageFullError.reply
        assert reply.headers["Retry-After"] == str(body["retryAfterSeconds"]) == "1"
        assert re.fullmatch(r"err_[0-9a-f]{16}", body["requestId"]), body  # as the log names it
    # Nothing was stored: the same keys (and the same Idempotency-Key) are new deltas now, not
    # repeats, and every amount counts once.
    assert [reply.status_code for reply in retried] == [202, 202, 202], [r.text for r in retried]
    assert "idempotent" not in retried[1].text
    assert retried[2].json()["data"]["totalQueued"] == 20
    assert all(result.get("idempotent") is not True for result in retried[2].json()["data"]["results"])
    assert services.storage.log.queue_stats()[0] == 60


def test_a_read_that_finds_the_disk_full_is_a_503_that_does_not_claim_nothing_was_stored(
    pg_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL a read can need the disk too (a sort that spills to temporary files) and
    fail with 53100 ``disk_full``: it is told to retry once there is room, not that nothing
    was stored, which only a write can be told."""
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=pg_url))
    try:
        key = opened.keys.create("acme").key
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # Every read of the accounts (a derive's first) now fails as a full disk does.
            conn.execute("ALTER TABLE accounts RENAME TO accounts_kept")
            conn.execute(
                """CREATE FUNCTION trueup_test_read_full() RETURNS SETOF accounts_kept
                   LANGUAGE plpgsql AS $$
                   BEGIN
                       RAISE EXCEPTION 'could not write to file "base/pgsql_tmp/pgsql_tmp1.0": '
                           'No space left on device' USING ERRCODE = 'disk_full';
                   END $$"""
            )
            conn.execute("CREATE VIEW accounts AS SELECT * FROM trueup_test_read_full()")

        async def derive() -> httpx.Response:
            transport = httpx.ASGITransport(app=create_app(opened))
            async with httpx.AsyncClient(transport=transport, base_url="http://trueup") as client:
                return await client.get("/api/v1/balance/derive/cust_1", headers={"X-Api-Key": key})

        reply = asyncio.run(derive())
    finally:
        opened.close()
    assert reply.status_code == 503, reply.text
    assert reply.json()["message"] == "the database's disk is full; retry once space has been freed"
    assert re.fullmatch(r"err_[0-9a-f]{16}", reply.json()["requestId"])  # as the log line names it
    assert reply.headers["Retry-After"] == "1"
