"""Prometheus metrics: one registry per process, scraped at ``/metrics``.

Counters and histograms are module-level, so any layer can record without wiring; gauges
that need the database (queue depth, tree size) are refreshed when ``/metrics`` is scraped.

``serve --workers N`` runs N processes behind one port, and a scrape reaches one of them. Its
workers therefore keep their figures in files (prometheus_client's multiprocess mode, set up
by ``serve`` through ``PROMETHEUS_MULTIPROC_DIR`` before they start), and ``/metrics`` adds up
every worker's: counters only go up, whichever worker answers.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from trueup.core.timestamps import parse_canonical

if TYPE_CHECKING:
    from trueup.storage import Storage

__all__ = [
    "COMMIT_BATCH",
    "COMMIT_SECONDS",
    "HTTP_RESPONSES",
    "INGEST_ITEMS",
    "PACED_SECONDS",
    "PACED_WRITES",
    "PROBE_WAIT_S",
    "QUEUE_AGE",
    "QUEUE_DEPTH",
    "REGISTRY",
    "ROLE_HELD",
    "SEALED_LEAVES",
    "SEAL_SECONDS",
    "TREE_SIZE",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_PRUNED",
    "observe_seal",
    "refresh_database_gauges",
    "render",
    "route_label",
]

REGISTRY = CollectorRegistry(auto_describe=True)

PROBE_WAIT_S = 2.0
"""How long a probe (``/readyz``, ``/metrics``) waits for a database connection: a PostgreSQL
server that is down is reported within it, not after the pool's own 30 s."""

INGEST_ITEMS = Counter(
    "trueup_ingest_items", "Deltas accepted (newly stored) by write route", ["source"], registry=REGISTRY
)
COMMIT_SECONDS = Histogram(
    "trueup_commit_seconds",
    "Duration of one group commit (one transaction, one fsync)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
COMMIT_BATCH = Histogram(
    "trueup_commit_batch_requests",
    "Write requests sharing one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
PACED_WRITES = Counter(
    "trueup_paced_writes",
    "Write requests held back because the queue was at TRUEUP_QUEUE_PACE_DEPTH",
    registry=REGISTRY,
)
PACED_SECONDS = Counter(
    "trueup_paced_seconds", "Time write requests spent held back by queue pacing", registry=REGISTRY
)
# Across workers (see above) a gauge read from the database is the one set last.
QUEUE_DEPTH = Gauge(
    "trueup_queue_depth", "Accepted deltas not yet sealed", registry=REGISTRY, multiprocess_mode="mostrecent"
)
QUEUE_AGE = Gauge(
    "trueup_queue_oldest_age_seconds",
    "Age of the oldest unsealed delta",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
ROLE_HELD = Gauge(
    "trueup_role_held",
    "1 while some process (this one or another, on any host) holds the single-writer role",
    ["role"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
SEAL_SECONDS = Histogram(
    "trueup_seal_seconds",
    "Duration of one seal (claim, hash, sign, store)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
SEALED_LEAVES = Counter("trueup_sealed_leaves", "Leaves appended to the log", registry=REGISTRY)
TREE_SIZE = Gauge(
    "trueup_tree_size", "Size of the newest signed tree head", registry=REGISTRY, multiprocess_mode="max"
)


SEAL_FAILURES = Counter(
    "trueup_seal_failures",
    "Seals that failed (nothing written; tried again after a backoff)",
    registry=REGISTRY,
)


def observe_seal(seconds: float, sealed: int, tree_size: int) -> None:
    """Record one seal (by a sequencer thread, or reported by ``serve``'s sequencer process)."""
    SEAL_SECONDS.observe(seconds)
    SEALED_LEAVES.inc(sealed)
    TREE_SIZE.set(tree_size)


WEBHOOK_ATTEMPTS = Counter(
    "trueup_webhook_attempts", "Webhook delivery attempts by outcome", ["outcome"], registry=REGISTRY
)
WEBHOOK_PENDING = Gauge(
    "trueup_webhook_pending",
    "Webhook deliveries pending: due now, or waiting for a retry",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
WEBHOOK_DUE_AGE = Gauge(
    "trueup_webhook_oldest_due_age_seconds",
    "How long the earliest pending webhook delivery has been due (0 when none is due yet)",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
WEBHOOK_PRUNED = Counter(
    "trueup_webhook_pruned_rows",
    "Rows of webhook_events, webhook_deliveries and webhook_attempts pruned past the retention",
    ["table"],
    registry=REGISTRY,
)
HTTP_RESPONSES = Counter(
    "trueup_http_responses",
    "HTTP responses by route template and status class",
    ["route", "status"],
    registry=REGISTRY,
)


_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


def route_label(route: object) -> str:
    """A route's template as the metrics name it: ``/api/v1/balance/delta/{recordId}``, without
    the converter the router matches it with (``{recordId:record_id}``)."""
    path = getattr(route, "path", None)
    return "unmatched" if not isinstance(path, str) else _CONVERTER.sub(r"{\1}", path)


def render() -> bytes:
    """The registry in the Prometheus text format; under ``serve --workers``, every worker's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY)
    workers = CollectorRegistry()
    multiprocess.MultiProcessCollector(workers, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(workers)


def refresh_database_gauges(storage: Storage) -> None:
    """Set the gauges read from the database (queue, roles, tree size, webhook backlog) before
    a scrape, each read waiting at most :data:`PROBE_WAIT_S` for a connection (a
    ``StorageError`` after it)."""
    probe = storage.probe(PROBE_WAIT_S)
    now = datetime.now(UTC)
    oldest = probe.oldest_queued_at
    QUEUE_DEPTH.set(probe.queue_depth)
    QUEUE_AGE.set(0 if oldest is None else (now - parse_canonical(oldest)).total_seconds())
    pending, due_at = storage.webhooks.backlog(PROBE_WAIT_S)
    WEBHOOK_PENDING.set(pending)
    WEBHOOK_DUE_AGE.set(0 if due_at is None else max(0.0, (now - parse_canonical(due_at)).total_seconds()))
    for role, held in probe.roles_held.items():
        if held is not None:  # not known: the gauge keeps what it last said
            ROLE_HELD.labels(role).set(int(held))
    head = storage.log.head(PROBE_WAIT_S)
    if head is not None:
        TREE_SIZE.set(head.size)
