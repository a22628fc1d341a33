"""Webhook endpoints and deliveries: what tenants manage and what the dispatcher works on.

Events and their deliveries are written by :mod:`trueup.storage.outbox` inside the
transactions that cause them; this repository manages endpoints, lists deliveries, re-queues
them by hand, hands due deliveries to the dispatcher and records its attempts. Every tenant-
facing method takes the tenant id, so another tenant's ids are simply not found.

Secrets must be at hand to sign every delivery, so they are stored sealed with a key derived
from the key pepper (:mod:`trueup.storage.secret_box`), not hashed: the store seals them as it
writes them, and opens them where they are used (the dispatcher's deliveries, a rotation,
:meth:`WebhookStore.endpoint`); listings and deletions return them as stored, sealed. A store
given no box (:meth:`WebhookStore.keep_secrets_with`) refuses to read or write a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from trueup.core.errors import ConflictError
from trueup.storage.engine import Engine, Row, Tx
from trueup.storage.secret_box import SEALED_PREFIX, SecretBox, SecretBoxError, is_sealed, required_box
from trueup.storage.webhook_pruning import PRUNE_ROWS, PRUNE_SCAN, PrunedBatch, prune_batch
from trueup.storage.webhook_records import (
    DELIVERY_COLUMNS,
    DELIVERY_JOIN,
    ENDPOINT_COLUMNS,
    ENDPOINT_COLUMNS_P,
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

UNOPENED_ERROR = "the endpoint's secret does not open with this server's key pepper: rotate it"
"""The error a delivery fails with when its endpoint's secret does not open."""

_IN_CLEAR = f"secret NOT LIKE '{SEALED_PREFIX}%' OR previous_secret NOT LIKE '{SEALED_PREFIX}%'"
"""Endpoints with a secret stored in clear (a NULL ``previous_secret`` is no match)."""

_DELIVERY_UPDATES = "webhook-attempts"
"""Serialises the transactions that update several deliveries (recording attempts, deleting an
endpoint, retrying an event, pruning) on PostgreSQL: each updates its rows in an order of its
own, and two of them at once deadlocked (SQLite has one writer). Pruning takes it too, so that
no delivery turns pending (a manual retry) between its check and its delete."""


_FAIL_PENDING = """UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                         last_error = 'endpoint deleted'
                     WHERE status = 'pending' AND """
"""Fails the pending deliveries the condition that follows it names (those of a deleted endpoint)."""


class WebhookStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._box: SecretBox | None = None

    def keep_secrets_with(self, box: SecretBox) -> None:
        """Seal the secrets written and open those read with ``box`` (the services set it once
        the key pepper is checked against the database's)."""
        self._box = box

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
                        [(box.seal(str(value), _context(str(endpoint_id))), endpoint_id, value)],
                    )
        return sealed

    def clear_secret_count(self) -> int:
        """How many endpoints have a secret stored in clear (by a Trueup before schema 14, until
        :meth:`seal_clear_secrets` runs); reads no secret."""
        with self._engine.read() as tx:
            return int(tx.scalar(f"SELECT COUNT(*) FROM webhook_endpoints WHERE {_IN_CLEAR}"))

    def _secret_box(self) -> SecretBox:
        return required_box(self._box, "webhook secrets")

    def _record(self, row: Row) -> EndpointRecord:
        """The endpoint of ``row`` (:data:`ENDPOINT_COLUMNS`), its secrets opened; raises
        :class:`SecretBoxError` when one does not open."""
        record = endpoint_record(row)
        box, context = self._secret_box(), _context(record.id)
        previous = record.previous_secret
        return replace(
            record,
            secret=box.open(record.secret, context),
            previous_secret=None if previous is None else box.open(previous, context),
        )

    def _sealed(self, secret: str, endpoint_id: str) -> str:
        return self._secret_box().seal(secret, _context(endpoint_id))

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

    def _opened_deliveries(self, rows: Sequence[Row]) -> list[DueDelivery]:
        """The deliveries of ``rows`` (:data:`_DUE_COLUMNS`), their endpoints' secrets opened.

        One whose endpoint's secret does not open (its row was changed in the database) fails,
        with an error the tenant sees, instead of stopping every tenant's deliveries with it;
        rotating the secret mends the endpoint."""
        opened: list[DueDelivery] = []
        unopened: list[tuple[str, str]] = []
        for row in rows:
            try:
                opened.append(self._due(row))
            except SecretBoxError as exc:
                log.error("delivery of event %s to endpoint %s fails: %s", row[0], row[1], exc)  # noqa: TRY400
                unopened.append((str(row[0]), str(row[1])))
        if unopened:
            with self._engine.write() as tx:
                self._engine.serialize(tx, _DELIVERY_UPDATES)
                tx.executemany(
                    """UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                           last_error = ?
                       WHERE event_id = ? AND endpoint_id = ? AND status = 'pending'""",
                    [(UNOPENED_ERROR, event_id, endpoint_id) for event_id, endpoint_id in unopened],
                )
        return opened

    def _due(self, row: Row) -> DueDelivery:
        return DueDelivery(
            event_id=str(row[0]),
            endpoint_id=str(row[1]),
            event_type=str(row[2]),
            payload=str(row[3]),
            attempts=int(row[4]),
            round_attempts=int(row[5]),
            endpoint=self._record(row[6:16]),
            due_at=str(row[16]),
        )

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
            self._engine.serialize(tx, _DELIVERY_UPDATES)
            found = self._active_endpoint(tx, tenant_id, endpoint_id, opened=False)
            if found is not None:
                _deactivate(tx, endpoint_id, deleted_at)
        return found

    def delete_endpoints_at(self, tenant_id: str, url: str, deleted_at: str) -> list[EndpointRecord]:
        """Deactivate every active endpoint of the tenant with this exact ``url`` (a tenant may
        have registered one URL more than once), oldest first; their pending deliveries fail.
        Their records have their secrets left sealed, as :meth:`delete_endpoint`'s."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, _DELIVERY_UPDATES)
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
                replaced: str | None = self._secret_box().open(found.secret, _context(endpoint_id))
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
            self._engine.serialize(tx, _DELIVERY_UPDATES)
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
        """Pending deliveries due at ``now`` to active endpoints, earliest first.

        Read through the index of pending deliveries, in order (:meth:`Tx.execute_in_index_order`).
        PostgreSQL's planner, without statistics of a table of a few endpoints (autovacuum
        analyzes none that changed by fewer than 50 rows), started from the endpoints, joined
        every pending delivery of each and sorted them all to keep the first few: 15-19 ms a
        round with 5,000 pending, 100 ms with 30,000 (0.1 ms in order), so the further the
        dispatcher fell behind, the slower it went."""
        with self._engine.read() as tx:
            rows = tx.execute_in_index_order(
                f"""SELECT {_DUE_COLUMNS} FROM webhook_deliveries d {_DUE_JOINS}
                    WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND p.deleted_at IS NULL
                    ORDER BY d.next_attempt_at LIMIT ?""",
                (now, limit),
            )
        return self._opened_deliveries(rows)

    def due_turns(
        self, now: str, per_tenant: int, window: int = 20_000, limit: int = 2_000
    ) -> list[tuple[str, str, str]]:
        """``(event id, endpoint id, tenant id)`` of pending deliveries due at ``now`` to
        active endpoints, tenant by tenant in turn: the earliest of each tenant (turn 1), then
        the second of each, up to ``per_tenant`` each, at most ``limit`` in all, among the
        ``window`` earliest due (which bounds the query's work on a long backlog). Light rows:
        the dispatcher picks among them and reads only those it hands out (:meth:`due_by_keys`)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                """SELECT d.event_id, d.endpoint_id, d.tenant_id
                   FROM (SELECT w.*, ROW_NUMBER() OVER (
                                    PARTITION BY w.tenant_id ORDER BY w.next_attempt_at, w.seq) AS turn
                         FROM (SELECT event_id, endpoint_id, tenant_id, next_attempt_at, seq
                               FROM webhook_deliveries
                               WHERE status = 'pending' AND next_attempt_at <= ?
                               ORDER BY next_attempt_at, seq LIMIT ?) w) d
                   JOIN webhook_endpoints p ON p.id = d.endpoint_id
                   WHERE p.deleted_at IS NULL AND d.turn <= ?
                   ORDER BY d.turn, d.next_attempt_at, d.seq LIMIT ?""",
                (now, window, per_tenant, limit),
            )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def due_by_keys(self, keys: Sequence[tuple[str, str]]) -> list[DueDelivery]:
        """The pending deliveries ``(event id, endpoint id)`` of ``keys`` to active endpoints,
        in the order of ``keys`` (those no longer pending are left out)."""
        if not keys:
            return []
        rows: list[Row] = []
        with self._engine.read() as tx:
            for relation, params in tx.relations(keys, ("text", "text"), 200):
                rows += tx.execute(
                    f"""SELECT {_DUE_COLUMNS} FROM {relation}
                        JOIN webhook_deliveries d ON d.event_id = w.column1 AND d.endpoint_id = w.column2
                        {_DUE_JOINS}
                        WHERE d.status = 'pending' AND p.deleted_at IS NULL""",
                    params,
                )
        found = {(d.event_id, d.endpoint_id): d for d in self._opened_deliveries(rows)}
        return [found[key] for key in keys if key in found]

    def fail_orphaned(self) -> int:
        """Fail the deliveries still pending to a deleted endpoint, as its delete fails its
        pending ones; return how many. Older versions left such rows on PostgreSQL when an
        endpoint was deleted while a seal wrote deliveries for it: never sent, and shown as
        pending for good. The dispatcher calls this as it takes its role."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, _DELIVERY_UPDATES)
            failed = tx.execute(
                _FAIL_PENDING
                + "endpoint_id IN (SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL) "
                "RETURNING event_id"
            )
            return len(failed)

    def next_due(self) -> str | None:
        """When the earliest pending delivery to an active endpoint is due, or ``None`` when
        none is pending. Like :meth:`due`, it passes over deliveries left pending to a deleted
        endpoint (which are never sent): one of those, always due, kept the dispatcher from
        ever waiting its poll interval between looks."""
        with self._engine.read() as tx:
            return _next_due(tx)

    def backlog(self, wait_s: float | None = None) -> tuple[int, str | None]:
        """``(deliveries pending, when the earliest pending to an active endpoint is or was
        due)``: the dispatcher's backlog as ``/metrics`` shows it; ``wait_s`` bounds the wait for
        a pooled connection (:meth:`Engine.read`). The count reads the partial index of pending
        deliveries, all of it, as the queue's depth does."""
        with self._engine.read(wait_s) as tx:
            count = int(tx.scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'"))
            return count, _next_due(tx)

    def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[AttemptOutcome]:
        """Log finished attempts and move their deliveries on, in one transaction; return the
        outcomes that moved their delivery on.

        A delivery no longer pending (delivered, or its endpoint deleted meanwhile), or, for an
        attempt that did not deliver, queued again since the attempt was claimed (a manual
        retry, or another dispatcher's attempt: it is due at another time than the outcome's
        ``due_at``), keeps its state; the attempt is logged all the same. An attempt that
        delivered marks a pending delivery delivered however it was queued meanwhile. Attempts are
        numbered here, as they are logged: a dispatcher that lost its role mid-send and the one
        that took it over may each have sent the same delivery, and both sends are logged, one
        after the other.
        """
        if not outcomes:
            return []
        applied: list[AttemptOutcome] = []
        with self._engine.write() as tx:
            self._engine.serialize(tx, _DELIVERY_UPDATES)
            # Only for a delivery that is still stored: one pruned meanwhile (its event past the
            # retention, delivered by the dispatcher that took over from this one) is gone with
            # its attempts, and an attempt logged after it would stay behind, never pruned.
            tx.executemany(
                """INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, started_at,
                       duration_ms, status_code, error)
                   SELECT d.event_id, d.endpoint_id,
                          (SELECT COALESCE(MAX(a.attempt), 0) + 1 FROM webhook_attempts a
                            WHERE a.event_id = d.event_id AND a.endpoint_id = d.endpoint_id),
                          CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS TEXT)
                   FROM webhook_deliveries d WHERE d.event_id = ? AND d.endpoint_id = ?""",
                [
                    (
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
            # The first outcome of each delivery in one statement (they are of different rows, so
            # their order does not matter), then any later outcome of the same delivery, one by
            # one, in order. On PostgreSQL a statement per outcome took 10-20 ms a round of 16.
            firsts: dict[tuple[str, str], AttemptOutcome] = {}
            later: list[AttemptOutcome] = []
            for o in outcomes:
                if firsts.setdefault((o.event_id, o.endpoint_id), o) is not o:
                    later.append(o)
            moved = _move_on(tx, list(firsts.values()))
            for key, o in firsts.items():
                if key in moved:
                    applied.append(o)
                else:
                    _count_attempt(tx, o)
            for o in later:
                if _move_on(tx, [o]):
                    applied.append(o)
                else:
                    _count_attempt(tx, o)
        return applied

    def prune(
        self,
        cutoff: str,
        after: tuple[str, str] | None = None,
        max_rows: int = PRUNE_ROWS,
        scan: int = PRUNE_SCAN,
    ) -> PrunedBatch:
        """One batch of pruning, in one transaction: the events created before ``cutoff``
        (canonical time) none of whose deliveries is pending, with their deliveries and
        attempts, oldest first from after ``after`` (the last batch's ``resume_after``), up to
        ``max_rows`` rows deleted and ``scan`` events examined (:mod:`trueup.storage.webhook_pruning`)."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, _DELIVERY_UPDATES)
            return prune_batch(tx, cutoff, after, max_rows, scan)


def _next_due(tx: Tx) -> str | None:
    rows = tx.execute_in_index_order(  # as WebhookStore.due's, for the same reason
        """SELECT d.next_attempt_at FROM webhook_deliveries d
           JOIN webhook_endpoints p ON p.id = d.endpoint_id
           WHERE d.status = 'pending' AND p.deleted_at IS NULL
           ORDER BY d.next_attempt_at LIMIT 1"""
    )
    return str(rows[0][0]) if rows else None


_OUTCOME_KINDS = ("text", "text", "text", "text", "text", "bigint", "text", "text", "text")
"""The columns of :func:`_move_on`'s relation: the delivery's key, then what it moves on to."""


def _move_on(tx: Tx, outcomes: Sequence[AttemptOutcome]) -> set[tuple[str, str]]:
    """Move on the still-pending deliveries of ``outcomes`` (of different deliveries each) by
    what their attempt did; return the keys of those it moved.

    A send that reached the endpoint delivers the event whenever it was claimed: only a failed
    one may be stale (its next try set since it was claimed), and moves its delivery on only if
    the delivery is still due when the attempt was claimed (``due_at``)."""
    rows = [
        (
            o.event_id,
            o.endpoint_id,
            _status_after(o),
            None if o.delivered else o.next_attempt_at,
            o.started_at,
            o.status_code,
            o.error,
            o.finished_at if o.delivered else None,
            None if o.delivered else o.due_at,
        )
        for o in outcomes
    ]
    moved: set[tuple[str, str]] = set()
    for relation, params in tx.relations(rows, _OUTCOME_KINDS, 100):
        returned = tx.execute(
            f"""UPDATE webhook_deliveries SET status = w.column3, attempts = attempts + 1,
                   round_attempts = round_attempts + 1, next_attempt_at = w.column4,
                   last_attempt_at = w.column5, last_status_code = w.column6, last_error = w.column7,
                   delivered_at = COALESCE(w.column8, delivered_at)
                FROM {relation}
                WHERE webhook_deliveries.event_id = w.column1 AND webhook_deliveries.endpoint_id = w.column2
                  AND webhook_deliveries.status = 'pending'
                  AND (w.column9 IS NULL OR webhook_deliveries.next_attempt_at = w.column9)
                RETURNING webhook_deliveries.event_id, webhook_deliveries.endpoint_id""",
            params,
        )
        moved.update((str(event_id), str(endpoint_id)) for event_id, endpoint_id in returned)
    return moved


def _count_attempt(tx: Tx, outcome: AttemptOutcome) -> None:
    """Count an attempt that did not move its delivery on among those made while the delivery
    was pending (when it still is)."""
    tx.execute(
        """UPDATE webhook_deliveries SET attempts = attempts + 1
           WHERE event_id = ? AND endpoint_id = ? AND status = 'pending'""",
        (outcome.event_id, outcome.endpoint_id),
    )


def _status_after(outcome: AttemptOutcome) -> str:
    if outcome.delivered:
        return "delivered"
    return "failed" if outcome.next_attempt_at is None else "pending"


def _deactivate(tx: Tx, endpoint_id: str, deleted_at: str) -> None:
    tx.execute("UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", (deleted_at, endpoint_id))
    tx.execute(_FAIL_PENDING + "endpoint_id = ?", (endpoint_id,))


def _context(endpoint_id: str) -> str:
    """What an endpoint's secrets are sealed for: that endpoint, so they open nowhere else."""
    return f"webhook endpoint {endpoint_id}"


_DUE_COLUMNS = f"""d.event_id, d.endpoint_id, e.event_type, e.payload, d.attempts, d.round_attempts,
    {ENDPOINT_COLUMNS_P}, d.next_attempt_at"""
"""What :func:`_due` reads, from ``webhook_deliveries d`` joined by :data:`_DUE_JOINS`."""
_DUE_JOINS = """JOIN webhook_events e ON e.id = d.event_id
    JOIN webhook_endpoints p ON p.id = d.endpoint_id"""
