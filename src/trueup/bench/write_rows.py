"""The default server's write rows: batched, single-item and accepted→verified, on SQLite and
PostgreSQL, each measurement beside its reference and checked against DESIGN.md §6.

Each public function runs its scenario (or shapes one that ran) and returns its rows; the
runner decides the order and catches what fails. Peak server memory is collected into the
``rss`` mapping passed in (scenario name → KiB).
"""

from __future__ import annotations

from pathlib import Path

from trueup.bench import postgres
from trueup.bench.load_figures import (
    BATCH,
    accepted_items_per_s,
    accepted_req_per_s,
    batched_cpu_rows,
    delivery_checks,
    queue_note,
    replies_check,
    replies_note,
    single_cpu_rows,
)
from trueup.bench.loadspec import LoadResult
from trueup.bench.reference import sync_latencies_ms
from trueup.bench.report import Check, Row, fmt_ms, fmt_percent, fmt_rate
from trueup.bench.stats import Summary
from trueup.bench.verified_latency import LatencyOutcome, verified_latency
from trueup.bench.writes import (
    WritePlan,
    batched,
    ceiling,
    fresh_sqlite,
    raw_insert_rate,
    single,
    start_server,
)

__all__ = [
    "batched_rows",
    "latency_rows",
    "postgres_write_rows",
    "single_rows",
    "sqlite_write_rows",
    "with_settings",
]


def batched_rows(
    backend: str, floor: float, result: LoadResult, raw_rate: float, plan: WritePlan, queued_after: int | None
) -> list[Row]:
    """The batched row judged against DESIGN.md §6, and beside it how much of that sealing
    kept up with: a rate sealing cannot sustain is a queue growing, not throughput."""
    row = _batched_row(backend, floor, result, raw_rate, plan, queued_after)
    cpu = batched_cpu_rows(backend, result)
    if queued_after is None:
        return [row, *cpu]
    rate = row.numbers["items_per_s"]
    sealed = max(0, result.ok(202) * BATCH - queued_after) / result.elapsed_s
    return [
        row,
        *cpu,
        Row(
            name=f"batched writes, {backend}: accepted and sealed during the load",
            value=fmt_rate(sealed, "items/s"),
            reference=f"accepted {fmt_rate(rate, 'items/s')}",
            ratio=fmt_percent(sealed / rate if rate else 0.0),
            note=(
                f"{backend}: (items accepted - items still queued when the load stopped) / load "
                "seconds; an estimate: the queue is read just after the load ends (sealing "
                "went on meanwhile), and items in flight at the deadline are queued but not counted"
            ),
            numbers={"sealed_items_per_s": sealed, "items_per_s": rate},
        ),
    ]


def _batched_row(
    backend: str, floor: float, result: LoadResult, raw_rate: float, plan: WritePlan, queued_after: int | None
) -> Row:
    rate = accepted_items_per_s(result)
    share = rate / raw_rate if raw_rate else 0.0
    target = f">= {floor:,.0f}/s; >= 15 % of raw"
    return Row(
        name=f"batched writes, {backend} (1,000 items/request, {plan.batch_connections} clients)",
        value=fmt_rate(rate, "items/s", "down"),
        reference=f"raw executemany {fmt_rate(raw_rate, 'rows/s')}",
        ratio=fmt_percent(share, "down"),
        target=target,
        checks=(
            Check(f">= {floor:,.0f}/s", rate >= floor),
            Check(">= 15 % of raw", share >= 0.15),
            replies_check(result),
        ),
        note=(
            f"{backend}: {result.completed:,} requests in {result.elapsed_s:.0f} s, request p50 "
            f"{fmt_ms(result.latency_ms.p50)} p99 {fmt_ms(result.latency_ms.p99)}; {replies_note(result)}; "
            f"raw = {plan.raw_requests * BATCH:,} same-shape rows, one executemany, one transaction, "
            f"best of {plan.raw_runs} runs, each into a fresh table; "
            f"{queue_note(queued_after)}"
        ),
        numbers={
            "items_per_s": rate,
            "raw_rows_per_s": raw_rate,
            "latency_ms": result.latency_ms.p99,
            "queued_after": queued_after,
        },
    )


def single_rows(result: LoadResult, echo: LoadResult, plan: WritePlan) -> list[Row]:
    """Single-item rate, p50 and p99 (of the 202 replies) beside the echo server, and where the
    cores went."""
    rate = accepted_req_per_s(result)
    latency = result.latency_ms
    name = f"single-item writes, {plan.single_clients} clients"
    return [
        Row(
            name=name,
            value=fmt_rate(rate, "req/s", "down"),
            reference=f"load generator vs echo server {fmt_rate(echo.rate_per_s, 'req/s')}",
            ratio=fmt_percent(rate / echo.rate_per_s) if echo.rate_per_s else "",
            target=">= 5,000 req/s",
            checks=(Check(">= 5,000 req/s", rate >= 5_000), replies_check(result)),
            note=f"{result.completed:,} requests in {result.elapsed_s:.0f} s; {replies_note(result)}",
            numbers={"req_per_s": rate, "echo_req_per_s": echo.rate_per_s},
        ),
        Row(
            name=f"{name}: p50 latency",
            value=fmt_ms(latency.p50),
            reference=f"echo server p50 {fmt_ms(echo.latency_ms.p50)}",
            numbers={"p50_ms": latency.p50},
        ),
        Row(
            name=f"{name}: p99 latency",
            value=fmt_ms(latency.p99, "up"),
            reference=f"echo server p99 {fmt_ms(echo.latency_ms.p99)}",
            target="<= 25 ms",
            # Of the 202 replies only (an error answered fast is no fast write).
            checks=(Check("<= 25 ms", latency.p99 <= 25.0), replies_check(result)),
            numbers={"p99_ms": latency.p99},
        ),
        *single_cpu_rows(result, plan),
    ]


def _sync_row(before: Summary, after: Summary) -> Row:
    """The disk's own wait for a durable commit, just before and just after the single-item load."""
    return Row(
        name="disk: fdatasync of a 4 KiB append, before / after the single-item load",
        value=f"p50 {fmt_ms(before.p50)} / {fmt_ms(after.p50)}",
        reference=f"p99 {fmt_ms(before.p99)} / {fmt_ms(after.p99)}",
        note=(
            f"{before.count} timed appends each, in the data directory's file system; a group commit "
            "waits for one, the echo server and the raw insert (one commit) hardly do"
        ),
        numbers={
            "before_p50_ms": before.p50,
            "before_p99_ms": before.p99,
            "after_p50_ms": after.p50,
            "after_p99_ms": after.p99,
        },
    )


def _seal_note(seals: tuple[float, int] | None) -> str:
    """How long after its ``verifiedAt`` a delta reads as verified: up to one seal's time."""
    if seals is None or seals[1] == 0:
        return "seal times not read"
    total, count = seals
    return (
        f"verifiedAt is taken when a seal signs its tree head, and the delta reads as verified "
        f"when that seal commits: seals took {fmt_ms(total / count * 1000.0)} on average "
        f"({count:,} seals, claim to commit)"
    )


def latency_rows(outcome: LatencyOutcome, batched_rate: float, backend: str) -> list[Row]:
    """Accepted->verified p50 and p99 and the queue, judged against DESIGN.md §6; a load with no
    request read back, or with any not verified, misses whatever its percentiles say."""
    load, send = outcome.load, outcome.send_to_verified
    committed, accepted = outcome.reply_to_committed, outcome.accepted_to_committed
    reply, server = outcome.reply_to_verified, outcome.accepted_to_verified
    achieved = load.ok(202) * outcome.items_per_request / load.elapsed_s
    offered = (
        f"offered {fmt_rate(outcome.offered_items_per_s, 'items/s')} = 1/2 of "
        f"{fmt_rate(batched_rate, 'items/s')}"
    )
    bounded = not outcome.growing() and outcome.drain_s is not None
    drain = "not drained in time"
    if outcome.drain_s is not None:
        drain = f"drained {outcome.drain_s:.1f} s after the load"
    poll = fmt_ms(outcome.head_poll_s * 1000.0)
    read_back = committed.count + outcome.unverified
    # No reading must not pass: an empty sample summarizes as zeros.
    evidence = (
        Check("requests read back > 0", read_back > 0),
        Check("every request read back verified", outcome.unverified == 0),
    )
    offered_req_per_s = outcome.offered_items_per_s / outcome.items_per_request
    delivered = (replies_check(load), *delivery_checks(load, offered_req_per_s))
    note = (
        f"{offered}, as {outcome.items_per_request}-item writes at "
        f"{outcome.offered_items_per_s / outcome.items_per_request:,.0f} req/s "
        f"(open loop, {outcome.load_connections} connections); "
        f"achieved {fmt_rate(achieved, 'items/s')}, {load.late_sends:,} of {load.scheduled:,} sends "
        f"late > 5 ms; {replies_note(load)}; "
        f"{read_back:,} requests read back, {outcome.unverified:,} not "
        "verified; verified = the request's seal committed: the time a reader (its own database "
        f"connection, polling MAX(tree_size) of tree_heads every {poll}) first saw a tree head at "
        "least as large as the one that sealed the request, so each reading is late by up to one "
        f"poll interval ({poll}), i.e. conservative; latency = that time (time.time) - the 202 "
        "reaching the client (time.time + perf_counter), or - the server's acceptedAt: one host, "
        "one CLOCK_REALTIME; for reference, to the server's verifiedAt (stamped when the seal "
        f"signs its head, before the seal commits): from the 202 p50 {fmt_ms(reply.p50)}, p99 "
        f"{fmt_ms(reply.p99)}; from acceptedAt p50 {fmt_ms(server.p50)}, p99 {fmt_ms(server.p99)}; "
        f"from the scheduled send (counting the client's wait for late sends): p50 {fmt_ms(send.p50)}, "
        f"p99 {fmt_ms(send.p99)}; {_seal_note(outcome.seals)}"
    )
    return [
        Row(
            name=(
                f"accepted->verified p50 at half the batched rate, {backend} "
                "(202 received -> its seal committed)"
            ),
            value=fmt_ms(committed.p50, "up"),
            reference=(
                f"acceptedAt->committed p50 {fmt_ms(accepted.p50, 'up')}; ->verifiedAt {fmt_ms(reply.p50)}"
            ),
            target="<= 100 ms",
            # Both readings of "accepted" must pass: the 202 as the client sees it, and the
            # acceptedAt the API reports (stamped when the request started, before its commit).
            checks=(
                Check("<= 100 ms from the 202", committed.p50 <= 100.0),
                Check("<= 100 ms from acceptedAt", accepted.p50 <= 100.0),
                *evidence,
                *delivered,
            ),
            note=note,
            numbers={
                "p50_ms": committed.p50,
                "read_back": read_back,
                "unverified": outcome.unverified,
                "accepted_p50_ms": accepted.p50,
                "verified_at_p50_ms": reply.p50,
                "server_p50_ms": server.p50,
                "send_p50_ms": send.p50,
                "head_poll_ms": outcome.head_poll_s * 1000.0,
                "offered": outcome.offered_items_per_s,
                "achieved": achieved,
                "seal_mean_ms": None
                if not outcome.seals or not outcome.seals[1]
                else (outcome.seals[0] / outcome.seals[1] * 1000.0),
            },
        ),
        Row(
            name=(
                f"accepted->verified p99 at half the batched rate, {backend} "
                "(202 received -> its seal committed)"
            ),
            value=fmt_ms(committed.p99, "up"),
            reference=(
                f"acceptedAt->committed p99 {fmt_ms(accepted.p99, 'up')}; ->verifiedAt {fmt_ms(reply.p99)}"
            ),
            target="<= 1 s",
            checks=(
                Check("<= 1 s from the 202", committed.p99 <= 1_000.0),
                Check("<= 1 s from acceptedAt", accepted.p99 <= 1_000.0),
                *evidence,
                *delivered,
            ),
            numbers={
                "p99_ms": committed.p99,
                "accepted_p99_ms": accepted.p99,
                "verified_at_p99_ms": reply.p99,
                "server_p99_ms": server.p99,
                "send_p99_ms": send.p99,
            },
        ),
        Row(
            name=f"sequencer queue at half the batched rate, {backend}",
            value=f"max {outcome.max_depth:,} queued",
            reference=drain,
            target="does not grow",
            checks=(Check("does not grow", bounded), *delivered),
            note=f"/readyz queueDepth every 0.25 s: {'bounded' if bounded else 'grew during the run'}",
            numbers={"depths": outcome.depths, "drain_s": outcome.drain_s},
        ),
    ]


def sqlite_write_rows(work_dir: Path, plan: WritePlan, rss: dict[str, int]) -> tuple[list[Row], float]:
    """Batched, single-item and accepted→verified on SQLite; and the batched rate (items/s)."""
    server, key, tenant = start_server(work_dir / "sqlite-batched")
    try:
        batch_result = batched(server, key, plan, "b")
        queued_after = server.queue_depth()
    finally:
        server.stop()
    rss["server, batched writes (SQLite)"] = server.peak_rss_kib or 0
    raw = raw_insert_rate(
        lambda run: fresh_sqlite(work_dir / "sqlite-raw", run), tenant, plan.raw_requests, plan.raw_runs
    )
    batched_rate = accepted_items_per_s(batch_result)
    rows = batched_rows("SQLite", 100_000, batch_result, raw, plan, queued_after)

    echo = ceiling(plan)
    sync_before = sync_latencies_ms(work_dir)
    server, key, tenant = start_server(work_dir / "sqlite-single")
    try:
        single_result = single(server, key, plan)
    finally:
        server.stop()
    sync_after = sync_latencies_ms(work_dir)
    rss["server, single-item writes (SQLite)"] = server.peak_rss_kib or 0
    rows += single_rows(single_result, echo, plan)
    rows.append(_sync_row(sync_before, sync_after))

    server, key, tenant = start_server(work_dir / "sqlite-latency")
    try:
        single_rate = accepted_req_per_s(single_result)
        outcome = verified_latency(server, key, tenant, max(batched_rate / 2, 100.0), single_rate, plan)
    finally:
        server.stop()
    rss["server, accepted->verified (SQLite)"] = server.peak_rss_kib or 0
    rows += latency_rows(outcome, batched_rate, "SQLite")
    return rows, batched_rate


def postgres_write_rows(
    work_dir: Path, plan: WritePlan, rss: dict[str, int], single_req_per_s: float | None
) -> list[Row]:
    """Batched writes on PostgreSQL beside the raw executemany rate, and accepted→verified at
    half that rate, each in a fresh schema. ``single_req_per_s`` is the SQLite single-item
    rate of the same run, which sizes the latency load's requests (as on SQLite)."""
    name = f"batched writes, PostgreSQL (1,000 items/request, {plan.batch_connections} clients)"
    url = postgres.base_url()
    reason = postgres.unreachable_reason(url)
    if reason is not None:
        return [Row.not_measured(name, ">= 50,000/s; >= 15 % of raw", skipped=reason)]
    with postgres.fresh_schema(url, "server") as server_url:
        server, key, tenant = start_server(work_dir / "pg-batched", server_url)
        try:
            result = batched(server, key, plan, "p")
            queued_after = server.queue_depth()
        finally:
            server.stop()
        rss["server, batched writes (PostgreSQL)"] = server.peak_rss_kib or 0
    raw = raw_insert_rate(
        lambda run: postgres.fresh_schema(url, f"raw{run}"), tenant, plan.raw_requests, plan.raw_runs
    )
    settings = postgres.durability(url)
    rows = with_settings(batched_rows("PostgreSQL", 50_000, result, raw, plan, queued_after), settings)
    batched_rate = accepted_items_per_s(result)
    try:
        with postgres.fresh_schema(url, "latency") as server_url:
            server, key, tenant = start_server(work_dir / "pg-latency", server_url)
            try:
                outcome = verified_latency(
                    server, key, tenant, max(batched_rate / 2, 100.0), single_req_per_s or 2_000.0, plan
                )
            finally:
                server.stop()
            rss["server, accepted->verified (PostgreSQL)"] = server.peak_rss_kib or 0
    except Exception as exc:  # noqa: BLE001 - the batched rows above stand; this one says why it is missing
        name = "accepted->verified at half the batched rate, PostgreSQL"
        return [
            *rows,
            Row.not_measured(name, "p50 <= 100 ms, p99 <= 1 s", error=f"{type(exc).__name__}: {exc}"),
        ]
    return rows + with_settings(latency_rows(outcome, batched_rate, "PostgreSQL"), settings)


def with_settings(rows: list[Row], settings: str) -> list[Row]:
    """``rows`` with the PostgreSQL server's durability settings at the end of each note."""
    for row in rows:
        row.note = f"{row.note}; PostgreSQL {settings}" if row.note else f"PostgreSQL {settings}"
    return rows
