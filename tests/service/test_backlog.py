"""Backpressure: writes are refused (503, Retry-After) while the log is too far behind."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.core.errors import UnavailableError
from trueup.service.backlog import QueueGuard
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings


def test_the_guard_counts_the_queue_no_further_than_its_limit(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(7)])
    assert services.storage.log.queued_at_least(5) == 5
    assert services.storage.log.queued_at_least(100) == 7
    seal_all(services)
    assert services.storage.log.queued_at_least(100) == 0


def test_writes_are_refused_while_the_queue_is_full(database_url: str, tmp_path: Path) -> None:
    base = replace(Settings(), data_dir=tmp_path / "data", database_url=database_url)
    filler = open_services(replace(base, max_queue_depth=0))
    try:
        who = principal_for(filler)
        write(filler, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(5)])
    finally:
        filler.close()
    services = open_services(replace(base, max_queue_depth=5))
    try:
        body = {"items": [{"key": "one-more", "accountId": "c1", "bits": 1}]}
        with pytest.raises(UnavailableError, match="at least 5 deltas behind") as refused:
            asyncio.run(services.writes.writes(who, body, b"{}", None))
        assert refused.value.retry_after_seconds is not None
        assert services.storage.log.queued_at_least(100) == 5, "nothing of the refused request was stored"
    finally:
        services.close()


def test_the_guard_reads_the_depth_again_after_its_interval(services: Services) -> None:
    who = principal_for(services)
    now = [0.0]
    guard = QueueGuard(services.storage.log, 3, refresh_s=0.5, clock=lambda: now[0])
    asyncio.run(guard.check())  # reads 0
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    asyncio.run(guard.check())  # within the interval: still 0, no read
    now[0] = 0.6
    with pytest.raises(UnavailableError):
        asyncio.run(guard.check())
    seal_all(services)
    now[0] = 1.2
    asyncio.run(guard.check())


def test_a_limit_of_zero_turns_the_guard_off(services: Services) -> None:
    guard = QueueGuard(services.storage.log, 0)
    asyncio.run(guard.check())
