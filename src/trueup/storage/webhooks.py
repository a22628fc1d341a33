"""Webhook endpoints and deliveries: what tenants manage and what the dispatcher works on.

Events and their deliveries are written by :mod:`trueup.storage.outbox` inside the
transactions that cause them; this repository manages endpoints, lists deliveries and
re-queues them by hand, and, being a :class:`~trueup.storage.webhook_queue.DeliveryQueue`, hands
due deliveries to the dispatcher and records its attempts. Every tenant-facing method takes the
tenant id, so another tenant's ids are simply not found.

Secrets must be at hand to sign every delivery, so they are stored sealed with a key derived
from the key pepper (:mod:`trueup.storage.secret_box`), not hashed: the store seals them as it
writes them, and opens them where they are used (the dispatcher's deliveries, a rotation,
:meth:`WebhookStore.endpoint`); listings and deletions return them as stored, sealed. A store
given no box (:meth:`WebhookStore.keep_secrets_with`) refuses to read or write a secret.
"""

from __future__ import annotations

import logging

from trueup.core.errors import ConflictError
from trueup.storage.engine import Tx
from trueup.storage.secret_box import SEALED_PREFIX, SecretBoxError, is_sealed
from trueup.storage.webhook_pruning import PrunedBatch
from trueup.storage.webhook_queue import DELIVERY_UPDATES, FAIL_PENDING, DeliveryQueue, secret_context
from trueup.storage.webhook_records import (
    DELIVERY_COLUMNS,
    DELIVERY_JOIN,
    ENDPOINT_COLUMNS,
    AttemptOutcome,
    AttemptView,
    DeliveryView,
    DueDelivery,
    EndpointRecord,
    delivery_view,
    endpoint_record,
)

__all__ = [
    "AttemptOutcome",
    "AttemptView",
    "DeliveryView",
    "DueDelivery",
    "EndpointRecord",
    "PrunedBatch",
    "WebhookStore",
]


log = logging.getLogger(__name__)

_IN_CLEAR = f"secret NOT LIKE '{SEALED_PREFIX}%' OR previous_secret NOT LIKE '{SEALED_PREFIX}%'"
"""Endpoints with a secret stored in clear (a NULL ``previous_secret`` is no match)."""


class WebhookStore(DeliveryQueue):
    """The webhook tables: the dispatcher's queue (:class:`DeliveryQueue`) and what tenants
    manage (endpoints, their deliveries and events)."""

    def seal_clear_secrets(self) -> int:
        """Seal the endpoint secrets an older Trueup stored in clear; return how many.

        Each is replaced only while it is still the value read, so a rotation committed meanwhile
        (which stores its secrets sealed) is never overwritten. Run as a process starts on a
        database migration 14 marked (:meth:`Storage.seal_clear_secrets`); several at once seal
        a secret more than once, each time to the same secret."""
        box = self._secret_box()
        with self._engine.read() as tx:
            rows = tx.execute(
                f"SELECT id, secret, previous_secret FROM webhook_endpoints WHERE {_IN_CLEAR} ORDER BY id"
            )
        sealed = 0
        with self._engine.write() as tx:
            for endpoint_id, secret, previous in rows:
                for column, value in (("secret", secret), ("previous_secret", previous)):
                    if value is None or is_sealed(str(value)):
                        continue
                    sealed += tx.executemany(
                        f"UPDATE webhook_endpoints SET {column} = ? WHERE id = ? AND {column} = ?",
                        [(box.seal(str(value), secret_context(str(endpoint_id))), endpoint_id, value)],
                    )
        return sealed

    def clear_secret_count(self) -> int:
        """How many endpoints have a secret stored in clear (by a Trueup before schema 14, until
        :meth:`seal_clear_secrets` runs); reads no secret."""
        with self._engine.read() as tx:
            return int(tx.scalar(f"SELECT COUNT(*) FROM webhook_endpoints WHERE {_IN_CLEAR}"))

    def _sealed(self, secret: str, endpoint_id: str) -> str:
        return self._secret_box().seal(secret, secret_context(endpoint_id))

    def _active_endpoint(
        self, tx: Tx, tenant_id: str, endpoint_id: str, *, opened: bool = True
    ) -> EndpointRecord | None:
        """An active endpoint of the tenant (``opened``: its secrets opened, else as stored)."""
        row = tx.one(
            f"""SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL""",
            (endpoint_id, tenant_id),
        )
        if row is None:
            return None
        return self._record(row) if opened else endpoint_record(row)

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
            f"""INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS})
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                endpoint.id,
                endpoint.tenant_id,
                endpoint.url,
                endpoint.description,
                ",".join(endpoint.events) or "*",
                self._sealed(endpoint.secret, endpoint.id),
                None
                if endpoint.previous_secret is None
                else self._sealed(endpoint.previous_secret, endpoint.id),
                endpoint.previous_expires_at,
                endpoint.created_at,
                endpoint.rotated_at,
            ),
        )

    def endpoints(self, tenant_id: str) -> list[EndpointRecord]:
        """The tenant's active endpoints, oldest first, their secrets left sealed (a listing
        never shows them, and one that does not open does not hide the others)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                    WHERE tenant_id = ? AND deleted_at IS NULL ORDER BY created_at, id""",
                (tenant_id,),
            )
        return [endpoint_record(row) for row in rows]

    def endpoint(self, tenant_id: str, endpoint_id: str) -> EndpointRecord | None:
        """An active endpoint of the tenant, or ``None``."""
        with self._engine.read() as tx:
            return self._active_endpoint(tx, tenant_id, endpoint_id)

    def delete_endpoint(self, tenant_id: str, endpoint_id: str, deleted_at: str) -> EndpointRecord | None:
        """Deactivate an endpoint; its pending deliveries fail. ``None`` when not found. The
        record returned has its secrets left sealed: an endpoint whose secret does not open can
        be deleted all the same."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, DELIVERY_UPDATES)
            found = self._active_endpoint(tx, tenant_id, endpoint_id, opened=False)
            if found is not None:
                _deactivate(tx, endpoint_id, deleted_at)
        return found

    def delete_endpoints_at(self, tenant_id: str, url: str, deleted_at: str) -> list[EndpointRecord]:
        """Deactivate every active endpoint of the tenant with this exact ``url`` (a tenant may
        have registered one URL more than once), oldest first; their pending deliveries fail.
        Their records have their secrets left sealed, as :meth:`delete_endpoint`'s."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, DELIVERY_UPDATES)
            rows = tx.execute(
                f"""SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                    WHERE tenant_id = ? AND url = ? AND deleted_at IS NULL ORDER BY created_at, id""",
                (tenant_id, url),
            )
            found = [endpoint_record(row) for row in rows]
            for endpoint in found:
                _deactivate(tx, endpoint.id, deleted_at)
        return found

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, rotated_at: str, previous_until: str
    ) -> EndpointRecord | None:
        """Make ``new_secret`` current; the replaced one keeps signing until ``previous_until``.

        A replaced secret that does not open (its row was changed in the database) is dropped,
        not kept beside the new one: rotating mends such an endpoint."""
        with self._engine.write() as tx:
            found = self._active_endpoint(tx, tenant_id, endpoint_id, opened=False)
            if found is None:
                return None
            try:
                replaced: str | None = self._secret_box().open(found.secret, secret_context(endpoint_id))
            except SecretBoxError as exc:
                log.warning("rotating endpoint %s drops its replaced secret: %s", endpoint_id, exc)
                replaced = None
            tx.execute(
                """UPDATE webhook_endpoints SET secret = ?, previous_secret = ?,
                       previous_expires_at = ?, rotated_at = ? WHERE id = ?""",
                (
                    self._sealed(new_secret, endpoint_id),
                    None if replaced is None else self._sealed(replaced, endpoint_id),
                    None if replaced is None else previous_until,
                    rotated_at,
                    endpoint_id,
                ),
            )
            updated = self._active_endpoint(tx, tenant_id, endpoint_id)
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
                f"""SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_JOIN} WHERE {where}
                    ORDER BY d.seq DESC LIMIT ? OFFSET ?""",
                [*params, limit, offset],
            )
        return [delivery_view(row) for row in rows], total

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
                f"SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_JOIN} WHERE d.event_id = ? ORDER BY d.seq",
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
            [delivery_view(d) for d in deliveries],
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
            self._engine.serialize(tx, DELIVERY_UPDATES)
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


def _deactivate(tx: Tx, endpoint_id: str, deleted_at: str) -> None:
    tx.execute("UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", (deleted_at, endpoint_id))
    tx.execute(FAIL_PENDING + "endpoint_id = ?", (endpoint_id,))
