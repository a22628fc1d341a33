"""Webhook fixtures: every service over a real database of each backend, with a policy that
lets deliveries go to a receiver on 127.0.0.1 and retries that come quickly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings

LOOPBACK_SETTINGS = {
    "webhook_allow_http": True,
    "webhook_allow_private": True,
    "webhook_retry_base_s": 0.01,
    "webhook_timeout_s": 5.0,
}


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = replace(Settings(), data_dir=tmp_path, database_url=database_url, **LOOPBACK_SETTINGS)
    opened = open_services(settings)
    yield opened
    opened.close()


def events(services: Services, event_type: str | None = None) -> list[dict[str, Any]]:
    """Every stored event envelope (optionally of one type), in the order written (the order of
    their first deliveries)."""
    with services.storage.engine.read() as tx:
        rows = tx.execute(
            """SELECT e.event_type, e.payload FROM webhook_events e ORDER BY
                   (SELECT MIN(d.seq) FROM webhook_deliveries d WHERE d.event_id = e.id)"""
        )
    return [json.loads(str(p)) for t, p in rows if event_type is None or t == event_type]


def deliveries(services: Services) -> list[tuple[str, str, str, int]]:
    """``(event id, endpoint id, status, attempts)`` of every delivery."""
    with services.storage.engine.read() as tx:
        rows = tx.execute(
            "SELECT event_id, endpoint_id, status, attempts FROM webhook_deliveries ORDER BY seq"
        )
    return [(str(e), str(p), str(s), int(a)) for e, p, s, a in rows]


__all__ = ["deliveries", "events", "principal_for", "seal_all", "write"]
