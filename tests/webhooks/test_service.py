"""Managing endpoints as a tenant: validation naming the field, secrets shown once, limits,
read-only keys, and tenant scoping (another tenant's ids are 404s)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from tests.webhooks.conftest import principal_for
from trueup.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from trueup.service.container import Services
from trueup.service.keys import Principal
from trueup.service.webhooks import MAX_ENDPOINTS, WebhookService

HOOK = "http://127.0.0.1:9/hook"


def test_creating_an_endpoint_returns_a_whsec_secret_once(services: Services) -> None:
    principal = principal_for(services)
    issued = services.webhooks.create(principal, {"url": HOOK, "description": "billing"})
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", issued.secret)
    assert issued.endpoint.id.startswith("wh_") and issued.endpoint.description == "billing"
    assert issued.endpoint.events == ()
    (listed,) = services.webhooks.endpoints(principal)
    assert listed.id == issued.endpoint.id
    other = services.webhooks.create(principal, {"url": HOOK})
    assert other.secret != issued.secret


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: must be a JSON object"),
        ({}, "url: is required"),
        ({"url": "ftp://x.example/"}, "url: must be an https or http URL"),
        ({"url": HOOK, "description": 5}, "description: must be a string"),
        ({"url": HOOK, "description": "d" * 501}, "description: must be at most 500 characters"),
        ({"url": HOOK, "events": "delta.verified"}, "events: must be an array"),
        ({"url": HOOK, "events": []}, "events: must name at least one event type"),
        ({"url": HOOK, "events": ["delta.verified", "delta.lost"]}, "events[1]: must be one of"),
        # Ignored, a misspelt "events" would subscribe the endpoint to every type.
        ({"url": HOOK, "event": ["delta.failed"]}, "event: unknown field; did you mean events?"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(services: Services, body: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        services.webhooks.create(principal_for(services), body)
    assert caught.value.message.startswith(message)


def test_the_default_policy_refuses_http_and_loopback(services: Services) -> None:
    strict = WebhookService(
        services.storage, replace(services.settings, webhook_allow_http=False, webhook_allow_private=False)
    )
    principal = principal_for(services)
    with pytest.raises(ValidationError, match="url: must be an https URL, got http scheme"):
        strict.create(principal, {"url": HOOK})
    loopback = r'url: host "127\.0\.0\.1" resolves to 127\.0\.0\.1, a loopback'
    with pytest.raises(ValidationError, match=loopback):
        strict.create(principal, {"url": "https://127.0.0.1/hook"})
    assert services.webhooks.endpoints(principal) == []


def test_events_star_means_every_event_type(services: Services) -> None:
    issued = services.webhooks.create(principal_for(services), {"url": HOOK, "events": ["*"]})
    assert issued.endpoint.events == ()
    both = services.webhooks.create(
        principal_for(services), {"url": HOOK, "events": ["checkpoint.verified", "*"]}
    )
    assert both.endpoint.events == ()
    for events in (["*", "bogus"], ["bogus", "*"]):  # every entry is checked, "*" among them or not
        with pytest.raises(ValidationError, match=r"^events\[\d\]: must be one of .* got \"bogus\"$"):
            services.webhooks.create(principal_for(services), {"url": HOOK, "events": events})


def test_a_tenant_may_have_at_most_twenty_endpoints(services: Services) -> None:
    principal = principal_for(services)
    for _ in range(MAX_ENDPOINTS):
        services.webhooks.create(principal, {"url": HOOK})
    with pytest.raises(ConflictError, match="at most 20 webhook endpoints"):
        services.webhooks.create(principal, {"url": HOOK})
    services.webhooks.delete(principal, services.webhooks.endpoints(principal)[0].id)
    services.webhooks.create(principal, {"url": HOOK})


def test_read_only_keys_cannot_manage_webhooks(services: Services) -> None:
    issued = services.keys.create("acme", read_only=True)
    reader = services.keys.authenticate(issued.key)
    with pytest.raises(ForbiddenError, match="read-only"):
        services.webhooks.create(reader, {"url": HOOK})
    with pytest.raises(ForbiddenError):
        services.webhooks.retry(reader, "evt_x")
    assert services.webhooks.deliveries(reader, None, 20, 0) == ([], 0)


def test_another_tenants_endpoint_ids_are_not_found(services: Services) -> None:
    acme, other = principal_for(services, "acme"), principal_for(services, "other")
    issued = services.webhooks.create(acme, {"url": HOOK})
    assert services.webhooks.endpoints(other) == []
    with pytest.raises(NotFoundError):
        services.webhooks.delete(other, issued.endpoint.id)
    with pytest.raises(NotFoundError):
        services.webhooks.rotate(other, issued.endpoint.id)
    with pytest.raises(NotFoundError):
        services.webhooks.event(other, "evt_x")
    services.webhooks.delete(acme, issued.endpoint.id)
    with pytest.raises(NotFoundError):
        services.webhooks.delete(acme, issued.endpoint.id)


@pytest.mark.parametrize(
    ("status", "limit", "offset", "message"),
    [
        ("sent", 20, 0, "status: must be one of pending, delivered, failed"),
        (None, 0, 0, "limit: must be 1 to 100"),
        (None, 101, 0, "limit: must be 1 to 100"),
        (None, 20, -1, "offset: must be 0 or more"),
    ],
)
def test_delivery_listing_checks_its_parameters(
    services: Services, status: str | None, limit: int, offset: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        services.webhooks.deliveries(principal_for(services), status, limit, offset)


def test_delivery_status_filters_in_any_case(services: Services) -> None:
    principal = principal_for(services)
    assert services.webhooks.deliveries(principal, "DELIVERED", 20, 0) == ([], 0)
    assert services.webhooks.deliveries(principal, "", 20, 0) == ([], 0)


ROUTE = "POST /api/v1/webhooks"


def _create_remembered(services: Services, principal: Principal, key: str, body: bytes) -> str:
    """What the route does: prepare, then store the endpoint and its reply together."""
    issued = services.webhooks.prepare(principal, {"url": HOOK})
    payload = {"data": {"id": issued.endpoint.id, "secret": issued.secret}}
    reply = services.writes.remember(
        principal, key, ROUTE, body, 201, payload, services.webhooks.storing(issued)
    )
    assert reply.raw is not None
    return reply.raw


def test_concurrent_creates_with_one_idempotency_key_store_one_endpoint(services: Services) -> None:
    principal = principal_for(services)
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: _create_remembered(services, principal, "k-1", b"{}"), range(6)))
    endpoints = services.webhooks.endpoints(principal)
    assert len(endpoints) == 1
    assert set(replies) == {replies[0]}
    assert endpoints[0].id in replies[0]


def test_a_refused_create_keeps_no_reply_so_its_retry_can_succeed(services: Services) -> None:
    principal = principal_for(services)
    for _ in range(MAX_ENDPOINTS):
        services.webhooks.create(principal, {"url": HOOK})
    with pytest.raises(ConflictError):
        _create_remembered(services, principal, "k-2", b"{}")
    services.webhooks.delete(principal, services.webhooks.endpoints(principal)[0].id)
    reply = _create_remembered(services, principal, "k-2", b"{}")
    assert any(endpoint.id in reply for endpoint in services.webhooks.endpoints(principal))
    assert _create_remembered(services, principal, "k-2", b"{}") == reply  # now a replay
