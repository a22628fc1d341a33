"""An ``Idempotency-Key`` whose first request is still being committed: the same request again
is told to retry (202 ``IDEMPOTENCY_PENDING``), and another request under it (another body, or
the same body sent to another route) is ``409 IDEMPOTENCY_MISMATCH`` at once, as it is once the
first reply is stored. The first request is held in its commit by another connection holding
SQLite's write lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import principal_for
from trueup.core.errors import IdempotencyMismatchError
from trueup.service.container import open_services
from trueup.service.settings import Settings

# Valid for both routes: /api/v1/writes reads items, /api/v1/balance/delta the rest.
DOCUMENT = {
    "items": [{"key": "k1", "accountId": "a", "bits": 1}],
    "customerId": "a",
    "delta": 1,
    "reason": "r",
}
BODY = json.dumps(DOCUMENT).encode()


def test_a_key_in_flight_answers_pending_to_its_request_and_mismatch_to_any_other(tmp_path: Path) -> None:
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=None))
    who = principal_for(services)
    writes = services.writes

    async def scenario() -> None:
        blocker = sqlite3.connect(tmp_path / "trueup.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the first request's commit waits for this
        first = asyncio.create_task(writes.writes(who, DOCUMENT, BODY, "K"))
        try:
            while not writes._in_flight:  # the first request is past its checks, committing
                await asyncio.sleep(0.001)
            same = await writes.writes(who, DOCUMENT, BODY, "K")
            assert (same.status_code, same.payload["code"]) == (202, "IDEMPOTENCY_PENDING")
            with pytest.raises(IdempotencyMismatchError, match="in use by a different request"):
                await writes.emit(who, DOCUMENT, BODY, "K")  # the same body, another route
            with pytest.raises(IdempotencyMismatchError, match="in use by a different request"):
                await writes.writes(who, DOCUMENT, BODY + b" ", "K")  # another body
            assert not first.done()
        finally:
            blocker.rollback()
            blocker.close()
        assert (await first).status_code == 202
        # Once stored, the same answers come from the stored reply.
        assert (await writes.writes(who, DOCUMENT, BODY, "K")).status_code == 202
        with pytest.raises(IdempotencyMismatchError, match="already used with a different request"):
            await writes.emit(who, DOCUMENT, BODY, "K")

    try:
        asyncio.run(scenario())
    finally:
        services.close()
