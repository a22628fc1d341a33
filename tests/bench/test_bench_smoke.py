"""The benchmark harness's pure parts: the table, the load generator, the references.

Nothing here asserts a timing (timings belong in `make bench`); these check that each part
does what the report relies on, in a few seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trueup.bench import deployments
from trueup.bench.cpu import LOAD_GENERATOR, MACHINE_BUSY, MACHINE_CAPACITY
from trueup.bench.deployments import (
    DefaultFigures,
    _side_by_side,
    _single_versus_rows,
    _versus_batched_row,
    single_spread_row,
)
from trueup.bench.echo import start_echo_server
from trueup.bench.load import reply_id, run_load, run_load_process
from trueup.bench.load_figures import replies_check, replies_note
from trueup.bench.loadspec import LoadResult, LoadSpec, RequestTemplate
from trueup.bench.merkle import make_leaves, ours_seconds
from trueup.bench.reference import hashlib_bound_seconds, pymerkle_seconds, sync_latencies_ms
from trueup.bench.report import Check, Report, Row, fmt_ms, fmt_percent, fmt_rate, fmt_times, fmt_us
from trueup.bench.runner import QUICK
from trueup.bench.server import ServerError, ServerUnderTest, http_get_json
from trueup.bench.stats import Summary, percentile, summarize, time_pairs
from trueup.bench.workload import batch_template, single_template
from trueup.bench.write_rows import batched_rows
from trueup.proof import leaf_hash, root_from_leaf_hashes

REQUEST_ID = "data.requestId"


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """A tiny asyncio HTTP/1.1 server on 127.0.0.1, in a thread of its own."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(start_echo_server("127.0.0.1", 0))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    server = holder["server"]
    yield int(server.sockets[0].getsockname()[1])

    async def close() -> None:
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _template() -> RequestTemplate:
    return single_template("pk_live_test.secret")


def test_report_shows_each_verdict_and_writes_markdown_and_json() -> None:
    report = Report(title="trueup bench (test)", mode="test", machine={"cores": "2"})
    report.add(
        [
            Row("passes", "10 x/s", "ref 20 x/s", "50.0 %", ">= 5", (Check(">= 5", True),)),
            Row("misses one of two", "1 x/s", checks=(Check(">= 5", False), Check(">= 1 %", True))),
            Row("misses all", "1 x/s", checks=(Check(">= 5", False),)),
            Row("misses both", "1 x/s", checks=(Check(">= 5", False), Check(">= 1 %", False))),
            Row("informs", "3 MiB", note="a note"),
            Row.not_measured("skips", ">= 1", skipped="no server"),
            Row.not_measured("fails", ">= 1", error="boom"),
        ]
    )
    assert [row.verdict for row in report.rows] == [
        "pass",
        "MISS (>= 5)",
        "MISS (>= 5)",
        "MISS (>= 5; >= 1 %)",
        "info",
        "skipped",
        "error",
    ]
    text = report.text()
    assert "reference (same run)" in text
    assert "1 pass, 3 miss, 1 skipped, 1 error" in text
    assert "informs: a note" in text
    markdown = report.markdown()
    assert "| figure | value | reference (same run) | ratio | target (DESIGN.md §6) | verdict |" in markdown
    assert "| skips | skipped: no server |" in markdown
    data = json.loads(json.dumps(report.to_json()))
    assert [row["verdict"] for row in data["rows"]][:2] == ["pass", "MISS (>= 5)"]


def test_a_judged_figure_is_rounded_away_from_passing() -> None:
    # Against an upper bound (latencies): up, so 20.004 µs against <= 20 µs is not "20.00 µs".
    assert (fmt_us(20.004, "up"), fmt_us(20.004)) == ("20.01 µs", "20.00 µs")
    assert (fmt_ms(5.001, "up"), fmt_ms(4.999, "up"), fmt_ms(99.996, "up")) == (
        "5.01 ms",
        "5.00 ms",
        "100 ms",
    )
    # Against a lower bound (rates, shares, factors): down.
    assert (fmt_percent(0.59996, "down"), fmt_percent(0.59996)) == ("59.9 %", "60.0 %")
    assert (fmt_times(4.999, "down"), fmt_times(4.999)) == ("4.99x", "5.00x")
    assert (fmt_rate(4_999.7, "req/s", "down"), fmt_rate(5_000.0, "req/s", "down")) == (
        "4,999 req/s",
        "5,000 req/s",
    )


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.50) == 50.0
    assert percentile(ordered, 0.99) == 99.0
    assert percentile([], 0.5) == 0.0
    summary = summarize([3.0, 1.0, 2.0])
    assert (summary.count, summary.p50, summary.max) == (3, 2.0, 3.0)


def test_a_figure_and_its_reference_are_timed_alternately() -> None:
    calls: list[tuple[str, int]] = []
    first, second = time_pairs(
        lambda i: calls.append(("figure", i)), lambda i: calls.append(("reference", i)), 3, 1.0
    )
    # Alternately, each pair in the other order than the one before.
    assert calls == [
        ("figure", 0),
        ("reference", 0),
        ("reference", 1),
        ("figure", 1),
        ("figure", 2),
        ("reference", 2),
    ]
    assert (first.count, second.count) == (3, 3)
    # A spent budget stops after the pair under way: both sides keep the same count.
    first, second = time_pairs(lambda _: None, lambda _: None, 1_000, 1.0, budget_s=0.0)
    assert (first.count, second.count) == (1, 1)


def test_templates_give_every_request_unique_keys() -> None:
    build = batch_template("pk_live_a.b", items=3).render("127.0.0.1", 8000)
    first, second = build(b"t1", 0), build(b"t2", 0)
    body = json.loads(first.split(b"\r\n\r\n", 1)[1])
    assert [item["key"] for item in body["items"]] == ["t1-0", "t1-1", "t1-2"]
    assert b"t2-0" in second
    assert b"Content-Length: %d\r\n" % len(first.split(b"\r\n\r\n", 1)[1]) in first
    single = _template().render("127.0.0.1", 8000)(b"tok", 7)
    assert b'"accountId":"client-0007"' in single
    # Customers fewer than connections: the client's number wraps, so they do not grow with them.
    few = single_template("k", 2, customers=64).render("127.0.0.1", 8000)
    assert b'"accountId":"client-0007"' in few(b"tok", 71)
    assert b'"accountId":"client-0063"' in few(b"tok", 63)


def test_load_spec_survives_the_process_boundary_with_its_customers() -> None:
    spec = LoadSpec("127.0.0.1", 1, single_template("k", 3, customers=64), 256, 1.5, rate_per_s=10.0)
    assert LoadSpec.from_json(spec.to_json()) == spec


def test_load_spec_survives_the_process_boundary() -> None:
    spec = LoadSpec("127.0.0.1", 1, batch_template("k", items=2), 3, 1.5, rate_per_s=10.0, record=True)
    assert LoadSpec.from_json(spec.to_json()) == spec
    result = LoadResult(completed=2, elapsed_s=1.0, statuses={"202": 2}, records=[(1.0, 2.0, 202, "req_1")])
    assert LoadResult.from_json(result.to_json()) == result


def test_closed_loop_drives_a_local_server(echo_port: int) -> None:
    result = run_load(LoadSpec("127.0.0.1", echo_port, _template(), connections=4, duration_s=0.5))
    assert result.completed > 0
    assert result.statuses == {"202": result.completed}
    assert result.errors == 0
    assert result.latency_ms.count == result.completed


def test_open_loop_records_each_request_with_its_id(echo_port: int) -> None:
    spec = LoadSpec(
        "127.0.0.1",
        echo_port,
        _template(),
        connections=4,
        duration_s=0.5,
        rate_per_s=200.0,
        record=True,
        id_field=REQUEST_ID,
    )
    result = run_load(spec)
    assert 0 < result.completed <= result.scheduled
    sent, replied, status, request_id = result.records[0]
    assert status == 202
    assert request_id.startswith("req_")
    assert replied >= sent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_load_reports_the_cpu_of_the_processes_it_watches(echo_port: int) -> None:
    # The echo server runs in a thread of this process: watching this process watches it.
    spec = LoadSpec("127.0.0.1", echo_port, _template(), 2, 0.5, warmup_s=0.1, watch={"echo": [os.getpid()]})
    assert LoadSpec.from_json(spec.to_json()) == spec
    result = run_load_process(spec)
    assert set(result.cpu) == {"echo", LOAD_GENERATOR, MACHINE_BUSY, MACHINE_CAPACITY}
    assert result.cpu["echo"] >= 0
    assert result.cpu[MACHINE_CAPACITY] >= result.cpu[MACHINE_BUSY] > 0
    assert LoadResult.from_json(result.to_json()) == result
    # Nothing watched, nothing read.
    assert run_load(LoadSpec("127.0.0.1", echo_port, _template(), 1, 0.2)).cpu == {}


def test_request_ids_are_read_from_the_reply_as_json() -> None:
    path = ("data", "requestId")
    assert reply_id(b'{"statusCode": 202, "data": {"requestId": "req_9"}}', path) == "req_9"
    assert reply_id(b'{"data":{"re\\u0071uestId":"req_8"}}', path) == "req_8"
    # Elsewhere than where the reply puts it, or not a string, or not JSON: no id.
    assert reply_id(b'{"error": {"requestId": "req_7"}, "data": {}}', path) == ""
    assert reply_id(b'{"data": {"requestId": 7}}', path) == ""
    assert reply_id(b'{"data": ["requestId"]}', path) == ""
    assert reply_id(b"<html>requestId</html>", path) == ""


_Answer = Callable[[int], tuple[bytes, float] | None]
"""The status line of the reply to request n (counted over every connection) and how many
seconds after the request to send it; ``None``: never answered."""


def _accepted_after(delay: Callable[[int], float | None]) -> _Answer:
    """A 202 after ``delay(n)`` seconds, or never when that is ``None``."""

    def answer(n: int) -> tuple[bytes, float] | None:
        seconds = delay(n)
        return None if seconds is None else (b"202 Accepted", seconds)

    return answer


class _Scripted(asyncio.Protocol):
    """Answers each request as its :data:`_Answer` says."""

    answered = 0

    def __init__(self, answer: _Answer) -> None:
        self.buffer = b""
        self.answer = answer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a socket's transport is a Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            _Scripted.answered += 1
            answer = self.answer(_Scripted.answered)
            if answer is None:
                continue
            status, delay = answer
            body = b'{"data":{"requestId":"req_1"}}'
            reply = b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)
            assert self.transport is not None
            if delay:
                asyncio.get_running_loop().call_later(delay, self.transport.write, reply)
            else:
                self.transport.write(reply)


def _run_against(answer: _Answer, spec: Callable[[int], LoadSpec]) -> LoadResult:
    """``run_load(spec(port))`` against a :class:`_Scripted` server on 127.0.0.1."""
    loop = asyncio.new_event_loop()
    accepted: list[_Scripted] = []

    def accept() -> _Scripted:
        accepted.append(_Scripted(answer))
        return accepted[-1]

    _Scripted.answered = 0
    server = loop.run_until_complete(loop.create_server(accept, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        return run_load(spec(int(server.sockets[0].getsockname()[1])))
    finally:

        async def close() -> None:
            server.close()
            for protocol in accepted:
                if protocol.transport is not None:
                    protocol.transport.close()
            await asyncio.sleep(0.05)  # the transports' close callbacks run

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_latencies_count_only_the_replies_with_the_latency_status() -> None:
    def refuse_every_other(n: int) -> tuple[bytes, float]:  # a 429's time is no write's latency
        return (b"202 Accepted" if n % 2 else b"429 Too Many Requests"), 0.0

    result = _run_against(
        refuse_every_other,
        lambda port: LoadSpec("127.0.0.1", port, _template(), connections=1, duration_s=0.3),
    )
    assert result.ok(202) > 0
    assert result.ok(429) > 0
    assert result.latency_ms.count == result.ok(202)


def _open_loop(port: int, timeout_s: float = 2.0) -> LoadSpec:
    return LoadSpec(
        "127.0.0.1",
        port,
        _template(),
        connections=32,
        duration_s=0.5,
        rate_per_s=200.0,
        record=True,
        id_field=REQUEST_ID,
        request_timeout_s=timeout_s,
    )


def test_an_open_loop_counts_the_replies_that_come_after_its_window() -> None:
    # Every reply takes 0.2 s: the requests of the window's last 0.2 s are answered after it.
    result = _run_against(_accepted_after(lambda _: 0.2), _open_loop)
    assert result.scheduled > 0
    assert result.completed == result.ok(202) == len(result.records) == result.scheduled
    assert result.unanswered == 0
    assert result.latency_ms.count == result.scheduled
    assert result.latency_ms.p50 >= 200.0
    assert replies_check(result).ok


def test_an_open_loop_request_never_answered_is_counted_and_fails_the_replies_check() -> None:
    # One request in 40 is kept by the server and never answered.
    result = _run_against(
        _accepted_after(lambda n: None if n % 40 == 0 else 0.0), lambda port: _open_loop(port, 0.5)
    )
    assert result.unanswered >= 2
    assert result.completed + result.errors + result.unanswered == result.scheduled
    assert result.errors == 0
    assert result.statuses == {"202": result.completed}
    assert not replies_check(result).ok
    assert f"; {result.unanswered:,} sent and never answered" in replies_note(result)


def test_load_runs_in_a_separate_process(echo_port: int) -> None:
    result = run_load_process(LoadSpec("127.0.0.1", echo_port, _template(), connections=2, duration_s=0.3))
    assert result.completed > 0
    assert result.errors == 0


def test_references_agree_with_our_tree_on_1000_leaves() -> None:
    leaves = make_leaves(1_000)
    assert hashlib_bound_seconds(leaves) > 0
    _, ours = ours_seconds(leaves)
    _, theirs, version = pymerkle_seconds(leaves)
    assert version == "7.0.0"
    assert theirs == ours == root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def test_the_default_single_item_figures_are_read_from_its_rows() -> None:
    sqlite_rows = [
        Row(
            name="batched writes, SQLite (1,000 items/request, 8 clients)",
            value="",
            numbers={"items_per_s": 30_000},
        ),
        Row(name="single-item writes, 64 clients", value="", numbers={"req_per_s": 2_800.0}),
        Row(name="single-item writes, 64 clients: p99 latency", value="", numbers={"p99_ms": 40.0}),
    ]
    assert DefaultFigures.of(sqlite_rows) == DefaultFigures(single_req_per_s=2_800.0, single_p99_ms=40.0)
    assert DefaultFigures.of([]) == DefaultFigures(single_req_per_s=None, single_p99_ms=None)


def _load(requests: int, p99_ms: float, generator_s: float | None = None) -> LoadResult:
    cpu = {} if generator_s is None else {LOAD_GENERATOR: generator_s}
    return LoadResult(
        completed=requests,
        elapsed_s=10.0,
        statuses={"202": requests},
        latency_ms=Summary(count=requests, p50=p99_ms / 2, p99=p99_ms),
        cpu=cpu,
    )


def test_another_deployment_is_judged_against_the_default_measured_beside_it() -> None:
    other, default = _load(60_000, 20.0, generator_s=1.8), _load(40_000, 30.0, generator_s=1.6)
    rate_row, latency_row = _single_versus_rows(other, default, QUICK.writes, "serve --workers 2")
    assert rate_row.value == "6,000 req/s"
    assert rate_row.reference == "default serve beside it 4,000 req/s"
    assert rate_row.ratio == "1.50x"
    # The same work per request in both loads: how fast the machine was in each.
    assert rate_row.note.endswith("load generator CPU per request 30.00 µs here, 40.00 µs beside it")
    assert latency_row.value == "10.00 ms / 20.00 ms"
    assert latency_row.reference == "default serve beside it 15.00 ms / 30.00 ms"

    batched = _versus_batched_row("SQLite", "serve --committer process", _load(30, 1.0), 0, _load(20, 1.0))
    assert (batched.value, batched.reference, batched.ratio) == (
        "3,000 items/s",
        "default serve beside it 2,000 items/s",
        "1.50x",
    )
    assert "load generator" not in batched.note  # CPU was not read
    nothing = _versus_batched_row("SQLite", "x", _load(30, 1.0), 0, _load(0, 1.0))
    assert (nothing.reference, nothing.ratio) == ("default serve beside it: nothing accepted", "")


def test_side_by_side_runs_both_in_the_order_asked_and_returns_the_default_first() -> None:
    ran: list[str] = []

    def run(name: str) -> str:
        ran.append(name)
        return name

    assert _side_by_side(True, lambda: run("default"), lambda: run("other")) == ("default", "other")
    assert _side_by_side(False, lambda: run("default"), lambda: run("other")) == ("default", "other")
    assert ran == ["default", "other", "other", "default"]


def test_every_default_single_item_load_is_listed_with_the_judged_one_first() -> None:
    one = DefaultFigures(single_req_per_s=3_500.0, single_p99_ms=35.0)
    row = single_spread_row(one, [_load(55_000, 24.0), _load(48_000, 29.5)], QUICK.writes)
    assert row.verdict == "info"
    assert row.value == "3,500 req/s to 5,500 req/s"
    assert row.reference == "p99 24.00 ms to 35.00 ms"
    assert row.ratio == "3 loads"
    assert row.note.endswith("3,500 (35.00 ms), 5,500 (24.00 ms), 4,800 (29.50 ms)")
    assert row.numbers == {"req_per_s": [3_500.0, 5_500.0, 4_800.0], "p99_ms": [35.0, 24.0, 29.5]}
    # Without the judged load (its section failed), the others are still listed, and said to be.
    row = single_spread_row(DefaultFigures(3_500.0, None), [_load(55_000, 24.0)], QUICK.writes)
    assert row.value == "5,500 req/s to 5,500 req/s"
    assert "the load for the target rows was not measured" in row.note
    assert single_spread_row(DefaultFigures(None, None), [], QUICK.writes).verdict == "error"


def _record_loads(
    monkeypatch: pytest.MonkeyPatch, calls: list[str], each: Callable[[], None] = lambda: None
) -> None:
    """Replace the loads of :func:`deployments.worker_rows` with stand-ins that record each call
    (taking their arguments exactly as the real loads do) and answer load n with 1,000 n
    requests in 10 s; ``each`` runs at every call."""
    rates = iter(range(1, 100))

    def recorder(kind: str, real: Callable[..., object]) -> Callable[..., object]:
        signature = inspect.signature(real)

        def fake(*args: object, **kwargs: object) -> object:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            data_dir = given["data_dir"]
            assert isinstance(data_dir, Path)
            calls.append(
                f"{kind} {data_dir.name} workers={given['workers']} "
                f"sequencer={given['sequencer']} committer={given['committer']}"
            )
            each()
            result = _load(1_000 * next(rates), 10.0)
            return (result, 0) if kind == "batched" else result

        return fake

    monkeypatch.setattr(deployments, "_batched_load", recorder("batched", deployments._batched_load))
    monkeypatch.setattr(deployments, "_single_load", recorder("single", deployments._single_load))
    monkeypatch.setattr(deployments.postgres, "unreachable_reason", lambda url: "no server here")


def test_each_other_deployment_is_run_beside_a_default_load_and_compared_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order of the loads, the flags each gets, and which neighbour each row is read against."""
    calls: list[str] = []
    _record_loads(monkeypatch, calls)
    rows = deployments.worker_rows(tmp_path, QUICK.writes, DefaultFigures(1.0, 30.0))
    assert calls == [
        "batched sqlite-committer-process-default-batched workers=1 sequencer=None committer=None",
        "batched sqlite-committer-process-batched workers=1 sequencer=None committer=process",
        "single sqlite-committer-process-default-single workers=1 sequencer=None committer=None",
        "single sqlite-committer-process-single workers=1 sequencer=None committer=process",
        "batched sqlite-thread-batched workers=1 sequencer=thread committer=None",
        "batched sqlite-thread-default-batched workers=1 sequencer=None committer=None",
        "single sqlite-thread-single workers=1 sequencer=thread committer=None",
        "single sqlite-thread-default-single workers=1 sequencer=None committer=None",
        "batched sqlite-workers-default-batched workers=1 sequencer=None committer=None",
        "batched sqlite-workers-batched workers=2 sequencer=None committer=None",
        "single sqlite-workers-default-single workers=1 sequencer=None committer=None",
        "single sqlite-workers-single workers=2 sequencer=None committer=None",
    ]
    by_name = {row.name: row for row in rows}
    # Load n answered 1,000 n requests in 10 s: each row against the load run beside it.
    committer = by_name["batched writes, SQLite, serve --committer process"]
    assert (committer.value, committer.reference) == (
        "200,000 items/s",
        "default serve beside it 100,000 items/s",
    )
    thread = by_name["single-item writes, 64 clients, SQLite, serve --sequencer thread"]
    assert (thread.value, thread.reference) == ("700 req/s", "default serve beside it 800 req/s")
    workers = by_name["single-item writes, 64 clients, SQLite, serve --workers 2"]
    assert (workers.value, workers.reference) == ("1,200 req/s", "default serve beside it 1,100 req/s")
    spread = by_name["single-item writes, 64 clients, default serve, every load of this run"]
    assert spread.numbers["req_per_s"] == [1.0, 300.0, 800.0, 1_100.0]
    assert by_name["batched writes, PostgreSQL, serve --workers 2"].value == "skipped: no server here"


def test_other_deployments_that_would_pass_the_time_budget_are_left_out_and_said_to_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]

    def forty_seconds() -> None:
        now[0] += 40.0

    calls: list[str] = []
    _record_loads(monkeypatch, calls, each=forty_seconds)
    # The first deployment's four loads take 160 s; then 100 s are left, and the next needs 160.
    rows = deployments.worker_rows(tmp_path, QUICK.writes, DefaultFigures(1.0, 30.0), 260.0, lambda: now[0])
    assert len(calls) == 4
    assert all("committer-process" in call for call in calls)
    skipped = [row for row in rows if row.skipped]
    assert [row.name for row in skipped] == [
        "batched writes, SQLite, serve --sequencer thread",
        "single-item writes, 64 clients, SQLite, serve --sequencer thread",
        "batched writes, SQLite, serve --workers 2",
        "single-item writes, 64 clients, SQLite, serve --workers 2",
        "batched writes, PostgreSQL, serve --workers 2",
    ]
    assert skipped[0].value == (
        "skipped: left out to keep the run within its time budget (about 100 s left, these loads "
        "take about 160 s)"
    )
    spread = next(row for row in rows if row.name.endswith("every load of this run"))
    assert spread.numbers["req_per_s"] == [1.0, 300.0]
    # One PostgreSQL pair (about 80 s) still fits in the 100 s: it is tried (and finds no server).
    assert skipped[-1].value == "skipped: no server here"
    # With no time left at all, nothing is run, and the first estimate comes from the plan.
    calls.clear()
    rows = deployments.worker_rows(tmp_path, QUICK.writes, DefaultFigures(1.0, 30.0), 10.0, lambda: 0.0)
    assert calls == []
    assert sum(1 for row in rows if row.skipped) == 7


def test_batched_rows_say_how_much_sealing_kept_up_with() -> None:
    result = LoadResult(completed=41, elapsed_s=10.0, statuses={"202": 40, "503": 1})
    rows = batched_rows("SQLite", 100_000, result, 100_000.0, QUICK.writes, queued_after=15_000)
    # Every check failed, the replies too: the verdict names them all, the one the target
    # column does not show among them.
    assert [row.verdict for row in rows] == [
        "MISS (>= 100,000/s; >= 15 % of raw; errors + non-202 <= 0.1 % of replies)",
        "info",
    ]
    assert rows[0].value == "4,000 items/s"
    assert rows[1].value == "2,500 items/s"  # (40,000 accepted - 15,000 queued) / 10 s
    assert rows[1].ratio == "62.5 %"
    assert rows[1].numbers["sealed_items_per_s"] == 2_500.0
    # Without the queue depth there is nothing to say about sealing.
    assert len(batched_rows("SQLite", 100_000, result, 100_000.0, QUICK.writes, queued_after=None)) == 1


@pytest.mark.e2e
def test_a_running_server_under_test_refuses_a_second_start(tmp_path: Path) -> None:
    """A second launch could not bind the port and would leave the first process behind."""
    server = ServerUnderTest(tmp_path).start()
    try:
        first = server.pid
        with pytest.raises(ServerError, match="already running"):
            server.start()
        assert server.pid == first
        assert http_get_json(server.port, "/healthz")[0] == 200
        seconds, seals = server.seal_seconds() or (-1.0, -1)  # read from /metrics
        assert seconds >= 0.0 and seals >= 0
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


def test_the_disk_sync_reference_times_each_append_and_leaves_nothing_behind(tmp_path: Path) -> None:
    summary = sync_latencies_ms(tmp_path, count=20, size=512)
    assert summary.count == 20
    assert 0 < summary.p50 <= summary.p99 <= summary.max
    assert list(tmp_path.iterdir()) == []
