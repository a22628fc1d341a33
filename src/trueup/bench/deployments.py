"""The other deployments: ``serve --committer process`` (group commits in a child process),
``serve --sequencer thread`` (API and sequencer sharing one process) and ``serve --workers 2``,
each load run beside the same load against a fresh default server. Information only: the
targets are judged on the default server (:mod:`.write_rows`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from trueup.bench import postgres
from trueup.bench.cpu import LOAD_GENERATOR
from trueup.bench.load_figures import accepted_items_per_s, accepted_req_per_s, queue_note, replies_note
from trueup.bench.loadspec import LoadResult
from trueup.bench.report import Row, fmt_ms, fmt_rate, fmt_times, fmt_us
from trueup.bench.writes import WritePlan, batched, single, start_server

__all__ = ["DefaultFigures", "single_spread_row", "worker_rows"]

_T = TypeVar("_T")

WORKERS = 2

_SQLITE_SETUPS = (
    # (as the report names it, data directory, --workers, --sequencer, --committer)
    ("serve --committer process", "committer-process", 1, None, "process"),
    ("serve --sequencer thread", "thread", 1, "thread", None),
    (f"serve --workers {WORKERS}", "workers", WORKERS, None, None),
)


@dataclass(frozen=True, slots=True)
class DefaultFigures:
    """The default ``trueup serve``'s single-item figures in the same run: they size the
    PostgreSQL latency load and open the list of every default single-item load."""

    single_req_per_s: float | None
    single_p99_ms: float | None

    @classmethod
    def of(cls, sqlite_rows: list[Row]) -> DefaultFigures:
        def number(prefix: str, key: str) -> float | None:
            found = [
                row.numbers[key] for row in sqlite_rows if row.name.startswith(prefix) and key in row.numbers
            ]
            return float(found[0]) if found else None

        return cls(
            single_req_per_s=number("single-item writes", "req_per_s"),
            single_p99_ms=number("single-item writes", "p99_ms"),
        )


def _versus(value: float, reference: float, show: str) -> tuple[str, str]:
    """``(reference column, ratio column)`` against the default server measured beside it."""
    if not reference:
        return "default serve beside it: nothing accepted", ""
    return f"default serve beside it {show}", fmt_times(value / reference)


def _speed_note(other: LoadResult, default: LoadResult) -> str:
    """The load generator's CPU per request in both loads: the same work, so how fast the
    machine was during each (absent when CPU was not read)."""
    mine, theirs = other.cpu.get(LOAD_GENERATOR), default.cpu.get(LOAD_GENERATOR)
    if not mine or not theirs or not other.ok(202) or not default.ok(202):
        return ""
    return (
        f"; load generator CPU per request {fmt_us(mine * 1e6 / other.ok(202))} here, "
        f"{fmt_us(theirs * 1e6 / default.ok(202))} beside it"
    )


def _versus_batched_row(
    backend: str, setup: str, result: LoadResult, queued_after: int | None, default: LoadResult
) -> Row:
    rate, reference = accepted_items_per_s(result), accepted_items_per_s(default)
    shown, ratio = _versus(rate, reference, fmt_rate(reference, "items/s"))
    return Row(
        name=f"batched writes, {backend}, {setup}",
        value=fmt_rate(rate, "items/s"),
        reference=shown,
        ratio=ratio,
        note=(
            f"{backend}, {setup}: {result.completed:,} requests, request p50 "
            f"{fmt_ms(result.latency_ms.p50)} p99 {fmt_ms(result.latency_ms.p99)}; {replies_note(result)}; "
            f"{queue_note(queued_after)}{_speed_note(result, default)}"
        ),
        numbers={"items_per_s": rate, "default_items_per_s": reference, "queued_after": queued_after},
    )


def _single_versus_rows(result: LoadResult, default: LoadResult, plan: WritePlan, setup: str) -> list[Row]:
    rate, reference = accepted_req_per_s(result), accepted_req_per_s(default)
    shown, ratio = _versus(rate, reference, fmt_rate(reference, "req/s"))
    p99 = result.latency_ms.p99
    return [
        Row(
            name=f"single-item writes, {plan.single_clients} clients, SQLite, {setup}",
            value=fmt_rate(rate, "req/s"),
            reference=shown,
            ratio=ratio,
            note=f"{result.completed:,} requests; {replies_note(result)}{_speed_note(result, default)}",
            numbers={"req_per_s": rate, "default_req_per_s": reference},
        ),
        Row(
            name=f"single-item writes, SQLite, {setup}: p50 / p99 latency",
            value=f"{fmt_ms(result.latency_ms.p50)} / {fmt_ms(p99)}",
            reference=(
                f"default serve beside it {fmt_ms(default.latency_ms.p50)} / {fmt_ms(default.latency_ms.p99)}"
            ),
            numbers={
                "p50_ms": result.latency_ms.p50,
                "p99_ms": p99,
                "default_p50_ms": default.latency_ms.p50,
                "default_p99_ms": default.latency_ms.p99,
            },
        ),
    ]


def single_spread_row(judged: DefaultFigures, beside: list[LoadResult], plan: WritePlan) -> Row:
    """Every single-item load of the default server in this run: the one the targets are judged
    on (when it was measured), then those beside the other deployments, later in the run."""
    name = f"single-item writes, {plan.single_clients} clients, default serve, every load of this run"
    loads = [(accepted_req_per_s(result), result.latency_ms.p99) for result in beside]
    if judged.single_req_per_s is not None and judged.single_p99_ms is not None:
        loads.insert(0, (judged.single_req_per_s, judged.single_p99_ms))
        order = "first for the target rows, then beside each other deployment"
    else:
        order = "beside each other deployment (the load for the target rows was not measured)"
    if not loads:
        return Row.not_measured(name, "", error="no default single-item load was measured")
    rates, p99s = [rate for rate, _ in loads], [p99 for _, p99 in loads]
    return Row(
        name=name,
        value=f"{fmt_rate(min(rates), 'req/s')} to {fmt_rate(max(rates), 'req/s')}",
        reference=f"p99 {fmt_ms(min(p99s))} to {fmt_ms(max(p99s))}",
        ratio=f"{len(loads)} loads",
        note=(
            f"the same load against a fresh default server, {order}; in order, req/s and p99: "
            + ", ".join(f"{rate:,.0f} ({fmt_ms(p99)})" for rate, p99 in loads)
        ),
        numbers={"req_per_s": rates, "p99_ms": p99s},
    )


def _side_by_side(default_first: bool, default: Callable[[], _T], other: Callable[[], _T]) -> tuple[_T, _T]:
    """Run both, in the order asked for; return ``(default's, other's)``."""
    if default_first:
        defaults = default()
        return defaults, other()
    others = other()
    return default(), others


def worker_rows(
    work_dir: Path,
    plan: WritePlan,
    judged: DefaultFigures,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Row]:
    """The same write loads against ``serve --committer process`` (group commits in a child
    process), ``serve --sequencer thread`` (API and sequencer sharing one process) and
    ``serve --workers 2``: information only; the targets are judged on the default server.

    Each load runs right beside the same load against a fresh default server, and its ratio is
    to that neighbour: the machine's speed drifts by tens of percent within minutes, so a ratio
    to the default's figure from minutes earlier said more about the drift than about the
    deployment. The order is fixed per deployment (:data:`_SQLITE_SETUPS`): the default goes
    first beside the first and third, second beside the second, and first on PostgreSQL. An
    effect of going first therefore leans each ratio one way; it does not cancel within one.

    A deployment whose loads would end after ``deadline`` (a ``clock`` reading: the run's time
    budget) is not measured; its rows say so. A SQLite deployment runs two pairs of loads, the
    PostgreSQL one a single pair; each pair is expected to take as long as a pair of the
    deployment before, the first as long as :func:`_pair_estimate_s` says.
    """
    rows: list[Row] = []
    beside: list[LoadResult] = []
    expected_s = _pair_estimate_s(plan)
    for turn, (setup, name, workers, sequencer, committer) in enumerate(_SQLITE_SETUPS):
        over = _over_budget(deadline, clock(), 2 * expected_s)
        if over is not None:
            rows += [
                Row.not_measured(f"batched writes, SQLite, {setup}", "", skipped=over),
                Row.not_measured(
                    f"single-item writes, {plan.single_clients} clients, SQLite, {setup}", "", skipped=over
                ),
            ]
            continue
        started = clock()
        default_first = turn % 2 == 0
        (default, _), (result, queued_after) = _side_by_side(
            default_first,
            partial(_batched_load, work_dir / f"sqlite-{name}-default-batched", plan, "db"),
            partial(
                _batched_load,
                work_dir / f"sqlite-{name}-batched",
                plan,
                "tb",
                None,
                workers,
                sequencer,
                committer,
            ),
        )
        rows.append(_versus_batched_row("SQLite", setup, result, queued_after, default))
        default_single, single_result = _side_by_side(
            default_first,
            partial(_single_load, work_dir / f"sqlite-{name}-default-single", plan),
            partial(_single_load, work_dir / f"sqlite-{name}-single", plan, workers, sequencer, committer),
        )
        beside.append(default_single)
        rows += _single_versus_rows(single_result, default_single, plan, setup)
        expected_s = (clock() - started) / 2  # per pair of loads
    rows.append(single_spread_row(judged, beside, plan))
    over = _over_budget(deadline, clock(), expected_s)
    if over is not None:
        return [
            *rows,
            Row.not_measured(f"batched writes, PostgreSQL, serve --workers {WORKERS}", "", skipped=over),
        ]
    return [*rows, _postgres_workers_row(work_dir, plan)]


def _pair_estimate_s(plan: WritePlan) -> float:
    """A first guess at how long one pair of loads takes: two warm-ups and loads, and a few
    seconds to start and stop each server."""
    return 2 * (max(plan.batched_s, plan.single_s) + plan.warmup_s + 5.0)


def _over_budget(deadline: float | None, now: float, needed_s: float) -> str | None:
    """Why the next loads are left out (they would end after ``deadline``), or ``None``."""
    if deadline is None or now + needed_s <= deadline:
        return None
    return (
        f"left out to keep the run within its time budget (about {max(0.0, deadline - now):.0f} s "
        f"left, these loads take about {needed_s:.0f} s)"
    )


def _postgres_workers_row(work_dir: Path, plan: WritePlan) -> Row:
    """``serve --workers 2`` on PostgreSQL beside the default, each in a fresh schema; a row
    that says why when it could not be measured, so the SQLite rows before it stand."""
    setup = f"serve --workers {WORKERS}"
    name = f"batched writes, PostgreSQL, {setup}"
    url = postgres.base_url()
    reason = postgres.unreachable_reason(url)
    if reason is not None:
        return Row.not_measured(name, "", skipped=reason)

    def default_load() -> tuple[LoadResult, int | None]:
        with postgres.fresh_schema(url, "beside") as server_url:
            return _batched_load(work_dir / "pg-default-batched", plan, "dp", server_url)

    def workers_load() -> tuple[LoadResult, int | None]:
        with postgres.fresh_schema(url, "workers") as server_url:
            return _batched_load(work_dir / "pg-workers-batched", plan, "wp", server_url, workers=WORKERS)

    try:
        (default, _), (result, queued_after) = _side_by_side(True, default_load, workers_load)
    except Exception as exc:  # noqa: BLE001 - this row says why it is missing; the others stand
        return Row.not_measured(name, "", error=f"{type(exc).__name__}: {exc}")
    return _versus_batched_row("PostgreSQL", setup, result, queued_after, default)


def _batched_load(
    data_dir: Path,
    plan: WritePlan,
    tag: str,
    database_url: str | None = None,
    workers: int = 1,
    sequencer: str | None = None,
    committer: str | None = None,
) -> tuple[LoadResult, int | None]:
    """The batched load against a fresh server: its result and the deltas still queued after."""
    server, key, _ = start_server(data_dir, database_url, workers, sequencer, committer)
    try:
        return batched(server, key, plan, tag), server.queue_depth()
    finally:
        server.stop()


def _single_load(
    data_dir: Path,
    plan: WritePlan,
    workers: int = 1,
    sequencer: str | None = None,
    committer: str | None = None,
) -> LoadResult:
    """The single-item load against a fresh SQLite server."""
    server, key, _ = start_server(data_dir, None, workers, sequencer, committer)
    try:
        return single(server, key, plan)
    finally:
        server.stop()
