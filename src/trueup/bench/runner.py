"""One benchmark run: every scenario in turn, one table, written to stdout and ``bench/out``.

A scenario that fails becomes an ``error`` row and the run goes on; PostgreSQL rows become
``skipped`` when no server answers. Everything runs in a temporary directory removed at the
end, and every load is bounded in time; the other deployments, information only, run last and
only within the full run's budget (:attr:`RunPlan.budget_s`), so a full run stays under 15
minutes and ``--quick`` under 2 on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trueup.bench import postgres
from trueup.bench.deployments import DefaultFigures, worker_rows
from trueup.bench.ledger import ledger_rows, measure_ledger
from trueup.bench.machine import harness_peak_rss_kib, machine_info, rss_rows
from trueup.bench.merkle import inclusion_rows, sealing_rows
from trueup.bench.report import Report, Row
from trueup.bench.server import HARNESS_ENV, server_environment
from trueup.bench.write_rows import postgres_write_rows, sqlite_write_rows
from trueup.bench.writes import WritePlan

__all__ = ["FULL", "QUICK", "RunPlan", "run_benchmarks"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """The sizes and durations of one run."""

    name: str
    seal_leaves: int
    seal_repeats: int
    proof_leaves: int
    proof_samples: int
    writes: WritePlan
    ledger_deltas: int
    ledger_budget_s: float
    ledger_http_s: float
    other_deployments: bool = True
    """Whether to measure ``serve --committer process``, ``serve --sequencer thread`` and
    ``serve --workers 2`` too, each beside a default load of its own: rows of information,
    which the quick run leaves out to stay well under 2 minutes."""
    budget_s: float | None = None
    """Time for the whole run: the other deployments (measured last, being information only)
    are left out, each with rows that say so, where their loads would pass it."""


FULL = RunPlan(
    name="full",
    budget_s=14 * 60.0,  # the limit is 15 minutes
    seal_leaves=200_000,
    seal_repeats=3,
    proof_leaves=10_000_000,
    proof_samples=100_000,
    writes=WritePlan(
        batched_s=20.0,
        single_s=20.0,
        latency_s=30.0,
        warmup_s=2.0,
        ceiling_s=5.0,
        raw_requests=200,
        drain_timeout_s=20.0,
    ),
    ledger_deltas=1_000_000,
    ledger_budget_s=4.0,
    ledger_http_s=5.0,
)

QUICK = RunPlan(
    name="quick",
    seal_leaves=50_000,
    seal_repeats=3,
    proof_leaves=1_000_000,
    proof_samples=20_000,
    writes=WritePlan(
        batched_s=5.0,
        single_s=5.0,
        latency_s=6.0,
        warmup_s=1.0,
        ceiling_s=2.0,
        raw_requests=50,
        drain_timeout_s=5.0,
    ),
    ledger_deltas=100_000,
    ledger_budget_s=0.25,
    ledger_http_s=2.0,
    other_deployments=False,
)


class _Sections:
    """Runs the parts of the report in order, timing each and turning failures into rows."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def run(self, name: str, body: Callable[[], list[Row]], failed_row: str) -> list[Row]:
        print(f"trueup bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            rows = body()
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' rows
            traceback.print_exc(file=sys.stderr)
            rows = [Row.not_measured(failed_row, "", error=f"{type(exc).__name__}: {exc}"[:300])]
        self.report.sections.append((name, time.perf_counter() - started))
        return rows


def run_benchmarks(plan: RunPlan, out_dir: Path) -> Report:
    """Run every scenario of ``plan``; print the table and write ``latest.md``/``latest.json``."""
    started = time.perf_counter()
    pg_url = postgres.base_url()
    pg_version = None if postgres.unreachable_reason(pg_url) else postgres.server_version(pg_url)
    scope = "" if plan.other_deployments else "; default deployment only"
    title = f"trueup bench ({plan.name}{scope}) — {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    report = Report(title=title, mode=plan.name, machine=machine_info(pg_version))
    stripped = server_environment(os.environ, HARNESS_ENV)[1]
    if stripped:
        report.machine["left out of the servers' environment"] = ", ".join(stripped)
    sections = _Sections(report)
    rss: dict[str, int] = {}
    hashlib_rate: list[float] = []

    def sealing() -> list[Row]:
        rows, bound = sealing_rows(plan.seal_leaves, plan.seal_repeats)
        hashlib_rate.append(bound)
        return rows

    with tempfile.TemporaryDirectory(prefix="trueup-bench-") as temporary:
        work = Path(temporary)
        seal = sections.run("sealing (in memory)", sealing, "sealing")
        proof = sections.run(
            "inclusion proofs",
            lambda: inclusion_rows(plan.proof_leaves, plan.proof_samples),
            "inclusion proof",
        )

        def sqlite_writes() -> list[Row]:
            rows, _ = sqlite_write_rows(work, plan.writes, rss)
            return rows

        sqlite_rows = sections.run("writes over HTTP, SQLite", sqlite_writes, "writes over HTTP, SQLite")
        pg_rows = sections.run(
            "writes over HTTP, PostgreSQL",
            lambda: postgres_write_rows(
                work, plan.writes, rss, DefaultFigures.of(sqlite_rows).single_req_per_s
            ),
            "writes over HTTP, PostgreSQL",
        )

        def ledger() -> list[Row]:
            timings = measure_ledger(work, plan.ledger_deltas, plan.ledger_budget_s, plan.ledger_http_s)
            rss[f"server, derive/compare ({plan.ledger_deltas:,} deltas)"] = timings.server_rss_kib or 0
            return ledger_rows(timings, hashlib_rate[0] if hashlib_rate else None)

        ledger_part = sections.run("derive and compare at scale", ledger, "derive and compare")

        # Last, being information only: what the time budget leaves room for.
        workers_part: list[Row] = []
        if plan.other_deployments:
            deadline = None if plan.budget_s is None else started + plan.budget_s
            workers_part = sections.run(
                "writes over HTTP, other deployments",
                lambda: worker_rows(
                    work, plan.writes, DefaultFigures.of(sqlite_rows), deadline, time.perf_counter
                ),
                "writes over HTTP, other deployments",
            )
    # The table follows the order of DESIGN.md §6.
    batched_sqlite = [row for row in sqlite_rows if row.name.startswith("batched writes, SQLite")]
    rest_sqlite = [row for row in sqlite_rows if row not in batched_sqlite]
    batched_pg = [row for row in pg_rows if row.name.startswith("batched writes, PostgreSQL")]
    rest_pg = [row for row in pg_rows if row not in batched_pg]
    report.add([*batched_sqlite, *batched_pg, *rest_sqlite, *rest_pg, *workers_part, *seal])
    report.add([row for row in ledger_part if row.name.startswith("sealing")])
    report.add(proof)
    report.add([row for row in ledger_part if not row.name.startswith("sealing")])
    report.add(rss_rows(rss, harness_peak_rss_kib()))
    report.total_seconds = time.perf_counter() - started
    _write(report, out_dir)
    return report


def _write(report: Report, out_dir: Path) -> None:
    sys.stdout.write(report.text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.md").write_text(report.markdown(), encoding="utf-8")
    (out_dir / "latest.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {out_dir / 'latest.md'}, {out_dir / 'latest.json'}", flush=True)
