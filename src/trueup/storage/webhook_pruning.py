"""Pruning the webhook tables: events past their retention whose deliveries are all finished.

An event is pruned, with its deliveries and their attempts, once it happened (``created_at``)
before the cutoff and none of its deliveries is pending (each is delivered, or failed for
good). A pending delivery, due now or waiting for a retry, keeps its event however old it is;
the event goes at the first pass after it finishes. An event with no delivery at all (none is
written today: the outbox writes an event only for an endpoint that takes it) goes once it is
past the cutoff.

The dispatcher prunes in batches, one transaction each, so no batch holds SQLite's one writer
lock or a PostgreSQL transaction for long: a batch examines at most ``scan`` events, oldest
first from a cursor (``created_at``, ``id``) through the index ``webhook_events_created``
(migration 13), and deletes the finished ones among them until ``max_rows`` rows (events,
deliveries and attempts together) would be passed. The caller holds the transaction and
serialises it with every other change of a delivery's status (see
:meth:`trueup.storage.webhook_queue.DeliveryQueue.prune`), so a delivery cannot turn pending (a
manual retry) between the check and the delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from trueup.storage.engine import Tx

__all__ = ["PRUNE_ROWS", "PRUNE_SCAN", "PrunedBatch", "prune_batch"]

PRUNE_ROWS = 2_000
"""At most this many rows deleted by one batch (events, deliveries and attempts together);
an event whose own rows pass it alone (20 endpoints with 11 attempts each: 241) is still
pruned, in a batch of its own."""
PRUNE_SCAN = 1_000
"""At most this many events examined by one batch, pruned or not."""


@dataclass(frozen=True, slots=True)
class PrunedBatch:
    """What one batch deleted, and where the next one starts.

    ``resume_after``: ``(created_at, id)`` of the last event this batch examined, to pass to the
    next batch; ``None`` when every event before the cutoff has been examined (the pass is over).
    """

    events: int
    deliveries: int
    attempts: int
    resume_after: tuple[str, str] | None

    @property
    def rows(self) -> int:
        return self.events + self.deliveries + self.attempts


_CANDIDATES = """SELECT e.id, e.created_at,
       (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending'),
       (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.event_id = e.id),
       (SELECT COUNT(*) FROM webhook_attempts a WHERE a.event_id = e.id)
  FROM webhook_events e
 WHERE e.created_at < ?{after}
 ORDER BY e.created_at, e.id LIMIT ?"""
# Written as a range on created_at and a tie-break on id (not a row value), which both
# planners turn into one range scan of webhook_events_created.
_AFTER = " AND e.created_at >= ? AND (e.created_at > ? OR e.id > ?)"


def prune_batch(
    tx: Tx, cutoff: str, after: tuple[str, str] | None, max_rows: int = PRUNE_ROWS, scan: int = PRUNE_SCAN
) -> PrunedBatch:
    """Inside ``tx``: delete the finished events created before ``cutoff`` (canonical time)
    that come after ``after`` in (``created_at``, ``id``) order, oldest first, with their
    deliveries and attempts, up to ``max_rows`` rows and ``scan`` events examined."""
    params: list[object] = [cutoff]
    if after is not None:
        params += [after[0], after[0], after[1]]
    params.append(scan)
    rows = tx.execute(_CANDIDATES.format(after=_AFTER if after is not None else ""), params)
    chosen: list[str] = []
    budget = 0
    last: tuple[str, str] | None = None
    for event_id, created_at, pending, deliveries, attempts in rows:
        cost = 1 + int(deliveries) + int(attempts)
        if int(pending) == 0:
            if chosen and budget + cost > max_rows:
                break  # the next batch starts with this event
            chosen.append(str(event_id))
            budget += cost
        last = (str(created_at), str(event_id))
    finished = len(rows) < scan and (not rows or last == (str(rows[-1][1]), str(rows[-1][0])))
    counts = _delete(tx, chosen) if chosen else (0, 0, 0)
    return PrunedBatch(*counts, resume_after=None if finished else last)


def _delete(tx: Tx, event_ids: list[str]) -> tuple[int, int, int]:
    """Delete the events ``event_ids``, their deliveries and attempts; the counts of each."""
    attempts_match, params = tx.one_of("event_id", event_ids, "text")
    ids_match, _ = tx.one_of("id", event_ids, "text")
    attempts = tx.execute(f"DELETE FROM webhook_attempts WHERE {attempts_match} RETURNING attempt", params)
    deliveries = tx.execute(f"DELETE FROM webhook_deliveries WHERE {attempts_match} RETURNING seq", params)
    events = tx.execute(f"DELETE FROM webhook_events WHERE {ids_match} RETURNING id", params)
    return len(events), len(deliveries), len(attempts)
