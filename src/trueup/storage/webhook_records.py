"""The rows of webhook endpoints, deliveries and attempts as :mod:`trueup.storage.webhooks`
reads and writes them: the records, the columns they are selected with, and the dispatcher's
view of a due delivery and of an attempt's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from trueup.storage.engine import Row

__all__ = [
    "DELIVERY_COLUMNS",
    "DELIVERY_JOIN",
    "ENDPOINT_COLUMNS",
    "ENDPOINT_COLUMNS_P",
    "AttemptOutcome",
    "AttemptView",
    "DeliveryView",
    "DueDelivery",
    "EndpointRecord",
    "delivery_view",
    "endpoint_record",
]


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """An endpoint. ``events`` empty: every event type. Times are canonical text."""

    id: str
    tenant_id: str
    url: str
    description: str
    events: tuple[str, ...]
    secret: str
    previous_secret: str | None
    previous_expires_at: str | None
    created_at: str
    rotated_at: str | None

    def signing_secrets(self, now: str) -> tuple[str, ...]:
        """The secrets that sign a delivery made at ``now``: current first, then the previous
        one while its overlap lasts."""
        if self.previous_secret and self.previous_signs_until(now) is not None:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def previous_signs_until(self, now: str) -> str | None:
        """When the previous secret stops signing, if there is one and it still signs at ``now``."""
        if self.previous_secret and self.previous_expires_at is not None and now < self.previous_expires_at:
            return self.previous_expires_at
        return None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One event's delivery to one endpoint. ``status``: pending, delivered or failed."""

    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class AttemptView:
    attempt: int
    endpoint_id: str
    started_at: str
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A pending delivery whose time has come, with all the dispatcher needs to send it."""

    event_id: str
    endpoint_id: str
    event_type: str
    payload: str
    endpoint: EndpointRecord
    attempts: int
    round_attempts: int
    due_at: str
    """When the delivery was due as it was claimed (its ``next_attempt_at``, canonical)."""


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """A finished attempt. Not delivered and ``next_attempt_at`` ``None``: the delivery fails.

    ``due_at`` is the claimed delivery's :attr:`DueDelivery.due_at`: an attempt that did not
    deliver moves the delivery on only while it is still due then, so that a delivery queued
    again meanwhile (a manual retry, or another dispatcher's attempt) is not moved on by this
    older one; an attempt that delivered marks it delivered all the same.
    ``None`` skips that check."""

    event_id: str
    endpoint_id: str
    attempt: int
    started_at: str
    finished_at: str
    duration_ms: int
    status_code: int | None
    error: str | None
    delivered: bool
    next_attempt_at: str | None
    due_at: str | None = None


ENDPOINT_COLUMNS = """id, tenant_id, url, description, events, secret, previous_secret,
    previous_expires_at, created_at, rotated_at"""


ENDPOINT_COLUMNS_P = ", ".join("p." + column.strip() for column in ENDPOINT_COLUMNS.split(","))


def endpoint_record(row: Row) -> EndpointRecord:
    events = str(row[4])
    return EndpointRecord(
        id=str(row[0]),
        tenant_id=str(row[1]),
        url=str(row[2]),
        description=str(row[3]),
        events=() if events == "*" else tuple(events.split(",")),
        secret=str(row[5]),
        previous_secret=None if row[6] is None else str(row[6]),
        previous_expires_at=None if row[7] is None else str(row[7]),
        created_at=str(row[8]),
        rotated_at=None if row[9] is None else str(row[9]),
    )


DELIVERY_COLUMNS = """d.event_id, e.event_type, d.endpoint_id, p.url, d.status, d.attempts,
    d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at, d.delivered_at,
    d.created_at"""
DELIVERY_JOIN = """webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
    JOIN webhook_endpoints p ON p.id = d.endpoint_id"""


def delivery_view(row: Row) -> DeliveryView:
    return DeliveryView(
        event_id=str(row[0]),
        event_type=str(row[1]),
        endpoint_id=str(row[2]),
        url=str(row[3]),
        status=str(row[4]),
        attempts=int(row[5]),
        last_status_code=None if row[6] is None else int(row[6]),
        last_error=None if row[7] is None else str(row[7]),
        last_attempt_at=None if row[8] is None else str(row[8]),
        next_attempt_at=None if row[9] is None else str(row[9]),
        delivered_at=None if row[10] is None else str(row[10]),
        created_at=str(row[11]),
    )
