"""``/readyz`` and ``/metrics`` bound their wait for the database (a PostgreSQL server that is
down is reported within it; the storage contract shows what a read does with the bound)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from trueup.api.app import create_app
from trueup.api.routes.health import PROBE_WAIT_S
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db"))
    yield opened
    opened.close()


def test_the_probes_read_the_queue_with_the_probe_s_wait(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[float | None] = []
    real = services.storage.log.queue_stats

    def queue_stats(wait_s: float | None = None) -> tuple[int, str | None]:
        asked.append(wait_s)
        return real(wait_s)

    monkeypatch.setattr(services.storage.log, "queue_stats", queue_stats)
    real_head = services.storage.log.head

    def head(wait_s: float | None = None) -> object:
        asked.append(wait_s)
        return real_head(wait_s)

    monkeypatch.setattr(services.storage.log, "head", head)
    real_held = services.storage.engine.leader_held

    def leader_held(name: str, wait_s: float | None = None) -> bool | None:
        asked.append(wait_s)
        return real_held(name, wait_s)

    monkeypatch.setattr(services.storage.engine, "leader_held", leader_held)

    async def probe() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://trueup") as client:
            return [(await client.get(path)).status_code for path in ("/readyz", "/metrics")]

    assert asyncio.run(probe()) == [200, 200]
    # /readyz's queue and the two roles; /metrics' queue, the two roles and the head
    assert asked == [PROBE_WAIT_S] * 7
