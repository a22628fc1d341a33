"""The webhook tables' contract, on SQLite and PostgreSQL: the outbox written inside the seal
and the lock, the fan-out, and the delivery state machine the dispatcher drives."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import trueup.storage.seal as seal_module
from tests.webhooks.conftest import deliveries, events, principal_for, seal_all, write
from trueup.api.routes.webhooks import endpoint_json
from trueup.core.ids import anchor_id
from trueup.core.timestamps import format_canonical, format_wire
from trueup.service.container import Services
from trueup.service.keys import Principal
from trueup.service.metrics import REGISTRY, refresh_database_gauges
from trueup.storage.outbox import NewEvent, active_subscriptions, enqueue
from trueup.storage.webhooks import AttemptOutcome

HOOK = "http://127.0.0.1:9/hook"  # never contacted: no dispatcher runs in these tests


def endpoint(services: Services, principal: Principal, **body: Any) -> str:
    issued = services.webhooks.create(principal, {"url": HOOK, **body})
    return issued.endpoint.id


def item(key: str, account: str = "cust-1", bits: int = 100, **extra: Any) -> dict[str, Any]:
    return {"key": key, "accountId": account, "bits": bits, **extra}


def test_a_tenant_without_endpoints_gets_no_event_rows(services: Services) -> None:
    principal = principal_for(services)
    write(services, principal, item("a"), item("b"))
    seal_all(services)
    assert events(services) == []
    assert deliveries(services) == []


def test_a_seal_writes_delta_verified_per_delta_and_verification_completed_per_request(
    services: Services,
) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    request_id = write(
        services,
        principal,
        item("k1", bits=250, reason="Subscription"),
        item("k2", account="cust-2", bits=-40),
    )
    outcome = services.sealer.seal_once()
    assert outcome is not None and outcome.events == 3

    verified = events(services, "delta.verified")
    assert [e["data"]["key"] for e in verified] == ["k1", "k2"]
    first = verified[0]
    assert set(first) == {"id", "event", "timestamp", "data"}
    assert first["id"].startswith("evt_") and first["event"] == "delta.verified"
    head = services.storage.log.head()
    assert head is not None
    assert first["data"] == {
        "recordId": f"rec_{request_id.removeprefix('req_')}_0",
        "requestId": request_id,
        "key": "k1",
        "referenceId": "k1",
        "customerId": "cust-1",
        "delta": 250,
        "reason": "Subscription",
        "occurredAt": first["data"]["occurredAt"],
        "anchorId": anchor_id(head.size - 2),
        "leafIndex": head.size - 2,
        "treeSize": head.size,
        "rootHash": "0x" + head.root.hex(),
        "verifiedAt": first["timestamp"],
    }

    (completed,) = events(services, "verification.completed")
    data = completed["data"]
    assert data["requestId"] == request_id and data["itemCount"] == 2 and data["status"] == "verified"
    assert data["itemsRoot"] == "0x" + head.root.hex() == data["treeHead"]["rootHash"]
    assert data["treeHead"]["treeSize"] == head.size
    assert [(i["index"], i["key"], i["accountId"], i["anchorId"], i["status"]) for i in data["items"]] == [
        (0, "k1", "cust-1", anchor_id(head.size - 2), "verified"),
        (1, "k2", "cust-2", anchor_id(head.size - 1), "verified"),
    ]
    assert {(d[1], d[2], d[3]) for d in deliveries(services)} == {(hook, "pending", 0)}
    assert len(deliveries(services)) == 3


def test_a_request_sealed_over_two_seals_completes_once_with_every_anchor(services: Services) -> None:
    principal = principal_for(services)
    endpoint(services, principal, events=["verification.completed"])
    services.sealer._batch_size = 2  # split one request over two seals
    request_id = write(services, principal, item("s1"), item("s2"), item("s3"))
    first = services.sealer.seal_once()
    assert first is not None and first.events == 0
    assert events(services) == []
    seal_all(services)
    (completed,) = events(services, "verification.completed")
    anchors = [i["anchorId"] for i in completed["data"]["items"]]
    assert completed["data"]["requestId"] == request_id
    assert all(a is not None for a in anchors) and len(set(anchors)) == 3
    assert completed["data"]["treeHead"]["treeSize"] == services.storage.log.head().size  # type: ignore[union-attr]


def test_duplicates_are_listed_with_their_originals_anchor(services: Services) -> None:
    principal = principal_for(services)
    write(services, principal, item("orig"))
    seal_all(services)
    endpoint(services, principal, events=["verification.completed"])
    write(services, principal, item("orig"), item("fresh"))
    seal_all(services)
    (completed,) = events(services, "verification.completed")
    items = completed["data"]["items"]
    assert [(i["key"], i["status"]) for i in items] == [("orig", "duplicate"), ("fresh", "verified")]
    assert items[0]["anchorId"] == "a_0" and completed["data"]["status"] == "verified"


def test_endpoints_get_only_the_event_types_they_subscribe_to(services: Services) -> None:
    principal = principal_for(services)
    everything = endpoint(services, principal)
    completions = endpoint(services, principal, events=["verification.completed"])
    write(services, principal, item("f1"), item("f2"))
    seal_all(services)
    by_endpoint: dict[str, int] = {}
    for _, endpoint_id, _, _ in deliveries(services):
        by_endpoint[endpoint_id] = by_endpoint.get(endpoint_id, 0) + 1
    assert by_endpoint == {everything: 3, completions: 1}


def test_no_event_is_written_for_types_no_endpoint_takes(services: Services) -> None:
    principal = principal_for(services)
    endpoint(services, principal, events=["checkpoint.verified"])
    write(services, principal, item("quiet"))
    seal_all(services)
    assert events(services) == []


def test_another_tenants_endpoints_get_nothing(services: Services) -> None:
    acme, other = principal_for(services, "acme"), principal_for(services, "other")
    endpoint(services, other)
    write(services, acme, item("x"))
    seal_all(services)
    assert events(services) == []


def test_a_delta_refused_by_a_period_lock_writes_delta_failed(services: Services) -> None:
    principal = principal_for(services)
    write(services, principal, item("before", occurredAt="2026-01-10T00:00:00Z"))
    seal_all(services)
    endpoint(services, principal)
    request_id = write(services, principal, item("late", bits=-5, occurredAt="2026-01-20T00:00:00Z"))
    services.balances.lock_period(principal, {"customerId": "cust-1", "period": "2026-01"})
    seal_all(services)
    (failed,) = events(services, "delta.failed")
    assert failed["data"]["key"] == "late" and failed["data"]["delta"] == -5
    assert "locked by checkpoint chk_" in failed["data"]["error"]
    assert failed["data"]["failedAt"] == failed["timestamp"]
    (completed,) = events(services, "verification.completed")
    assert completed["data"]["requestId"] == request_id and completed["data"]["status"] == "failed"
    assert completed["data"]["items"][0]["anchorId"] is None
    assert completed["data"]["verifiedAt"] is None and completed["data"]["treeHead"] is None


def test_locking_a_period_writes_checkpoint_verified_once(services: Services) -> None:
    principal = principal_for(services)
    write(services, principal, item("p1", bits=70, occurredAt="2026-02-03T00:00:00Z"))
    seal_all(services)
    endpoint(services, principal)
    record, created = services.balances.lock_period(principal, {"customerId": "cust-1", "period": "2026-02"})
    assert created
    services.balances.lock_period(principal, {"customerId": "cust-1", "period": "2026-02"})
    (event,) = events(services, "checkpoint.verified")
    assert event["data"]["checkpointId"] == record.id
    assert event["data"]["proofRoot"] == "0x" + record.proof_root.hex()
    assert (event["data"]["period"], event["data"]["closingBalance"], event["data"]["deltasCount"]) == (
        "2026-02",
        70,
        1,
    )


def test_events_roll_back_with_a_seal_that_fails(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    principal = principal_for(services)
    endpoint(services, principal)
    write(services, principal, item("atomic"))
    real = seal_module.enqueue_seal_events

    def enqueue_then_crash(*args: Any) -> int:
        real(*args)
        raise RuntimeError("crash after the outbox rows were written")

    monkeypatch.setattr(seal_module, "enqueue_seal_events", enqueue_then_crash)
    with pytest.raises(RuntimeError, match="crash after"):
        services.sealer.seal_once()
    assert events(services) == [] and deliveries(services) == []
    monkeypatch.setattr(seal_module, "enqueue_seal_events", real)
    seal_all(services)
    assert len(events(services)) == 2


def _outcome(
    event_id: str,
    endpoint_id: str,
    attempt: int,
    *,
    delivered: bool,
    next_at: str | None,
    status: int | None = 503,
) -> AttemptOutcome:
    now = format_canonical(datetime.now(UTC))
    return AttemptOutcome(
        event_id,
        endpoint_id,
        attempt,
        now,
        now,
        3,
        200 if delivered else status,
        None if delivered else "HTTP 503",
        delivered,
        next_at,
    )


def test_a_delivery_moves_from_pending_through_retries_to_delivered_or_failed(services: Services) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["verification.completed"])
    write(services, principal, item("d1"))
    write(services, principal, item("d2"))
    seal_all(services)
    store = services.storage.webhooks
    now = datetime.now(UTC)
    due = store.due(format_canonical(now), 10)
    assert len(due) == 2 and {d.endpoint_id for d in due} == {hook}
    assert all(d.attempts == 0 and d.event_type == "verification.completed" for d in due)
    assert store.backlog() == (2, min(d.due_at for d in due))
    refresh_database_gauges(services.storage)
    assert REGISTRY.get_sample_value("trueup_webhook_pending") == 2
    assert REGISTRY.get_sample_value("trueup_webhook_oldest_due_age_seconds") >= 0
    later = format_canonical(now + timedelta(hours=1))
    store.record_attempts(
        [
            _outcome(due[0].event_id, hook, 1, delivered=False, next_at=later),
            _outcome(due[1].event_id, hook, 1, delivered=False, next_at=None),
        ]
    )
    assert store.due(format_canonical(now), 10) == []
    assert store.next_due() == later
    assert store.backlog() == (1, later)  # a retry still to come is pending, not yet due
    refresh_database_gauges(services.storage)
    assert REGISTRY.get_sample_value("trueup_webhook_pending") == 1
    assert REGISTRY.get_sample_value("trueup_webhook_oldest_due_age_seconds") == 0
    store.record_attempts([_outcome(due[0].event_id, hook, 2, delivered=True, next_at=None)])
    assert store.backlog() == (0, None)
    listed, total = store.deliveries(principal.tenant_id, None, 10, 0)
    state = {d.event_id: (d.status, d.attempts, d.last_status_code) for d in listed}
    assert total == 2
    assert state == {due[0].event_id: ("delivered", 2, 200), due[1].event_id: ("failed", 1, 503)}
    failed, _ = store.deliveries(principal.tenant_id, "failed", 10, 0)
    assert [d.event_id for d in failed] == [due[1].event_id]
    detail = store.event(principal.tenant_id, due[0].event_id)
    assert detail is not None
    assert [(a.attempt, a.status_code) for a in detail[3]] == [(1, 503), (2, 200)]


def test_outcomes_recorded_together_move_their_deliveries_on_as_one_by_one(services: Services) -> None:
    """A round's outcomes are recorded in one statement; two of one delivery (two dispatchers'
    sends, say) still count as if recorded one after the other."""
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["delta.verified"])
    write(services, principal, item("t1"), item("t2"), item("t3"))
    seal_all(services)
    store = services.storage.webhooks
    now = datetime.now(UTC)
    first, second, third = store.due(format_canonical(now), 10)
    later = format_canonical(now + timedelta(hours=1))
    retried = _outcome(first.event_id, hook, 1, delivered=False, next_at=later)
    outcomes = [
        replace(retried, due_at=first.due_at),
        _outcome(second.event_id, hook, 1, delivered=True, next_at=None),
        replace(_outcome(third.event_id, hook, 1, delivered=False, next_at=later), due_at="1999"),  # stale
        _outcome(first.event_id, hook, 2, delivered=True, next_at=None),  # after its retry was set
    ]
    applied = store.record_attempts(outcomes)
    assert [(o.event_id, o.delivered) for o in applied] == [
        (first.event_id, False),
        (second.event_id, True),
        (first.event_id, True),
    ]
    listed, _ = store.deliveries(principal.tenant_id, None, 10, 0)
    state = {d.event_id: (d.status, d.attempts) for d in listed}
    assert state == {
        first.event_id: ("delivered", 2),
        second.event_id: ("delivered", 1),
        third.event_id: ("pending", 1),  # counted, not moved on: its next try was set elsewhere
    }
    assert store.due(format_canonical(now), 10) == [replace(third, attempts=1)]


def test_the_dispatchers_looks_for_due_deliveries_read_the_due_index_in_order(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round of the dispatcher reads the first few due deliveries: through the index of
    pending ones, in order, never by joining and sorting a whole backlog (on PostgreSQL, with
    no statistics of the endpoints, the planner started from the endpoint and sorted all of its
    pending deliveries: 100 ms a round with 30,000)."""
    principal = principal_for(services)
    hook = endpoint(services, principal)  # every event type: one delta.verified per delta
    write(services, principal, *(item(f"due-{i}", account=f"c{i % 5}") for i in range(40)))
    seal_all(services)
    # A backlog behind them, as a receiver that fell behind leaves (the plan above changed
    # between 1,500 and 5,000 pending): events and their deliveries, due a minute later.
    later = format_canonical(datetime.now(UTC) + timedelta(minutes=1))
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) "
    with services.storage.engine.write() as tx:
        tx.execute(
            numbers
            + """INSERT INTO webhook_events (id, tenant_id, event_type, payload, created_at)
                 SELECT 'evt_backlog_' || i, ?, 'delta.verified', '{}', ? FROM n""",
            (principal.tenant_id, later),
        )
        tx.execute(
            numbers
            + """INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, status, attempts,
                     round_attempts, next_attempt_at, created_at)
                 SELECT 'evt_backlog_' || i, ?, ?, 'pending', 0, 0, ?, ? FROM n""",
            (hook, principal.tenant_id, later, later),
        )
    store = services.storage.webhooks
    postgres = services.storage.engine.dialect.name == "postgresql"
    with services.storage.engine.read() as tx:
        kind = type(tx)
    ordered = kind.execute_in_index_order
    plans: list[str] = []

    def spy(self: Any, sql: str, params: Any = ()) -> list[tuple[object, ...]]:
        explained = ordered(self, ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql, params)
        plans.append(" ".join(str(row[0] if postgres else row[3]) for row in explained))
        return ordered(self, sql, params)

    monkeypatch.setattr(kind, "execute_in_index_order", spy)
    due = store.due(format_canonical(datetime.now(UTC)), 16)
    assert len(due) == 16 and {d.endpoint_id for d in due} == {hook}
    assert store.next_due() == due[0].due_at
    assert len(plans) == 2
    for plan in plans:
        index = "Index Scan using webhook_deliveries_due" if postgres else "INDEX webhook_deliveries_due"
        assert index in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_two_dispatchers_sending_the_same_attempt_log_both_sends(services: Services) -> None:
    """A dispatcher that lost its role mid-send and the one that took over may both send the
    same delivery as its first attempt: the log keeps both, numbered as they are recorded."""
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["verification.completed"])
    write(services, principal, item("twice"))
    seal_all(services)
    store = services.storage.webhooks
    (due,) = store.due(format_canonical(datetime.now(UTC)), 10)
    store.record_attempts([_outcome(due.event_id, hook, 1, delivered=True, next_at=None)])  # new leader
    store.record_attempts([_outcome(due.event_id, hook, 1, delivered=True, next_at=None)])  # old one
    detail = store.event(principal.tenant_id, due.event_id)
    assert detail is not None
    assert [(a.attempt, a.status_code) for a in detail[3]] == [(1, 200), (2, 200)]


def test_retry_requeues_an_event_now_and_other_tenants_ids_are_not_found(services: Services) -> None:
    acme, other = principal_for(services, "acme"), principal_for(services, "other")
    hook = endpoint(services, acme, events=["verification.completed"])
    write(services, acme, item("r1"))
    seal_all(services)
    store = services.storage.webhooks
    (due,) = store.due(format_canonical(datetime.now(UTC)), 10)
    store.record_attempts([_outcome(due.event_id, hook, 1, delivered=False, next_at=None)])
    assert store.due(format_canonical(datetime.now(UTC)), 10) == []
    assert store.retry_event(other.tenant_id, due.event_id, format_canonical(datetime.now(UTC))) is None
    assert store.retry_event(acme.tenant_id, "evt_unknown", format_canonical(datetime.now(UTC))) is None
    assert store.retry_event(acme.tenant_id, due.event_id, format_canonical(datetime.now(UTC))) == 1
    (again,) = store.due(format_canonical(datetime.now(UTC) + timedelta(seconds=1)), 10)
    assert (again.event_id, again.attempts, again.round_attempts) == (due.event_id, 1, 0)
    assert store.event(other.tenant_id, due.event_id) is None
    assert store.deliveries(other.tenant_id, None, 10, 0) == ([], 0)


def test_deleting_an_endpoint_fails_its_pending_deliveries_and_stops_new_ones(services: Services) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    write(services, principal, item("g1"))
    seal_all(services)
    services.webhooks.delete(principal, hook)
    assert {(status, attempts) for _, _, status, attempts in deliveries(services)} == {("failed", 0)}
    assert services.storage.webhooks.due(format_canonical(datetime.now(UTC)), 10) == []
    before = len(events(services))
    write(services, principal, item("g2"))
    seal_all(services)
    assert len(events(services)) == before


def test_a_rotated_secret_signs_beside_the_new_one_for_24_hours(services: Services) -> None:
    principal = principal_for(services)
    issued = services.webhooks.create(principal, {"url": HOOK})
    rotated = services.webhooks.rotate(principal, issued.endpoint.id)
    record = rotated.endpoint
    assert record.secret == rotated.secret != issued.secret
    assert record.previous_secret == issued.secret
    assert record.rotated_at is not None and record.previous_expires_at is not None
    start = datetime.strptime(record.rotated_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    within = format_canonical(start + timedelta(hours=23, minutes=59))
    after = format_canonical(start + timedelta(hours=24, seconds=1))
    assert record.signing_secrets(within) == (rotated.secret, issued.secret)
    assert record.signing_secrets(after) == (rotated.secret,)
    assert record.previous_signs_until(within) == record.previous_expires_at
    assert record.previous_signs_until(after) is None
    # The API shows when the previous secret stops signing, and null once it has.
    assert endpoint_json(record)["previousSecretExpiresAt"] == format_wire(record.previous_expires_at)
    past = format_canonical(datetime.now(UTC) - timedelta(seconds=1))
    assert endpoint_json(replace(record, previous_expires_at=past))["previousSecretExpiresAt"] is None


def test_a_delivered_send_marks_the_delivery_delivered_after_another_sends_failure(
    services: Services,
) -> None:
    """Two dispatchers (one that lost its role mid-send, one that took it over) sent the same
    delivery, claimed when it was due at one time: the first to be recorded failed and set
    the next try, the second reached the endpoint. The delivery is delivered, not sent again."""
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["verification.completed"])
    write(services, principal, item("both"))
    seal_all(services)
    store = services.storage.webhooks
    (due,) = store.due(format_canonical(datetime.now(UTC)), 10)
    later = format_canonical(datetime.now(UTC) + timedelta(hours=1))
    failed = replace(_outcome(due.event_id, hook, 1, delivered=False, next_at=later), due_at=due.due_at)
    reached = replace(_outcome(due.event_id, hook, 1, delivered=True, next_at=None), due_at=due.due_at)
    assert store.record_attempts([failed]) == [failed]
    assert store.record_attempts([reached]) == [reached]
    listed, _ = store.deliveries(principal.tenant_id, None, 10, 0)
    assert [(d.status, d.attempts, d.last_status_code) for d in listed] == [("delivered", 2, 200)]
    assert store.next_due() is None


def test_an_endpoint_deleted_while_a_seal_writes_its_deliveries_fails_them_too(services: Services) -> None:
    """A seal reads the tenant's endpoints, the endpoint is deleted, the seal writes and commits
    its deliveries: they must fail with the endpoint, not stay pending for good (on PostgreSQL
    the two transactions ran side by side, and the delete's update never saw the seal's rows)."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    deleting = threading.Thread(target=services.webhooks.delete, args=(principal, hook))
    with services.storage.engine.write() as tx:
        subscriptions = active_subscriptions(tx, [principal.tenant_id])
        deleting.start()
        deleting.join(0.5)  # it waits for this transaction, or has deleted before its rows exist
        now = format_canonical(datetime.now(UTC))
        enqueue(tx, [NewEvent(principal.tenant_id, "delta.verified", {"n": 1}, now)], subscriptions)
    deleting.join(30)
    assert not deleting.is_alive()
    assert [status for _, _, status, _ in deliveries(services)] == ["failed"]


def test_deleting_an_endpoint_while_the_dispatcher_records_its_attempts_is_no_deadlock(
    services: Services,
) -> None:
    """The dispatcher's recording updates deliveries in the order of the outcomes it has, a
    delete in the order it finds them: on PostgreSQL the two ran into each other ("deadlock
    detected", the DELETE a 503). Here the recording has updated the second delivery and is
    about to update the first when the delete starts."""
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["delta.verified"])
    write(services, principal, item("a"), item("b"))
    seal_all(services)
    (first, _, _, _), (second, _, _, _) = deliveries(services)
    engine = services.storage.engine
    deleted: list[object] = []

    def delete() -> None:
        try:
            deleted.append(services.webhooks.delete(principal, hook))
        except Exception as exc:
            deleted.append(exc)

    deleting = threading.Thread(target=delete)
    touch = "UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE event_id = ? AND status = 'pending'"
    with engine.write() as tx:
        engine.serialize(tx, "webhook-attempts")  # as record_attempts takes it
        tx.execute(touch, (second,))
        deleting.start()
        deleting.join(0.5)  # the delete waits for this transaction, one way or another
        tx.execute(touch, (first,))
    deleting.join(30)
    assert not deleting.is_alive()
    assert len(deleted) == 1 and not isinstance(deleted[0], Exception), deleted
    assert [status for _, _, status, _ in deliveries(services)] == ["failed", "failed"]


def test_a_delivery_left_pending_to_a_deleted_endpoint_is_never_due(services: Services) -> None:
    """Such rows were left by an endpoint deleted while a seal wrote its deliveries, before
    that was fixed: they are never sent, and must not keep the idle dispatcher looking for work
    (it woke every 20 ms instead of every 200, doubling an idle server's transactions)."""
    principal = principal_for(services)
    hook = endpoint(services, principal, events=["delta.verified"])
    write(services, principal, item("a"))
    seal_all(services)
    with services.storage.engine.write() as tx:  # as such a delete left it: the endpoint only
        tx.execute(
            "UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", ("2026-01-01T00:00:00.000000Z", hook)
        )
    assert [status for _, _, status, _ in deliveries(services)] == ["pending"]
    assert services.storage.webhooks.due("9999-12-31T00:00:00.000000Z", 10) == []
    assert services.storage.webhooks.next_due() is None
