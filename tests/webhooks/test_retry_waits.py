"""A retry whose originals are still queued (every item a duplicate, nothing of its own to
seal) completes when they are settled: its verification.completed is sent then, once, with
the status GET /api/v1/writes/{requestId} shows."""

from __future__ import annotations

from typing import Any

from tests.webhooks.conftest import events, principal_for, seal_all, write
from tests.webhooks.test_storage_contract import endpoint, item
from trueup.service.container import Services


def _completed(services: Services) -> dict[str, dict[str, Any]]:
    return {e["data"]["requestId"]: e["data"] for e in events(services, "verification.completed")}


def test_a_retry_of_queued_deltas_completes_with_its_originals(services: Services) -> None:
    principal = principal_for(services)
    endpoint(services, principal, events=["verification.completed"])
    original = write(services, principal, item("r1"), item("r2", account="cust-2"))
    retry = write(services, principal, item("r1"), item("r2", account="cust-2"))
    assert services.views.request_status(principal, retry, 10, 0).status == "queued"
    assert _completed(services) == {}

    seal_all(services)
    completed = _completed(services)
    assert set(completed) == {original, retry}
    repeated = completed[retry]
    assert repeated["status"] == "verified" and repeated["itemCount"] == 2
    assert [(i["key"], i["status"]) for i in repeated["items"]] == [("r1", "duplicate"), ("r2", "duplicate")]
    assert [i["anchorId"] for i in repeated["items"]] == [i["anchorId"] for i in completed[original]["items"]]
    assert repeated["treeHead"] == completed[original]["treeHead"]
    shown = services.views.request_status(principal, retry, 10, 0)
    assert shown.status == "verified"
    assert shown.request.verified_at is not None
    assert repeated["verifiedAt"] == completed[original]["verifiedAt"]

    seal_all(services)  # nothing more: each request completes once
    assert len(events(services, "verification.completed")) == 2


def test_a_retry_of_deltas_refused_at_sealing_completes_as_failed(services: Services) -> None:
    principal = principal_for(services)
    write(services, principal, item("before", occurredAt="2026-01-10T00:00:00Z"))
    seal_all(services)
    endpoint(services, principal, events=["verification.completed"])
    late = item("late", bits=-5, occurredAt="2026-01-20T00:00:00Z")
    original = write(services, principal, late)
    retry = write(services, principal, late)
    services.balances.lock_period(principal, {"customerId": "cust-1", "period": "2026-01"})
    seal_all(services)
    completed = _completed(services)
    assert completed[original]["status"] == completed[retry]["status"] == "failed"
    assert services.views.request_status(principal, retry, 10, 0).status == "failed"
    again = write(services, principal, late)  # its original already settled: complete at once
    assert _completed(services)[again]["status"] == "failed"
    assert services.views.request_status(principal, again, 10, 0).status == "failed"


def test_a_retry_no_seal_saw_waiting_is_completed_when_the_queue_is_empty(services: Services) -> None:
    """On PostgreSQL a retry can commit just after the seal that settled its originals looked
    for waiting requests. Here its wait is hidden from that seal, then put back."""
    principal = principal_for(services)
    endpoint(services, principal, events=["verification.completed"])
    original = write(services, principal, item("w1"))
    retry = write(services, principal, item("w1"))
    with services.storage.engine.write() as tx:
        tx.execute("DELETE FROM write_waits WHERE request_id = ?", (retry,))
    seal_all(services)
    assert set(_completed(services)) == {original}
    with services.storage.engine.write() as tx:
        tx.execute(
            "INSERT INTO write_waits (request_id, tenant_id) VALUES (?, ?)", (retry, principal.tenant_id)
        )

    outcome = services.sealer.seal_once()  # nothing queued: it looks for waiting requests
    assert outcome is not None
    assert outcome.completed_requests == (retry,) and outcome.sealed_count == 0 and outcome.events == 1
    assert set(_completed(services)) == {original, retry}
    assert services.sealer.seal_once() is None
    assert services.views.request_status(principal, retry, 10, 0).status == "verified"
