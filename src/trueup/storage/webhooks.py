"""Webhook endpoints and deliveries: what tenants manage and what the dispatcher works on.

Events and their deliveries are written by :mod:`trueup.storage.outbox` inside the
transactions that cause them; this repository manages endpoints, lists deliveries, re-queues
them by hand, hands due deliveries to the dispatcher and records its attempts. Every tenant-
facing method takes the tenant id, so another tenant's ids are simply not found.

Secrets are stored as issued: they must be at hand to sign every delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trueup.core.errors import ConflictError
from trueup.storage.engine import Engine, Row, Tx

__all__ = [
    "AttemptOutcome",
    "AttemptView",
    "DeliveryView",
    "DueDelivery",
    "EndpointRecord",
    "WebhookStore",
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
        if self.previous_secret and self.previous_expires_at and now < self.previous_expires_at:
            return (self.secret, self.previous_secret)
        return (self.secret,)


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


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """A finished attempt. Not delivered and ``next_attempt_at`` ``None``: the delivery fails."""

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


_ENDPOINT_COLUMNS = """id, tenant_id, url, description, events, secret, previous_secret,
    previous_expires_at, created_at, rotated_at"""


_ENDPOINT_COLUMNS_P = ", ".join("p." + column.strip() for column in _ENDPOINT_COLUMNS.split(","))


def _endpoint(row: Row) -> EndpointRecord:
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


_DELIVERY_COLUMNS = """d.event_id, e.event_type, d.endpoint_id, p.url, d.status, d.attempts,
    d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at, d.delivered_at,
    d.created_at"""
_DELIVERY_JOIN = """webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
    JOIN webhook_endpoints p ON p.id = d.endpoint_id"""


def _delivery(row: Row) -> DeliveryView:
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


class WebhookStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- endpoints --------------------------------------------------------------------------

    def add_endpoint(self, endpoint: EndpointRecord, max_active: int) -> None:
        """Store a new endpoint; :class:`ConflictError` when the tenant has ``max_active``."""
        with self._engine.write() as tx:
            self.add_endpoint_in(tx, endpoint, max_active)

    def add_endpoint_in(self, tx: Tx, endpoint: EndpointRecord, max_active: int) -> None:
        """:meth:`add_endpoint` inside the caller's transaction ``tx``."""
        self._engine.serialize(tx, f"webhooks:{endpoint.tenant_id}")
        active = int(
            tx.scalar(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = ? AND deleted_at IS NULL",
                (endpoint.tenant_id,),
            )
        )
        if active >= max_active:
            raise ConflictError(f"a tenant may have at most {max_active} webhook endpoints; delete one first")
        tx.execute(
            f"""INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS})
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                endpoint.id,
                endpoint.tenant_id,
                endpoint.url,
                endpoint.description,
                ",".join(endpoint.events) or "*",
                endpoint.secret,
                endpoint.previous_secret,
                endpoint.previous_expires_at,
                endpoint.created_at,
                endpoint.rotated_at,
            ),
        )

    def endpoints(self, tenant_id: str) -> list[EndpointRecord]:
        """The tenant's active endpoints, oldest first."""
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
                    WHERE tenant_id = ? AND deleted_at IS NULL ORDER BY created_at, id""",
                (tenant_id,),
            )
        return [_endpoint(row) for row in rows]

    def endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        """An active endpoint of the tenant, or ``None``."""
        with self._engine.read() as tx:
            return _active_endpoint(tx, tenant_id, endpoint_id)

    def delete_endpoint(self, tenant_id: str, endpoint_id: str, deleted_at: str) -> EndpointRecord | None:
        """Deactivate an endpoint; its pending deliveries fail. ``None`` when not found."""
        with self._engine.write() as tx:
            found = _active_endpoint(tx, tenant_id, endpoint_id)
            if found is None:
                return None
            tx.execute("UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", (deleted_at, endpoint_id))
            tx.execute(
                """UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                       last_error = 'endpoint deleted'
                   WHERE endpoint_id = ? AND status = 'pending'""",
                (endpoint_id,),
            )
        return found

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, rotated_at: str, previous_until: str
    ) -> EndpointRecord | None:
        """Make ``new_secret`` current; the replaced one keeps signing until ``previous_until``."""
        with self._engine.write() as tx:
            found = _active_endpoint(tx, tenant_id, endpoint_id)
            if found is None:
                return None
            tx.execute(
                """UPDATE webhook_endpoints SET secret = ?, previous_secret = ?,
                       previous_expires_at = ?, rotated_at = ? WHERE id = ?""",
                (new_secret, found.secret, previous_until, rotated_at, endpoint_id),
            )
            updated = _active_endpoint(tx, tenant_id, endpoint_id)
        assert updated is not None
        return updated

    # -- deliveries, as the tenant sees them ------------------------------------------------

    def deliveries(
        self, tenant_id: str, status: str | None, limit: int, offset: int
    ) -> tuple[list[DeliveryView], int]:
        """The tenant's deliveries, newest first, and how many match in all."""
        where = "d.tenant_id = ?"
        params: list[object] = [tenant_id]
        if status is not None:
            where += " AND d.status = ?"
            params.append(status)
        with self._engine.read() as tx:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM webhook_deliveries d WHERE {where}", params))
            rows = tx.execute(
                f"""SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_JOIN} WHERE {where}
                    ORDER BY d.seq DESC LIMIT ? OFFSET ?""",
                [*params, limit, offset],
            )
        return [_delivery(row) for row in rows], total

    def event(
        self, tenant_id: str, event_id: str
    ) -> tuple[str, str, list[DeliveryView], list[AttemptView]] | None:
        """``(event type, payload, deliveries, attempts)`` of one of the tenant's events."""
        with self._engine.read() as tx:
            row = tx.one(
                "SELECT event_type, payload FROM webhook_events WHERE id = ? AND tenant_id = ?",
                (event_id, tenant_id),
            )
            if row is None:
                return None
            deliveries = tx.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM {_DELIVERY_JOIN} WHERE d.event_id = ? ORDER BY d.seq",
                (event_id,),
            )
            attempts = tx.execute(
                """SELECT attempt, endpoint_id, started_at, duration_ms, status_code, error
                   FROM webhook_attempts WHERE event_id = ? ORDER BY endpoint_id, attempt""",
                (event_id,),
            )
        return (
            str(row[0]),
            str(row[1]),
            [_delivery(d) for d in deliveries],
            [
                AttemptView(
                    int(a[0]),
                    str(a[1]),
                    str(a[2]),
                    int(a[3]),
                    None if a[4] is None else int(a[4]),
                    None if a[5] is None else str(a[5]),
                )
                for a in attempts
            ],
        )

    def retry_event(self, tenant_id: str, event_id: str, now: str) -> int | None:
        """Queue the event's deliveries to active endpoints again, due ``now``, with a fresh
        retry budget. ``None`` when the tenant has no such event; else how many were queued."""
        with self._engine.write() as tx:
            found = tx.one(
                "SELECT 1 FROM webhook_events WHERE id = ? AND tenant_id = ?", (event_id, tenant_id)
            )
            if found is None:
                return None
            rows = tx.execute(
                """UPDATE webhook_deliveries SET status = 'pending', round_attempts = 0,
                       next_attempt_at = ?
                   WHERE event_id = ? AND endpoint_id IN (
                       SELECT id FROM webhook_endpoints WHERE tenant_id = ? AND deleted_at IS NULL)
                   RETURNING endpoint_id""",
                (now, event_id, tenant_id),
            )
        return len(rows)

    # -- the dispatcher ---------------------------------------------------------------------

    def due(self, now: str, limit: int) -> list[DueDelivery]:
        """Pending deliveries due at ``now`` to active endpoints, earliest first."""
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT d.event_id, d.endpoint_id, e.event_type, e.payload, d.attempts,
                           d.round_attempts, {_ENDPOINT_COLUMNS_P}
                    FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                    JOIN webhook_endpoints p ON p.id = d.endpoint_id
                    WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND p.deleted_at IS NULL
                    ORDER BY d.next_attempt_at LIMIT ?""",
                (now, limit),
            )
        return [
            DueDelivery(
                event_id=str(r[0]),
                endpoint_id=str(r[1]),
                event_type=str(r[2]),
                payload=str(r[3]),
                attempts=int(r[4]),
                round_attempts=int(r[5]),
                endpoint=_endpoint(r[6:]),
            )
            for r in rows
        ]

    def next_due(self) -> str | None:
        """When the earliest pending delivery is due, or ``None`` when none is pending."""
        with self._engine.read() as tx:
            value = tx.scalar("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")
        return None if value is None else str(value)

    def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> None:
        """Log finished attempts and move their deliveries on, in one transaction.

        A delivery no longer pending (re-queued, delivered, or its endpoint deleted meanwhile)
        keeps its state; the attempt is logged all the same. Attempts are numbered here, as
        they are logged: a dispatcher that lost its role mid-send and the one that took it over
        may each have sent the same delivery, and both sends are logged, one after the other.
        """
        if not outcomes:
            return
        with self._engine.write() as tx:
            self._engine.serialize(tx, "webhook-attempts")  # PostgreSQL; SQLite has one writer
            tx.executemany(
                """INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, started_at,
                       duration_ms, status_code, error)
                   SELECT CAST(? AS TEXT), CAST(? AS TEXT), COALESCE(MAX(attempt), 0) + 1,
                          CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS TEXT)
                   FROM webhook_attempts WHERE event_id = ? AND endpoint_id = ?""",
                [
                    (
                        o.event_id,
                        o.endpoint_id,
                        o.started_at,
                        o.duration_ms,
                        o.status_code,
                        o.error,
                        o.event_id,
                        o.endpoint_id,
                    )
                    for o in outcomes
                ],
            )
            tx.executemany(
                """UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,
                       round_attempts = round_attempts + 1, next_attempt_at = ?,
                       last_attempt_at = ?, last_status_code = ?, last_error = ?,
                       delivered_at = COALESCE(?, delivered_at)
                   WHERE event_id = ? AND endpoint_id = ? AND status = 'pending'""",
                [
                    (
                        _status_after(o),
                        None if o.delivered else o.next_attempt_at,
                        o.started_at,
                        o.status_code,
                        o.error,
                        o.finished_at if o.delivered else None,
                        o.event_id,
                        o.endpoint_id,
                    )
                    for o in outcomes
                ],
            )


def _status_after(outcome: AttemptOutcome) -> str:
    if outcome.delivered:
        return "delivered"
    return "failed" if outcome.next_attempt_at is None else "pending"


def _active_endpoint(tx: Tx, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
    row = tx.one(
        f"""SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
            WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL""",
        (endpoint_id, tenant_id),
    )
    return None if row is None else _endpoint(row)
