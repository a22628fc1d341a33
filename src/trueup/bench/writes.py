"""Write benchmarks over HTTP against the real server: batched and single-item (accepted→verified
is :mod:`trueup.bench.verified_latency`).

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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from trueup.bench.load import run_load_process
from trueup.bench.loadspec import LoadResult, LoadSpec
from trueup.bench.reference import raw_insert_seconds
from trueup.bench.server import HOST, ServerUnderTest, free_port, provision_key
from trueup.bench.workload import batch_template, delta_rows, single_template

__all__ = [
    "WritePlan",
    "batched",
    "ceiling",
    "fresh_sqlite",
    "raw_insert_rate",
    "single",
    "start_server",
]

_REQUEST_ID = "data.requestId"
"""Where a 202 reply of ``POST /api/v1/writes`` holds the request's id."""


@dataclass(frozen=True, slots=True)
class WritePlan:
    """How long each write load runs (seconds) and how big the references are."""

    batched_s: float
    single_s: float
    latency_s: float
    warmup_s: float
    ceiling_s: float
    raw_requests: int
    raw_runs: int = 3
    """Runs of the raw ``executemany`` reference, each into a fresh table; the best counts."""
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
    head_poll_s: float = 0.002
    """How often the accepted->verified load's :class:`HeadWatcher` reads the newest tree size."""


def raw_insert_rate(
    fresh: Callable[[int], AbstractContextManager[str]], tenant_id: str, requests: int, runs: int = 3
) -> float:
    """Rows/s of one ``executemany`` of ``requests`` x 1,000 batched-write rows: the best of
    ``runs``, each into the empty database ``fresh(run)`` gives (a URL, valid in its block)."""
    rows = delta_rows(tenant_id, requests)
    best = math.inf
    for run in range(runs):
        with fresh(run) as url:
            best = min(best, raw_insert_seconds(url, rows))
    return len(rows) / best


@contextmanager
def fresh_sqlite(directory: Path, run: int) -> Iterator[str]:
    """The URL of a new SQLite file in ``directory``, removed (with its WAL and lock files)
    after the block."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"raw-{run}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for leftover in directory.glob(f"{path.name}*"):
            leftover.unlink(missing_ok=True)


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
