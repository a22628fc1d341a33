"""A lean HTTP/1.1 keep-alive load generator over raw asyncio sockets.

No HTTP client library sits on the hot path: each connection is an :class:`asyncio.Protocol`
that writes pre-built request bytes and parses just enough of the reply (status line and
``Content-Length``) to know where it ends. One process drives well over 10,000 requests a
second this way, so the generator is not what a server benchmark measures.

Two shapes of load, both bounded in time and in count:

- *closed loop* (``rate_per_s is None``): ``connections`` clients, each sending its next
  request when the previous reply arrived (the "N concurrent clients" of a benchmark);
- *open loop*: requests scheduled at a fixed rate whatever the replies do; latency counts from
  the scheduled send time, so a stalled server cannot hide its backlog (no coordinated
  omission). ``connections`` bounds the requests in flight. A request counts when it was
  scheduled in the measured window, whenever its reply comes: the load waits up to
  ``request_timeout_s`` after the window for the last replies, so the slowest are in the
  figures, and a request still unanswered then is counted as unanswered, not left out.

Run it in its own process with :func:`run_load_process` (``python -m trueup.bench.load``
reads a :class:`~trueup.bench.loadspec.LoadSpec` as JSON on stdin and writes a
:class:`~trueup.bench.loadspec.LoadResult` on stdout), so its CPU time is never charged to
the server under test.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any, cast

import psycopg

from trueup.bench.cpu import backend_roles, cpu_used, sample
from trueup.bench.loadspec import LoadResult, LoadSpec
from trueup.bench.stats import summarize

__all__ = ["LoadError", "reply_id", "run_load", "run_load_process"]

_HEADER_END = b"\r\n\r\n"


class LoadError(RuntimeError):
    """The load could not be generated (connection refused, bad reply, process failure)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection closed by the server: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            reply = self._take_reply()
        except LoadError as exc:
            waiter.set_exception(exc)
            return
        if reply is not None:
            waiter.set_result(reply)

    def _take_reply(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        end = buffer.find(_HEADER_END)
        if end < 0:
            return None
        head = bytes(buffer[:end])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length is None:
            raise LoadError(f"reply without Content-Length: {head[:200]!r}")
        start = end + len(_HEADER_END)
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        return int(head[9:12]), body

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        # No per-request timer (it would cost as much as the parsing): the whole run is
        # bounded by one deadline in run_load.
        if self._transport is None or self.closed:
            raise ConnectionError("connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(payload)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def reply_id(body: bytes, path: tuple[str, ...]) -> str:
    """The string at ``path`` (object keys, outermost first) of a JSON reply body; ``""`` when
    the body is not JSON or holds no string there."""
    try:
        node: Any = json.loads(body)
    except ValueError:
        return ""
    for key in path:
        if not isinstance(node, dict):
            return ""
        node = node.get(key)
    return node if isinstance(node, str) else ""


class _Run:
    """State shared by the clients of one run (single-threaded: one event loop)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.build = spec.template.render(spec.host, spec.port)
        self.id_path = tuple(spec.id_field.split(".")) if spec.id_field else None
        self.result = LoadResult()
        self.latencies: list[float] = []
        self.issued = 0
        self.settled = 0
        """Open loop: requests of the measured window that were answered or failed."""
        self.opened: list[_Connection] = []
        now = time.perf_counter()
        self.wall_offset = time.time() - now
        self.measure_from = now + spec.warmup_s
        self.deadline = self.measure_from + spec.duration_s

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(_Connection, self.spec.host, self.spec.port)
        except OSError as exc:
            raise LoadError(f"cannot connect to {self.spec.host}:{self.spec.port}: {exc}") from exc
        self.opened.append(protocol)
        return protocol

    def token(self, client: int) -> bytes:
        self.issued += 1
        return f"{self.spec.tag}{client:04d}x{self.issued:010d}".encode()

    async def send(
        self, conn: _Connection, client: int, scheduled: float, measured: bool | None = None
    ) -> _Connection:
        """Send one request on ``conn`` (reconnecting if needed); record it if measured.

        ``measured``: whether the request counts, decided when it was scheduled (open loop),
        whenever its reply comes; ``None`` (closed loop): it counts when it was sent and
        answered within the measured window.
        """
        if conn.closed:
            conn = await self.connect()
            self.result.reconnects += 1
        try:
            status, body = await conn.request(self.build(self.token(client), client))
        except (ConnectionError, LoadError) as exc:
            done = time.perf_counter()
            in_window = self.measure_from <= done <= self.deadline
            if in_window if measured is None else measured:
                self.result.errors += 1
                self.result.error_sample = self.result.error_sample or f"{type(exc).__name__}: {exc}"
                self.settled += 1
            conn.close()
            conn.closed = True
            return conn
        done = time.perf_counter()
        in_window = self.measure_from <= scheduled and done <= self.deadline
        if in_window if measured is None else measured:
            self.settled += 1
            result = self.result
            result.completed += 1
            key = str(status)
            result.statuses[key] = result.statuses.get(key, 0) + 1
            if status == self.spec.latency_status:
                self.latencies.append((done - scheduled) * 1000.0)
            if self.spec.record:
                ident = reply_id(body, self.id_path) if self.id_path is not None else ""
                offset = self.wall_offset
                result.records.append((scheduled + offset, done + offset, status, ident))
        return conn

    def more(self) -> bool:
        return time.perf_counter() < self.deadline and self.issued < self.spec.max_requests


async def _closed_loop(run: _Run) -> None:
    async def client(index: int) -> None:
        conn = await run.connect()
        try:
            while run.more():
                conn = await run.send(conn, index, time.perf_counter())
        finally:
            conn.close()

    await asyncio.gather(*(client(i) for i in range(run.spec.connections)))


async def _open_loop(run: _Run) -> None:
    rate = run.spec.rate_per_s
    assert rate is not None
    assert rate > 0
    idle: asyncio.Queue[tuple[int, _Connection]] = asyncio.Queue()
    for index in range(run.spec.connections):
        idle.put_nowait((index, await run.connect()))
    interval = 1.0 / rate
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, conn: _Connection, scheduled: float, measured: bool) -> None:
        conn = await run.send(conn, index, scheduled, measured)
        idle.put_nowait((index, conn))

    sent = 0
    while True:
        scheduled = start + sent * interval
        if scheduled >= run.deadline or sent >= run.spec.max_requests:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        index, conn = await idle.get()
        now = time.perf_counter()
        measured = scheduled >= run.measure_from
        if now - scheduled > 0.005 and measured:
            run.result.late_sends += 1
        if measured:
            run.result.scheduled += 1
        # Late: latency counts from the scheduled time. Early (the timer woke before its
        # time, as uvloop's millisecond timers may): from the real send.
        task = asyncio.create_task(one(index, conn, min(scheduled, now), measured))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    # The replies still due count too (the slowest of the window are among them): wait for
    # them up to the request timeout after the window; what has not come by then is unanswered.
    if tasks:
        last_reply_by = run.deadline + run.spec.request_timeout_s
        await asyncio.wait(tasks, timeout=max(0.0, last_reply_by - time.perf_counter()))
    run.result.unanswered = run.result.scheduled - run.settled
    for task in list(tasks):
        task.cancel()  # before its connection closes, so that it is not counted an error too
    for conn in run.opened:
        conn.close()


async def _cpu_window(run: _Run) -> None:
    """Read the watched processes' CPU counters when the measured window opens and closes."""
    try:
        await _read_cpu_window(run)
    except psycopg.Error as exc:  # the figures are optional: without the database, none at all
        print(f"load: no CPU figures: cannot read pg_stat_activity: {exc}", file=sys.stderr)


async def _read_cpu_window(run: _Run) -> None:
    backends = _Backends(run.spec.postgres_url) if run.spec.postgres_url else None
    try:
        await asyncio.sleep(max(0.0, run.measure_from - time.perf_counter()))
        first = sample(run.spec.watch | (backends.of(run.spec.watch) if backends else {}))
        await asyncio.sleep(max(0.0, run.deadline - time.perf_counter()))
        last = sample(run.spec.watch | (backends.of(run.spec.watch) if backends else {}))
    finally:
        if backends is not None:
            backends.close()
    if first is not None and last is not None:
        run.result.cpu = cpu_used(first, last)


class _Backends:
    """Which PostgreSQL backends the watched processes hold, from ``pg_stat_activity`` (one
    connection of its own, opened before the window; a query takes about a millisecond)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)

    def of(self, watch: dict[str, list[int]]) -> dict[str, list[int]]:
        rows = self._conn.execute(
            "SELECT pid, COALESCE(application_name, '') FROM pg_stat_activity"
        ).fetchall()
        return backend_roles(((int(pid), str(name)) for pid, name in rows), watch)

    def close(self) -> None:
        self._conn.close()


async def _measured(run: _Run, body: Coroutine[Any, Any, None]) -> None:
    """Run the load, and beside it (when processes are watched) :func:`_cpu_window`. A load
    that ends before its deadline (``max_requests``) reports no CPU figures."""
    if not run.spec.watch:
        await body
        return
    window = asyncio.create_task(_cpu_window(run))
    try:
        await body
        if not window.done() and time.perf_counter() >= run.deadline:
            await asyncio.wait({window}, timeout=1.0)  # its last sample is due now
    finally:
        window.cancel()


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415 - optional: the fastest loop when it is installed
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run_load(spec: LoadSpec) -> LoadResult:
    """Generate the load ``spec`` describes in this process and return what was measured.

    Raises:
        LoadError: if the server cannot be reached at the start.
    """
    if spec.connections < 1 or spec.duration_s <= 0:
        raise ValueError("a load needs at least one connection and a positive duration")
    run = _Run(spec)
    body: Coroutine[Any, Any, None] = _closed_loop(run) if spec.rate_per_s is None else _open_loop(run)
    # A margin past the open loop's last wait (which ends request_timeout_s after the window).
    bound = spec.warmup_s + spec.duration_s + spec.request_timeout_s + 5.0
    with _event_loop_runner() as runner:
        try:
            runner.run(asyncio.wait_for(_measured(run, body), bound))
        except TimeoutError as exc:
            raise LoadError(f"the server stopped answering: no end after {bound:.0f}s") from exc
    result = run.result
    result.elapsed_s = spec.duration_s
    result.latency_ms = summarize(run.latencies)
    return result


def run_load_process(spec: LoadSpec) -> LoadResult:
    """Run :func:`run_load` in a separate Python process (same interpreter) and wait for it.

    Raises:
        LoadError: if the process fails, overruns its time bound or prints no result.
    """
    bound = spec.warmup_s + spec.duration_s + spec.request_timeout_s + 35.0
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trueup.bench.load"],
            input=spec.to_json(),
            capture_output=True,
            text=True,
            timeout=bound,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"the load process overran its {bound:.0f}s bound") from exc
    if done.returncode != 0:
        raise LoadError(f"the load process failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    try:
        return LoadResult.from_json(done.stdout)
    except (ValueError, TypeError, KeyError) as exc:
        raise LoadError(f"the load process printed no result: {done.stdout[:200]!r}") from exc


def main() -> int:
    """``python -m trueup.bench.load``: a :class:`LoadSpec` on stdin, a result on stdout."""
    spec = LoadSpec.from_json(sys.stdin.read())
    try:
        result = run_load(spec)
    except LoadError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
