"""The dispatcher's side of the webhook tables: the deliveries due, and what their attempts did.

:class:`DeliveryQueue` hands the dispatcher the pending deliveries that are due (their
endpoints' secrets opened, to sign them), logs each finished attempt and moves its delivery on,
and prunes old events. :class:`trueup.storage.webhooks.WebhookStore` is a queue too, with what
tenants manage on top (endpoints, their deliveries listed, an event retried by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from trueup.storage.engine import Engine, Row, Tx
from trueup.storage.secret_box import SecretBox, SecretBoxError, required_box
from trueup.storage.webhook_pruning import PRUNE_ROWS, PRUNE_SCAN, PrunedBatch, prune_batch
from trueup.storage.webhook_records import (
    ENDPOINT_COLUMNS_P,
    AttemptOutcome,
    DueDelivery,
    EndpointRecord,
    endpoint_record,
)

__all__ = ["DELIVERY_UPDATES", "FAIL_PENDING", "UNOPENED_ERROR", "DeliveryQueue", "secret_context"]


log = logging.getLogger(__name__)

UNOPENED_ERROR = "the endpoint's secret does not open with this server's key pepper: rotate it"
"""The error a delivery fails with when its endpoint's secret does not open."""

DELIVERY_UPDATES = "webhook-attempts"
"""Serialises the transactions that update several deliveries (recording attempts, deleting an
endpoint, retrying an event, pruning) on PostgreSQL: each updates its rows in an order of its
own, and two of them at once deadlocked (SQLite has one writer). Pruning takes it too, so that
no delivery turns pending (a manual retry) between its check and its delete."""


FAIL_PENDING = """UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                         last_error = 'endpoint deleted'
                     WHERE status = 'pending' AND """
"""Fails the pending deliveries the condition that follows it names (those of a deleted endpoint)."""


class DeliveryQueue:
    """The pending deliveries as the dispatcher works on them, over ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._box: SecretBox | None = None

    def keep_secrets_with(self, box: SecretBox) -> None:
        """Seal the secrets written and open those read with ``box`` (the services set it once
        the key pepper is checked against the database's)."""
        self._box = box

    def _secret_box(self) -> SecretBox:
        return required_box(self._box, "webhook secrets")

    def _record(self, row: Row) -> EndpointRecord:
        """The endpoint of ``row`` (:data:`ENDPOINT_COLUMNS`), its secrets opened; raises
        :class:`SecretBoxError` when one does not open."""
        record = endpoint_record(row)
        box, context = self._secret_box(), secret_context(record.id)
        previous = record.previous_secret
        return replace(
            record,
            secret=box.open(record.secret, context),
            previous_secret=None if previous is None else box.open(previous, context),
        )

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
                self._engine.serialize(tx, DELIVERY_UPDATES)
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
            self._engine.serialize(tx, DELIVERY_UPDATES)
            failed = tx.execute(
                FAIL_PENDING
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
            self._engine.serialize(tx, DELIVERY_UPDATES)
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
            self._engine.serialize(tx, DELIVERY_UPDATES)
            return prune_batch(tx, cutoff, after, max_rows, scan)


def _next_due(tx: Tx) -> str | None:
    rows = tx.execute_in_index_order(  # as DeliveryQueue.due's, for the same reason
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


def secret_context(endpoint_id: str) -> str:
    """What an endpoint's secrets are sealed for: that endpoint, so they open nowhere else."""
    return f"webhook endpoint {endpoint_id}"


_DUE_COLUMNS = f"""d.event_id, d.endpoint_id, e.event_type, e.payload, d.attempts, d.round_attempts,
    {ENDPOINT_COLUMNS_P}, d.next_attempt_at"""
"""What :func:`_due` reads, from ``webhook_deliveries d`` joined by :data:`_DUE_JOINS`."""
_DUE_JOINS = """JOIN webhook_events e ON e.id = d.event_id
    JOIN webhook_endpoints p ON p.id = d.endpoint_id"""
