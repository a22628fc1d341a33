"""``/readyz`` and ``/metrics`` bound their wait for the database (a PostgreSQL server that is
down is reported within it; the storage contract shows what a read does with the bound)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from trueup.api.app import create_app
from trueup.api.routes.health import PROBE_WAIT_S
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings
from trueup.storage.engine import Tx


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))
    yield opened
    opened.close()


def test_the_probes_read_the_queue_with_the_probe_s_wait(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read a probe makes waits at most PROBE_WAIT_S for its connection, and a probe makes
    as few as it can: /readyz one (the queue and the roles), /metrics three (and the head, and
    the webhook backlog)."""
    asked: list[float | None] = []
    real = services.storage.engine.read

    def read(wait_s: float | None = None) -> AbstractContextManager[Tx]:
        asked.append(wait_s)
        return real(wait_s)

    monkeypatch.setattr(services.storage.engine, "read", read)

    async def probe() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://trueup") as client:
            return [(await client.get(path)).status_code for path in ("/readyz", "/metrics")]

    assert asyncio.run(probe()) == [200, 200]
    assert asked == [PROBE_WAIT_S] * 4
