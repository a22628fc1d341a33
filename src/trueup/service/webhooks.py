"""Webhook endpoints and deliveries, as a tenant manages them (DESIGN.md §2.7).

Create an endpoint (its ``whsec_…`` secret is shown once), list and delete endpoints, rotate a
secret with a 24-hour overlap, list deliveries and queue an event's deliveries again. Every
call is scoped to the caller's tenant: another tenant's ids are not found.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trueup.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from trueup.core.ids import random_token
from trueup.core.json_text import quoted
from trueup.core.strict_json import describe
from trueup.core.timestamps import format_canonical
from trueup.core.unknown_names import refuse_unknown
from trueup.service.keys import Principal
from trueup.service.settings import Settings
from trueup.service.webhook_targets import Resolver, TargetPolicy, resolve_target, system_resolver
from trueup.storage import Storage
from trueup.storage.engine import Tx
from trueup.storage.outbox import EVENT_TYPES
from trueup.storage.webhooks import AttemptView, DeliveryView, EndpointRecord

__all__ = [
    "DELIVERY_STATUSES",
    "ENDPOINT_CREATE_ROUTE",
    "ENDPOINT_FIELDS",
    "MAX_ENDPOINTS",
    "ROTATION_OVERLAP",
    "EventDetail",
    "IssuedEndpoint",
    "WebhookService",
    "new_secret",
]

MAX_ENDPOINTS = 20
"""Active endpoints per tenant: bounds the fan-out written in each seal."""

ROTATION_OVERLAP = timedelta(hours=24)
"""How long the replaced secret keeps signing deliveries after a rotation."""

ENDPOINT_CREATE_ROUTE = "POST /api/v1/webhooks"
"""The route that registers an endpoint, as its reply is kept under an ``Idempotency-Key``
(sealed, as it holds the new secret)."""

DELIVERY_STATUSES = ("pending", "delivered", "failed")
MAX_DESCRIPTION = 500
MAX_PAGE = 100

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_secret() -> str:
    """``whsec_`` + 32 random bytes in URL-safe base64 without padding (43 characters)."""
    return "whsec_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


ENDPOINT_FIELDS = ("url", "description", "events")
"""The fields of an endpoint's creation; any other is refused, not ignored."""


@dataclass(frozen=True, slots=True)
class IssuedEndpoint:
    """An endpoint with its new secret: the only time the secret is shown."""

    endpoint: EndpointRecord
    secret: str


@dataclass(frozen=True, slots=True)
class EventDetail:
    event_id: str
    event_type: str
    payload: str
    deliveries: list[DeliveryView]
    attempts: list[AttemptView]


def _require_write(principal: Principal) -> None:
    if principal.read_only:
        raise ForbiddenError("this API key is read-only; managing webhooks needs a read-write key")


def _parse_events(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError("events", f"must be an array of event types, got {describe(value)}")
    chosen: list[str] = []
    every = False
    for index, kind in enumerate(value):  # each entry is checked, "*" among them or not
        if kind == "*":
            every = True
        elif kind not in EVENT_TYPES:
            raise ValidationError(
                f"events[{index}]", f'must be one of {", ".join(EVENT_TYPES)} or "*", got {describe(kind)}'
            )
        elif kind not in chosen:
            chosen.append(kind)
    if every:
        return ()
    if not chosen:
        raise ValidationError("events", "must name at least one event type (or omit it for all)")
    return tuple(chosen)


class WebhookService:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        clock: Clock = _utcnow,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._storage = storage
        self._policy = TargetPolicy(settings.webhook_allow_http, settings.webhook_allow_private)
        self._clock = clock
        self._resolver = resolver
        self._retention_days = settings.webhook_retention_days

    def require_write(self, principal: Principal) -> None:
        """403 for a read-only key, for a managing route to ask before it looks anything up, so
        that a 404 tells such a key no more than the 403 does."""
        _require_write(principal)

    def create(self, principal: Principal, document: Any) -> IssuedEndpoint:
        """``{url, description?, events?}`` → a new endpoint and its secret, stored."""
        issued = self.prepare(principal, document)
        self._storage.webhooks.add_endpoint(issued.endpoint, MAX_ENDPOINTS)
        return issued

    def storing(self, issued: IssuedEndpoint) -> Callable[[Tx], None]:
        """The write that stores a prepared endpoint, to run inside another transaction (the
        one that also keeps the reply under its ``Idempotency-Key``)."""
        return lambda tx: self._storage.webhooks.add_endpoint_in(tx, issued.endpoint, MAX_ENDPOINTS)

    def prepare(self, principal: Principal, document: Any) -> IssuedEndpoint:
        """``{url, description?, events?}`` → a new endpoint and its secret, not yet stored.

        Raises :class:`ValidationError` naming ``url`` (scheme, credentials, a host that does
        not resolve or resolves to a refused address), ``description`` or ``events``.
        """
        _require_write(principal)
        if not isinstance(document, dict):
            raise ValidationError("body", f"must be a JSON object, got {describe(document)}")
        # A misspelt "events" would subscribe the endpoint to every type: refused instead.
        refuse_unknown(document, ENDPOINT_FIELDS, "field")
        if "url" not in document:
            raise ValidationError("url", "is required")
        target = resolve_target(document["url"], self._policy, self._resolver)
        description = document.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise ValidationError("description", f"must be a string, got {describe(description)}")
        if len(description) > MAX_DESCRIPTION:
            raise ValidationError(
                "description", f"must be at most {MAX_DESCRIPTION} characters, got {len(description)}"
            )
        events = _parse_events(document.get("events"))
        secret = new_secret()
        endpoint = EndpointRecord(
            id="wh_" + random_token(secrets.token_bytes(10)),
            tenant_id=principal.tenant_id,
            url=target.url,
            description=description,
            events=events,
            secret=secret,
            previous_secret=None,
            previous_expires_at=None,
            created_at=format_canonical(self._clock()),
            rotated_at=None,
        )
        return IssuedEndpoint(endpoint, secret)

    def endpoints(self, principal: Principal) -> list[EndpointRecord]:
        return self._storage.webhooks.endpoints(principal.tenant_id)

    def delete_by_url(self, principal: Principal, url: str) -> list[EndpointRecord]:
        """Deactivate every endpoint of the tenant registered with exactly ``url``, oldest
        first (the same URL may have been registered twice, say by a create retried without an
        ``Idempotency-Key``): afterwards nothing is sent to it. 404 when there is none."""
        _require_write(principal)
        found = self._storage.webhooks.delete_endpoints_at(
            principal.tenant_id, url, format_canonical(self._clock())
        )
        if not found:
            raise NotFoundError(f"no webhook endpoint with url {quoted(url[:200])}")
        return found

    def delete(self, principal: Principal, endpoint_id: str) -> EndpointRecord:
        """Deactivate an endpoint; its pending deliveries fail. 404 when not the tenant's."""
        _require_write(principal)
        found = self._storage.webhooks.delete_endpoint(
            principal.tenant_id, endpoint_id, format_canonical(self._clock())
        )
        if found is None:
            raise NotFoundError(f"webhook endpoint {quoted(endpoint_id[:64])} not found")
        return found

    def rotate(self, principal: Principal, endpoint_id: str) -> IssuedEndpoint:
        """A new secret, shown once; the replaced one keeps signing for 24 hours beside it."""
        _require_write(principal)
        now = self._clock()
        secret = new_secret()
        updated = self._storage.webhooks.rotate_secret(
            principal.tenant_id,
            endpoint_id,
            secret,
            format_canonical(now),
            format_canonical(now + ROTATION_OVERLAP),
        )
        if updated is None:
            raise NotFoundError(f"webhook endpoint {quoted(endpoint_id[:64])} not found")
        return IssuedEndpoint(updated, secret)

    def deliveries(
        self, principal: Principal, status: str | None, limit: int, offset: int
    ) -> tuple[list[DeliveryView], int]:
        """The tenant's deliveries, newest first; ``status`` filters (any case)."""
        wanted = None
        if status is not None and status != "":
            wanted = status.lower()
            if wanted not in DELIVERY_STATUSES:
                raise ValidationError(
                    "status", f"must be one of {', '.join(DELIVERY_STATUSES)}, got {quoted(status[:40])}"
                )
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError("limit", f"must be 1 to {MAX_PAGE}, got {limit}")
        if offset < 0:
            raise ValidationError("offset", f"must be 0 or more, got {offset}")
        return self._storage.webhooks.deliveries(principal.tenant_id, wanted, limit, offset)

    def event(self, principal: Principal, event_id: str) -> EventDetail:
        found = self._storage.webhooks.event(principal.tenant_id, event_id)
        if found is None:
            raise NotFoundError(self._no_event(event_id))
        event_type, payload, deliveries, attempts = found
        return EventDetail(event_id, event_type, payload, deliveries, attempts)

    def _no_event(self, event_id: str) -> str:
        """Why an event is not found: it never was the tenant's, or it was pruned."""
        message = f"webhook event {quoted(event_id[:64])} not found"
        if self._retention_days:
            days = "1 day" if self._retention_days == 1 else f"{self._retention_days} days"
            message += (
                f"; events are kept {days} after they happen, then pruned with their deliveries "
                "and attempts once those are delivered or failed"
            )
        return message

    def retry(self, principal: Principal, event_id: str) -> int:
        """Queue the event's deliveries again, due now, with a fresh retry budget.

        Returns how many deliveries were queued. 404 when the tenant has no such event; 409
        when none of its endpoints is still active.
        """
        _require_write(principal)
        queued = self._storage.webhooks.retry_event(
            principal.tenant_id, event_id, format_canonical(self._clock())
        )
        if queued is None:
            raise NotFoundError(self._no_event(event_id))
        if queued == 0:
            raise ConflictError(
                f"event {quoted(event_id[:64])} has no delivery to an active endpoint to retry"
            )
        return queued
