"""Service-level fixtures: every service over a real database of each backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from trueup.core.writes import parse_writes_body
from trueup.service.audit import audit_log
from trueup.service.container import Services, open_services
from trueup.service.keys import Principal
from trueup.service.settings import Settings


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=database_url))
    yield opened
    opened.close()


@pytest.fixture
def unlimited(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Services that accept the largest amount a leaf can carry (TRUEUP_MAX_ABS_AMOUNT 2^53 - 1)."""
    settings = Settings.from_env({"TRUEUP_MAX_ABS_AMOUNT": str(2**53 - 1)})
    opened = open_services(replace(settings, data_dir=tmp_path, database_url=database_url))
    yield opened
    opened.close()


def principal_for(services: Services, tenant: str = "acme") -> Principal:
    issued = services.keys.create(tenant)
    return services.keys.authenticate(issued.key)


def write(services: Services, principal: Principal, *items: dict[str, object]) -> str:
    """Submit one writes request through the real write path; return its request id."""
    body = {"items": list(items)}
    reply = asyncio.run(services.writes.writes(principal, body, repr(body).encode(), None))
    assert reply.status_code == 202, reply
    assert reply.raw is not None
    request_id: str = json.loads(reply.raw)["data"]["requestId"]
    return request_id


def seal_all(services: Services) -> None:
    while services.sealer.seal_once() is not None:
        pass


__all__ = ["parse_writes_body", "principal_for", "seal_all", "sealed_log", "write"]


def sealed_log(services: Services) -> str:
    """Thirty deltas of three customers sealed in three seals, audited; the tenant's id."""
    who = principal_for(services)
    for batch in range(3):
        write(
            services,
            who,
            *[{"key": f"k{batch}-{i}", "accountId": f"c{i % 3}", "bits": i + 1} for i in range(10)],
        )
        seal_all(services)
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert (report.leaves, report.heads) == (30, 4)  # the empty head and three seals
    return who.tenant_id
