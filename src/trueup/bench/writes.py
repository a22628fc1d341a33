"""Write benchmarks over HTTP against the real server: batched, single-item, accepted→verified.

Each figure gets its own server process and an empty database, so one scenario's backlog
never slows the next. The load comes from a separate process (:mod:`trueup.bench.load`).
The references are measured in the same run: the raw ``executemany`` rate of the same rows
into an empty copy of the schema, and the load generator's own ceiling against a server that
does nothing (:mod:`trueup.bench.echo`).
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from trueup.bench.load import run_load_process
from trueup.bench.loadspec import LoadResult, LoadSpec
from trueup.bench.reference import raw_insert_seconds
from trueup.bench.server import HOST, ServerUnderTest, free_port, provision_key
from trueup.bench.stats import Summary, summarize
from trueup.bench.workload import batch_template, delta_rows, single_template
from trueup.core.timestamps import parse_canonical
from trueup.storage import open_storage

__all__ = [
    "LatencyOutcome",
    "WritePlan",
    "batched",
    "ceiling",
    "raw_insert_rate",
    "single",
    "start_server",
    "verified_latency",
]

_REQUEST_ID = r'"requestId":"([^"]+)"'


@dataclass(frozen=True, slots=True)
class WritePlan:
    """How long each write load runs (seconds) and how big the references are."""

    batched_s: float
    single_s: float
    latency_s: float
    warmup_s: float
    ceiling_s: float
    raw_requests: int
    batch_connections: int = 8
    single_clients: int = 64
    latency_connections: int = 256
    """Connections of the open-loop accepted->verified load: each holds one request at a time, so
    they must outnumber the rate times a request's time, which a seal holding SQLite's writer
    (about 50 ms a seal at that load) stretches. With 64, a fast machine's SQLite server was
    offered 12,625 items/s as 7-item writes and was sent 12,022 (24,264 sends late, 202 p50
    150 ms); with 256, 12,607 (232 late, 202 p50 17 ms), on 2026-12-04."""
    latency_readback: int = 20_000
    drain_timeout_s: float = 15.0


@dataclass(slots=True)
class LatencyOutcome:
    """Accepted→verified at an offered rate, in milliseconds, and the queue it caused."""

    offered_items_per_s: float
    items_per_request: int
    load_connections: int
    load: LoadResult
    send_to_verified: Summary
    """From the request's scheduled send (includes any wait in the client for a late send)."""
    reply_to_verified: Summary
    """From the 202 reaching the client: accepted as the client sees it."""
    accepted_to_verified: Summary
    """The server's own ``acceptedAt`` → ``verifiedAt``."""
    unverified: int
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


def raw_insert_rate(database_url: str, tenant_id: str, requests: int) -> float:
    """Rows/s of one ``executemany`` of ``requests`` x 1,000 batched-write rows."""
    rows = delta_rows(tenant_id, requests)
    return len(rows) / raw_insert_seconds(database_url, rows)


def ceiling(plan: WritePlan) -> LoadResult:
    """The load generator's single-item rate against :mod:`trueup.bench.echo` (same clients)."""
    port = free_port()
    echo = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "trueup.bench.echo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()  # "ready"
        spec = LoadSpec(
            HOST,
            port,
            single_template("pk_live_x.y"),
            plan.single_clients,
            plan.ceiling_s,
            warmup_s=0.5,
            tag="e",
        )
        return run_load_process(spec)
    finally:
        echo.kill()
        echo.wait(timeout=10)


def batched(server: ServerUnderTest, api_key: str, plan: WritePlan, label: str) -> LoadResult:
    """Closed loop of 1,000-item writes from ``plan.batch_connections`` clients."""
    spec = LoadSpec(
        HOST,
        server.port,
        batch_template(api_key),
        plan.batch_connections,
        plan.batched_s,
        warmup_s=plan.warmup_s,
        tag=label,
        watch=server.processes(),
        postgres_url=server.database_url if (server.database_url or "").startswith("postgres") else None,
    )
    return run_load_process(spec)


def single(server: ServerUnderTest, api_key: str, plan: WritePlan) -> LoadResult:
    """Closed loop of single-item writes from ``plan.single_clients`` clients."""
    spec = LoadSpec(
        HOST,
        server.port,
        single_template(api_key),
        plan.single_clients,
        plan.single_s,
        warmup_s=plan.warmup_s,
        tag="s",
        watch=server.processes(),
    )
    return run_load_process(spec)


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
    requests themselves are not what is measured. After the run the server is stopped and
    each request's ``verifiedAt`` and ``acceptedAt`` are read from its database.
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
        id_pattern=_REQUEST_ID,
    )
    sampler = _DepthSampler(server)
    sampler.origin = time.monotonic() + plan.warmup_s
    sampler.start()
    try:
        load = run_load_process(spec)
        ended = time.monotonic()
        drain_s = _wait_drained(server, ended, plan.drain_timeout_s)
    finally:
        sampler.stop()
    seals = server.seal_seconds()
    server.stop()
    send, reply, accepted, unverified = _read_back(server, tenant_id, load.records, plan.latency_readback)
    return LatencyOutcome(
        offered_items_per_s=items_per_s,
        items_per_request=per_request,
        load_connections=plan.latency_connections,
        load=load,
        send_to_verified=send,
        reply_to_verified=reply,
        accepted_to_verified=accepted,
        unverified=unverified,
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


def _read_back(
    server: ServerUnderTest, tenant_id: str, records: list[tuple[float, float, int, str]], limit: int
) -> tuple[Summary, Summary, Summary, int]:
    """send→verified, 202 received→verified and acceptedAt→verifiedAt (ms) of up to ``limit``
    accepted requests, and how many of them were not verified."""
    accepted = [record for record in records if record[2] == 202 and record[3]]
    step = max(1, len(accepted) // limit)
    url = server.database_url or f"sqlite:///{server.data_dir / 'trueup.db'}"
    storage = open_storage(url, pool_size=2, run_migrations=False)
    send_ms: list[float] = []
    reply_ms: list[float] = []
    server_ms: list[float] = []
    unverified = 0
    try:
        for sent, replied, _, request_id in accepted[::step]:
            view = storage.writes.request(tenant_id, request_id, 1, 0)
            if view is None or view.verified_at is None:
                unverified += 1
                continue
            verified = parse_canonical(view.verified_at).timestamp()
            send_ms.append((verified - sent) * 1000.0)
            reply_ms.append((verified - replied) * 1000.0)
            server_ms.append((verified - parse_canonical(view.accepted_at).timestamp()) * 1000.0)
    finally:
        storage.close()
    return summarize(send_ms), summarize(reply_ms), summarize(server_ms), unverified


def start_server(
    data_dir: Path,
    database_url: str | None = None,
    workers: int = 1,
    sequencer: str | None = None,
    committer: str | None = None,
) -> tuple[ServerUnderTest, str, str]:
    """A fresh server with a benchmark key: ``(server, api key, tenant id)``."""
    key, principal = provision_key(data_dir, database_url)
    server = ServerUnderTest(
        data_dir, database_url, workers=workers, sequencer=sequencer, committer=committer
    )
    return server.start(), key, principal.tenant_id
