"""Accepted→verified over HTTP against the real server: how long a write waits, from its 202 (and
from the server's ``acceptedAt``) until the seal that holds it is committed, at an offered rate.

The load is open loop (:mod:`trueup.bench.load`) at half the batched rate; a reader of its own
(:class:`HeadWatcher`) polls the database for each new tree head, so a request reads as verified
when a reader could first see its seal committed (DESIGN.md §1: signed and durably stored).
"""

from __future__ import annotations

import bisect
import math
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from trueup.bench.load import run_load_process
from trueup.bench.loadspec import LoadResult, LoadSpec
from trueup.bench.server import HOST, ServerUnderTest
from trueup.bench.stats import Summary, summarize
from trueup.bench.workload import single_template
from trueup.bench.writes import WritePlan
from trueup.core.timestamps import parse_canonical
from trueup.storage import open_storage, sqlite_path
from trueup.storage.write_views import RequestView

__all__ = ["HeadWatcher", "LatencyOutcome", "ReadBack", "first_seen_at", "reading", "verified_latency"]

_REQUEST_ID = "data.requestId"
"""Where a 202 reply of ``POST /api/v1/writes`` holds the request's id."""


@dataclass(slots=True)
class LatencyOutcome:
    """Accepted→verified at an offered rate, in milliseconds, and the queue it caused."""

    offered_items_per_s: float
    items_per_request: int
    load_connections: int
    load: LoadResult
    reply_to_committed: Summary
    """From the 202 reaching the client to the request's seal seen committed by a reader
    (:class:`HeadWatcher`): the judged reading, verified as DESIGN.md §1 means it."""
    accepted_to_committed: Summary
    """From the server's ``acceptedAt`` to the same commit seen by a reader."""
    send_to_verified: Summary
    """From the request's scheduled send (includes any wait in the client for a late send) to
    ``verifiedAt``."""
    reply_to_verified: Summary
    """From the 202 reaching the client to ``verifiedAt`` (stamped before the seal commits)."""
    accepted_to_verified: Summary
    """The server's own ``acceptedAt`` → ``verifiedAt``."""
    unverified: int
    """Requests read back that were not verified, or whose seal the watcher never saw committed."""
    head_poll_s: float = 0.0
    depths: list[tuple[float, int]] = field(default_factory=list)
    drain_s: float | None = None
    seals: tuple[float, int] | None = None
    """``(total seconds, count)`` of the server's seals over the run (``/metrics``): a delta's
    ``verifiedAt`` is taken when its seal signs the tree head, and it is readable as verified
    once that seal commits, within one seal's time."""

    @property
    def max_depth(self) -> int:
        return max((depth for _, depth in self.depths), default=0)

    def growing(self) -> bool:
        """Whether the queue grew over the run: the mean depth of its last third is above
        twice that of its first third plus two seal batches."""
        during = [depth for at, depth in self.depths if at >= 0]
        if len(during) < 6:
            return False
        third = len(during) // 3
        first = sum(during[:third]) / third
        last = sum(during[-third:]) / third
        return last > 2 * first + 2_000


class _DepthSampler(threading.Thread):
    """Polls ``/readyz`` for the queue depth every ``interval_s`` until stopped."""

    def __init__(self, server: ServerUnderTest, interval_s: float = 0.25) -> None:
        super().__init__(name="bench-queue-depth", daemon=True)
        self._server = server
        self._interval = interval_s
        self._stop_event = threading.Event()
        self.origin = time.monotonic()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self._stop_event.is_set():
            depth = self._server.queue_depth()
            if depth is not None:
                self.samples.append((time.monotonic() - self.origin, depth))
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def first_seen_at(seen: list[tuple[int, float]], size: int) -> float | None:
    """When the first tree head of at least ``size`` leaves was seen committed.

    ``seen`` holds ``(tree size, wall-clock seconds first seen)`` in ascending size (as
    :class:`HeadWatcher` records them); ``None`` when no head that large was seen.
    """
    at = bisect.bisect_left(seen, (size, -math.inf))
    return seen[at][1] if at < len(seen) else None


class _Connection(Protocol):
    def execute(self, sql: str) -> Any: ...

    def close(self) -> None: ...


def _read_only_connection(database_url: str) -> _Connection:
    """A connection that only reads, in autocommit: SQLite's file opened read-only, or a
    PostgreSQL session."""
    path = sqlite_path(database_url)
    if path is not None:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    return psycopg.connect(database_url, autocommit=True)


class HeadWatcher(threading.Thread):
    """Reads the newest tree size (``MAX(tree_size)`` of ``tree_heads``) every ``interval_s``
    through a read-only connection of its own, and records when each new size was first seen.

    A head a reader sees is signed and durably stored, so the time a request's seal is first
    seen is when it was verified as DESIGN.md §1 defines it, late by at most one interval (plus
    the query): a conservative reading. Times are ``time.time()`` just after the query returns,
    the clock of the load's records.
    """

    def __init__(self, database_url: str, interval_s: float = 0.002) -> None:
        super().__init__(name="bench-head-watcher", daemon=True)
        self._url = database_url
        self._interval = interval_s
        self._stop_event = threading.Event()
        self.seen: list[tuple[int, float]] = []
        self.polls = 0
        self.failures = 0
        self.last_failure = ""

    def run(self) -> None:
        # One statement a poll on a plain connection in autocommit, read-only: no engine, whose
        # SQLite side would also run a WAL checkpointer of its own against the server's file
        # (racing the server's, and doing its copying in this process), and whose reads are
        # three statements (four round trips on PostgreSQL) where one will do.
        with closing(_read_only_connection(self._url)) as conn:
            while not self._stop_event.is_set():
                self._poll(conn)
                self._stop_event.wait(self._interval)
            # Once more after being told to stop: a head committed since the last poll (the
            # drain's last seal, say) is seen, late, rather than its requests read as unverified.
            self._poll(conn)

    def _poll(self, conn: _Connection) -> None:
        try:
            row = conn.execute("SELECT MAX(tree_size) FROM tree_heads").fetchone()
        except (sqlite3.Error, psycopg.Error) as exc:  # a missed poll only makes the readings later
            self.failures += 1
            self.last_failure = f"{type(exc).__name__}: {exc}"
            return
        size = None if row is None else row[0]
        seen_at = time.time()
        self.polls += 1
        if size is not None and (not self.seen or int(size) > self.seen[-1][0]):
            self.seen.append((int(size), seen_at))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def verified_latency(
    server: ServerUnderTest,
    api_key: str,
    tenant_id: str,
    items_per_s: float,
    single_req_per_s: float,
    plan: WritePlan,
) -> LatencyOutcome:
    """Offer ``items_per_s`` as small writes (open loop) and time each one until verified.

    Requests carry one item unless that rate of single-item requests would exceed half of
    what the server answered in the single-item figure; then ``k`` items each, so the
    requests themselves are not what is measured. A :class:`HeadWatcher` records when each
    tree head is first seen committed, through the load and its drain. After the run the server
    is stopped and each request's ``acceptedAt``, ``verifiedAt`` and sealing tree size are read
    from its database; its seal counts as committed when the first head at least that large was
    seen.
    """
    per_request = max(1, math.ceil(items_per_s / max(1.0, 0.5 * single_req_per_s)))
    spec = LoadSpec(
        HOST,
        server.port,
        # As many customers as the single-item load has clients, whatever the connections.
        single_template(api_key, per_request, customers=plan.single_clients),
        plan.latency_connections,
        plan.latency_s,
        warmup_s=plan.warmup_s,
        rate_per_s=items_per_s / per_request,
        tag="v",
        record=True,
        id_field=_REQUEST_ID,
    )
    sampler = _DepthSampler(server)
    sampler.origin = time.monotonic() + plan.warmup_s
    watcher = HeadWatcher(_database_url(server), plan.head_poll_s)
    watcher.start()
    sampler.start()
    try:
        load = run_load_process(spec)
        ended = time.monotonic()
        drain_s = _wait_drained(server, ended, plan.drain_timeout_s)
    finally:
        sampler.stop()
        watcher.stop()
    seals = server.seal_seconds()
    server.stop()
    readings = _read_back(server, tenant_id, load.records, plan.latency_readback, watcher.seen)
    return LatencyOutcome(
        offered_items_per_s=items_per_s,
        items_per_request=per_request,
        load_connections=plan.latency_connections,
        load=load,
        reply_to_committed=readings.reply_to_committed,
        accepted_to_committed=readings.accepted_to_committed,
        send_to_verified=readings.send_to_verified,
        reply_to_verified=readings.reply_to_verified,
        accepted_to_verified=readings.accepted_to_verified,
        unverified=readings.unverified,
        head_poll_s=plan.head_poll_s,
        depths=[(at, depth) for at, depth in sampler.samples if at <= plan.latency_s],
        drain_s=drain_s,
        seals=seals,
    )


def _wait_drained(server: ServerUnderTest, since: float, timeout_s: float) -> float | None:
    while time.monotonic() - since < timeout_s:
        if server.queue_depth() == 0:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def _database_url(server: ServerUnderTest) -> str:
    return server.database_url or f"sqlite:///{server.data_dir / 'trueup.db'}"


@dataclass(frozen=True, slots=True)
class ReadBack:
    """What :func:`_read_back` found, in milliseconds."""

    reply_to_committed: Summary
    accepted_to_committed: Summary
    send_to_verified: Summary
    reply_to_verified: Summary
    accepted_to_verified: Summary
    unverified: int


def _read_back(
    server: ServerUnderTest,
    tenant_id: str,
    records: list[tuple[float, float, int, str]],
    limit: int,
    seen: list[tuple[int, float]],
) -> ReadBack:
    """Up to ``limit`` accepted requests read back from the server's database: their seal seen
    committed (``seen``, from :class:`HeadWatcher`) and their ``verifiedAt``, each from the 202
    and from ``acceptedAt``. A request not verified, or whose seal was never seen committed,
    counts as unverified."""
    accepted = [record for record in records if record[2] == 202 and record[3]]
    step = max(1, len(accepted) // limit)
    storage = open_storage(_database_url(server), pool_size=2, run_migrations=False, checkpoint_wal=False)
    views = []
    try:
        for sent, replied, _, request_id in accepted[::step]:
            views.append((sent, replied, storage.writes.request(tenant_id, request_id, 1, 0)))
    finally:
        storage.close()
    return reading(views, seen)


def reading(views: list[tuple[float, float, RequestView | None]], seen: list[tuple[int, float]]) -> ReadBack:
    """The readings of :func:`_read_back` from ``(scheduled send, 202 received, view)`` per
    request (wall-clock seconds) and the heads ``seen`` committed."""
    committed_ms: list[float] = []
    accepted_committed_ms: list[float] = []
    send_ms: list[float] = []
    reply_ms: list[float] = []
    server_ms: list[float] = []
    unverified = 0
    for sent, replied, view in views:
        if view is None or view.verified_at is None or view.sealed_size is None:
            unverified += 1
            continue
        committed = first_seen_at(seen, view.sealed_size)
        if committed is None:
            unverified += 1
            continue
        accepted_at = parse_canonical(view.accepted_at).timestamp()
        verified = parse_canonical(view.verified_at).timestamp()
        committed_ms.append((committed - replied) * 1000.0)
        accepted_committed_ms.append((committed - accepted_at) * 1000.0)
        send_ms.append((verified - sent) * 1000.0)
        reply_ms.append((verified - replied) * 1000.0)
        server_ms.append((verified - accepted_at) * 1000.0)
    return ReadBack(
        reply_to_committed=summarize(committed_ms),
        accepted_to_committed=summarize(accepted_committed_ms),
        send_to_verified=summarize(send_ms),
        reply_to_verified=summarize(reply_ms),
        accepted_to_verified=summarize(server_ms),
        unverified=unverified,
    )
