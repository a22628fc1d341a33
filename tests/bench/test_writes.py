"""The accepted->verified readings: a request counts as verified once a reader sees the tree
head that sealed it committed, not at the ``verifiedAt`` the sequencer stamps before its commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from trueup.bench.loadspec import LoadResult
from trueup.bench.runner import QUICK
from trueup.bench.stats import Summary, summarize
from trueup.bench.verified_latency import HeadWatcher, LatencyOutcome, first_seen_at, reading
from trueup.bench.workload import delta_rows
from trueup.bench.write_rows import batched_rows, latency_rows, single_rows
from trueup.bench.writes import fresh_sqlite, raw_insert_rate
from trueup.core.timestamps import format_canonical
from trueup.storage import open_storage
from trueup.storage.write_drafts import DELTA_INSERT_COLUMNS
from trueup.storage.write_views import RequestView


def _at(seconds: float) -> str:
    return format_canonical(datetime.fromtimestamp(seconds, UTC))


def _view(accepted_at: float, verified_at: float | None, sealed_size: int | None) -> RequestView:
    return RequestView(
        request_id="req_1",
        source="writes",
        item_count=1,
        stored_count=1,
        pending_count=0,
        accepted_at=_at(accepted_at),
        verified_at=None if verified_at is None else _at(verified_at),
        items=(),
        sealed_size=sealed_size,
    )


def test_a_seal_counts_from_the_first_head_seen_at_least_as_large() -> None:
    seen = [(10, 100.0), (25, 100.5), (40, 101.0)]
    assert first_seen_at(seen, 1) == 100.0
    assert first_seen_at(seen, 10) == 100.0
    assert first_seen_at(seen, 11) == 100.5  # head 20 was never seen alone: the later 25 counts
    assert first_seen_at(seen, 40) == 101.0
    assert first_seen_at(seen, 41) is None
    assert first_seen_at([], 1) is None


def test_accepted_to_verified_is_judged_at_the_commit_a_reader_sees() -> None:
    seen = [(5, 1_000.300), (9, 1_000.900)]
    views = [
        # verifiedAt 1,000.150, but its head (size 5) was first seen committed at 1,000.300.
        (1_000.000, 1_000.100, _view(1_000.050, 1_000.150, 5)),
        (1_000.000, 1_000.200, _view(1_000.150, 1_000.250, 9)),
        (1_000.000, 1_000.200, _view(1_000.150, None, None)),  # not verified
        (1_000.000, 1_000.200, _view(1_000.150, 1_000.950, 12)),  # its head never seen committed
        (1_000.000, 1_000.200, None),  # not found
    ]
    found = reading(views, seen)
    assert found.unverified == 3
    assert found.reply_to_committed.count == 2
    assert round(found.reply_to_committed.p50) == 200  # 1,000.300 - 1,000.100
    assert round(found.reply_to_committed.max) == 700  # 1,000.900 - 1,000.200
    assert round(found.accepted_to_committed.p50) == 250
    assert round(found.reply_to_verified.p50) == 50  # the verifiedAt reading, kept for reference
    assert round(found.accepted_to_verified.max) == 100


def test_the_head_watcher_records_when_each_new_tree_size_is_first_seen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trueup.db'}"
    storage = open_storage(url, pool_size=2)
    watcher = HeadWatcher(url, interval_s=0.002)
    threads = {thread.ident for thread in threading.enumerate()}
    try:
        watcher.start()
        before = time.time()
        for size in (3, 7):
            with storage.engine.write() as tx:
                tx.execute(
                    "INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint) "
                    "VALUES (?, ?, ?, ?)",
                    (size, bytes(32), 0, ""),
                )
            deadline = time.monotonic() + 5
            while (not watcher.seen or watcher.seen[-1][0] < size) and time.monotonic() < deadline:
                time.sleep(0.001)
        # It only reads: no engine of its own, whose SQLite side would run a WAL checkpointer
        # against the server's file from the harness.
        started = [thread.name for thread in threading.enumerate() if thread.ident not in threads]
        assert started == ["bench-head-watcher"]
    finally:
        watcher.stop()
        storage.close()
    assert [size for size, _ in watcher.seen] == [3, 7]
    assert before <= watcher.seen[0][1] <= watcher.seen[1][1] <= time.time()
    assert watcher.polls >= 2
    assert watcher.failures == 0


def test_the_head_watcher_sees_a_head_committed_after_its_last_poll_before_it_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trueup.db'}"
    storage = open_storage(url, pool_size=2)
    watcher = HeadWatcher(url, interval_s=60.0)  # one poll at the start, the next a minute away
    try:
        watcher.start()
        deadline = time.monotonic() + 5
        while watcher.polls == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        with storage.engine.write() as tx:
            tx.execute(
                "INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint) VALUES (?, ?, ?, ?)",
                (4, bytes(32), 0, ""),
            )
        committed = time.time()
    finally:
        watcher.stop()
        storage.close()
    assert not watcher.is_alive()
    assert [size for size, _ in watcher.seen] == [4]
    assert watcher.seen[0][1] >= committed


def _outcome(committed: Summary, unverified: int, load: LoadResult | None = None) -> LatencyOutcome:
    load = load or LoadResult(completed=100, elapsed_s=10.0, statuses={"202": 100}, scheduled=100)
    return LatencyOutcome(
        offered_items_per_s=10.0,
        items_per_request=1,
        load_connections=4,
        load=load,
        reply_to_committed=committed,
        accepted_to_committed=committed,
        send_to_verified=committed,
        reply_to_verified=committed,
        accepted_to_verified=committed,
        unverified=unverified,
        head_poll_s=0.002,
        drain_s=0.1,
    )


def test_accepted_to_verified_without_a_request_read_back_does_not_pass() -> None:
    p50, p99, _ = latency_rows(_outcome(summarize([]), 0), 20.0, "SQLite")
    assert p50.verdict == "MISS (requests read back > 0)"
    assert p99.verdict == "MISS (requests read back > 0)"


def test_accepted_to_verified_with_a_request_not_verified_does_not_pass() -> None:
    p50, p99, _ = latency_rows(_outcome(summarize([10.0, 20.0]), 1), 20.0, "SQLite")
    assert p50.verdict == "MISS (every request read back verified)"
    assert p99.verdict == "MISS (every request read back verified)"
    assert "3 requests read back, 1 not verified" in p50.note
    assert "conservative" in p50.note
    p50, p99, _ = latency_rows(_outcome(summarize([10.0, 20.0]), 0), 20.0, "SQLite")
    assert (p50.verdict, p99.verdict) == ("pass", "pass")


def test_accepted_to_verified_misses_when_the_offered_load_was_not_delivered() -> None:
    committed = summarize([10.0, 20.0])
    # 10 req/s offered; 9 answered 202 a second: under 95 % of the rate.
    slow = LoadResult(completed=90, elapsed_s=10.0, statuses={"202": 90}, scheduled=90)
    for row in latency_rows(_outcome(committed, 0, slow), 20.0, "SQLite"):
        assert row.verdict == "MISS (load not delivered: achieved < 95 % of offered)"
    # 5 of 100 sends more than 5 ms late, the rate kept: the readings start after the send.
    late = LoadResult(completed=100, elapsed_s=10.0, statuses={"202": 100}, scheduled=100, late_sends=5)
    p50, p99, queue = latency_rows(_outcome(committed, 0, late), 20.0, "SQLite")
    assert (p50.verdict, p99.verdict, queue.verdict) == ("pass", "pass", "pass")
    assert "5 of 100 sends late > 5 ms" in p50.note
    # 1 error in 100 replies is over 0.1 %.
    failing = LoadResult(completed=100, elapsed_s=10.0, statuses={"202": 100}, scheduled=100, errors=1)
    for row in latency_rows(_outcome(committed, 0, failing), 20.0, "SQLite"):
        assert row.verdict == "MISS (errors + non-202 <= 0.1 % of replies)"


def _single(statuses: dict[str, int], p99_ms: float) -> LoadResult:
    return LoadResult(
        completed=sum(statuses.values()),
        elapsed_s=1.0,
        statuses=statuses,
        latency_ms=Summary(count=statuses.get("202", 0), p50=p99_ms / 2, p99=p99_ms),
    )


def test_single_item_rows_miss_when_replies_are_not_202() -> None:
    echo = _single({"202": 50_000}, 1.0)
    rate, _, p99, *_ = single_rows(_single({"202": 6_000, "429": 7}, 20.0), echo, QUICK.writes)
    assert rate.verdict == "MISS (errors + non-202 <= 0.1 % of replies)"
    assert p99.verdict == "MISS (errors + non-202 <= 0.1 % of replies)"
    rate, _, p99, *_ = single_rows(_single({"202": 6_000, "429": 6}, 20.0), echo, QUICK.writes)
    assert (rate.verdict, p99.verdict) == ("pass", "pass")
    # Nothing answered: no figure passes.
    rate, _, p99, *_ = single_rows(_single({}, 0.0), echo, QUICK.writes)
    assert (rate.verdict, p99.verdict) == (
        "MISS (>= 5,000 req/s; errors + non-202 <= 0.1 % of replies)",
        "MISS (errors + non-202 <= 0.1 % of replies)",
    )


def test_a_write_figure_that_missed_its_target_is_never_shown_as_meeting_it() -> None:
    # 99,999.5 items/s at 14.996 % of the raw insert: not 100,000 nor 15.0 %.
    batch = LoadResult(completed=999_995, elapsed_s=10_000.0, statuses={"202": 999_995})
    row, *_ = batched_rows("SQLite", 100_000, batch, 99_999.5 / 0.14996, QUICK.writes, None)
    assert (row.value, row.ratio) == ("99,999 items/s", "14.9 %")
    assert row.verdict == "MISS (>= 100,000/s; >= 15 % of raw)"
    # 4,999.6 req/s with p99 25.004 ms: not 5,000 req/s nor 25.00 ms.
    single = LoadResult(
        completed=49_996,
        elapsed_s=10.0,
        statuses={"202": 49_996},
        latency_ms=Summary(count=49_996, p50=10.0, p99=25.004),
    )
    rate, _, p99, *_ = single_rows(single, _single({"202": 50_000}, 1.0), QUICK.writes)
    assert (rate.value, rate.verdict) == ("4,999 req/s", "MISS (>= 5,000 req/s)")
    assert (p99.value, p99.verdict) == ("25.01 ms", "MISS (<= 25 ms)")
    # p50 100.4 ms and p99 1,000.4 ms: not 100 ms nor 1,000 ms.
    p50_row, p99_row, _ = latency_rows(_outcome(Summary(2, p50=100.4, p99=1_000.4), 0), 20.0, "SQLite")
    assert p50_row.value == "101 ms"
    assert p50_row.reference.startswith("acceptedAt->committed p50 101 ms;")
    assert p50_row.verdict == "MISS (<= 100 ms from the 202; <= 100 ms from acceptedAt)"
    assert p99_row.value == "1,001 ms"
    assert p99_row.verdict == "MISS (<= 1 s from the 202; <= 1 s from acceptedAt)"
    # On the bound itself it passes, and shows as the bound.
    p50_row, p99_row, _ = latency_rows(_outcome(Summary(2, p50=100.0, p99=1_000.0), 0), 20.0, "SQLite")
    assert (p50_row.value, p50_row.verdict, p99_row.value, p99_row.verdict) == (
        "100 ms",
        "pass",
        "1,000 ms",
        "pass",
    )


def test_the_raw_insert_is_the_best_of_three_each_into_a_fresh_table(tmp_path: Path) -> None:
    used: list[str] = []

    @contextmanager
    def fresh(run: int) -> Iterator[str]:
        with fresh_sqlite(tmp_path / "raw", run) as url:
            used.append(url)
            yield url
            # Each run inserted every row into its own empty table.
            storage = open_storage(url, pool_size=1, run_migrations=False)
            try:
                with storage.engine.read() as tx:
                    assert tx.scalar("SELECT COUNT(*) FROM deltas WHERE status = 'queued'") == 2_000
            finally:
                storage.close()

    assert raw_insert_rate(fresh, "ten_x", 2) > 0
    assert len(set(used)) == 3
    assert list((tmp_path / "raw").iterdir()) == []  # each fresh file removed after its run


def test_the_raw_rows_follow_the_servers_delta_columns() -> None:
    (row,) = delta_rows("ten_x", 1, items=1)
    assert len(row) == len(DELTA_INSERT_COLUMNS)
    assert dict(zip(DELTA_INSERT_COLUMNS, row, strict=True))["status"] == "queued"
