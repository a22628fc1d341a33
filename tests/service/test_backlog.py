"""Backpressure: writes are held back while the log is behind (pacing), and refused (503,
Retry-After) while it is too far behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.core.errors import UnavailableError
from trueup.service.backlog import QueueGuard
from trueup.service.container import Services, open_services
from trueup.service.metrics import PACED_SECONDS, PACED_WRITES
from trueup.service.settings import Settings
from trueup.storage.log import LogStore


def test_the_guard_counts_the_queue_no_further_than_its_limit(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(7)])
    assert services.storage.log.queued_at_least(5) == 5
    assert services.storage.log.queued_at_least(100) == 7
    seal_all(services)
    assert services.storage.log.queued_at_least(100) == 0


def test_writes_are_refused_while_the_queue_is_full(database_url: str, tmp_path: Path) -> None:
    base = replace(Settings(), data_dir=tmp_path / "data", database_url=database_url)
    filler = open_services(replace(base, max_queue_depth=0))
    try:
        who = principal_for(filler)
        write(filler, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(5)])
    finally:
        filler.close()
    services = open_services(replace(base, max_queue_depth=5))
    try:
        body = {"items": [{"key": "one-more", "accountId": "c1", "bits": 1}]}
        with pytest.raises(UnavailableError, match="at least 5 deltas behind") as refused:
            asyncio.run(services.writes.writes(who, body, b"{}", None))
        assert refused.value.retry_after_seconds is not None
        assert services.storage.log.queued_at_least(100) == 5, "nothing of the refused request was stored"
    finally:
        services.close()


def test_the_guard_reads_the_depth_again_after_its_interval(services: Services) -> None:
    who = principal_for(services)
    now = [0.0]
    guard = QueueGuard(services.storage.log, 3, refresh_s=0.5, clock=lambda: now[0])
    asyncio.run(guard.check())  # reads 0
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    asyncio.run(guard.check())  # within the interval: still 0, no read
    now[0] = 0.6
    with pytest.raises(UnavailableError):
        asyncio.run(guard.check())
    seal_all(services)
    now[0] = 1.2
    asyncio.run(guard.check())


def test_a_limit_of_zero_turns_the_guard_off(services: Services) -> None:
    guard = QueueGuard(services.storage.log, 0)
    asyncio.run(guard.check())


class _FakeTime:
    """A clock that moves only when the guard sleeps; ``on_sleep`` runs at each sleep (in a
    thread: the test helpers that write run an event loop of their own)."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda n: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.to_thread(self._on_sleep, len(self.sleeps))


def _paced_guard(services: Services, time: _FakeTime, limit: int = 0, pace: int = 3) -> QueueGuard:
    return QueueGuard(
        services.storage.log,
        limit,
        pace=pace,
        max_wait_s=1.0,
        refresh_s=0.5,
        pace_refresh_s=0.25,
        clock=time.clock,
        sleep=time.sleep,
    )


def test_a_write_waits_while_the_queue_is_at_the_pace_depth_and_goes_once_it_falls_below(
    services: Services,
) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    time = _FakeTime(on_sleep=lambda n: seal_all(services) if n == 2 else None)
    paced, waited = PACED_WRITES._value.get(), PACED_SECONDS._value.get()
    asyncio.run(_paced_guard(services, time).check())
    # Held for two looks at the queue (0.25 s apart); the second found it sealed.
    assert time.sleeps == [0.25, 0.25]
    assert PACED_WRITES._value.get() == paced + 1
    assert PACED_SECONDS._value.get() == pytest.approx(waited + 0.5)


def test_a_write_below_the_pace_depth_does_not_wait(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(2)])
    time = _FakeTime()
    asyncio.run(_paced_guard(services, time).check())
    assert time.sleeps == []


def test_a_held_write_goes_ahead_after_the_longest_wait(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    time = _FakeTime()  # nothing is ever sealed
    asyncio.run(_paced_guard(services, time).check())
    assert time.sleeps == [0.25] * 4 and time.now == 1.0


def test_a_held_write_is_refused_when_the_queue_reaches_the_limit_meanwhile(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])

    def more_arrive(n: int) -> None:
        if n == 1:
            write(services, who, {"key": "late", "accountId": "c1", "bits": 1})

    time = _FakeTime(on_sleep=more_arrive)
    with pytest.raises(UnavailableError, match="at least 4 deltas behind"):
        asyncio.run(_paced_guard(services, time, limit=4).check())
    # The count against the limit is read again after refresh_s (0.5 s), not at every look.
    assert time.sleeps == [0.25, 0.25]


class _CountedLog(LogStore):
    """The real queue count, with each read counted and, when asked, held until released."""

    def __init__(self, services: Services) -> None:
        super().__init__(services.storage.engine)
        self.reads = 0
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def queued_at_least(self, limit: int) -> int:
        self.reads += 1
        self.started.set()
        self.release.wait(10)
        return super().queued_at_least(limit)


def test_many_writes_arriving_at_once_share_one_read_of_the_queue(services: Services) -> None:
    log = _CountedLog(services)
    guard = QueueGuard(log, 100, pace=50)

    async def many() -> None:
        await asyncio.gather(*(guard.check() for _ in range(20)))

    asyncio.run(many())
    assert log.reads == 1


def test_a_read_whose_request_is_cancelled_still_updates_the_depth(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    log = _CountedLog(services)
    now = [0.0]
    guard = QueueGuard(log, 3, refresh_s=0.5, clock=lambda: now[0])

    async def cancelled_then_another() -> None:
        log.release.clear()
        first = asyncio.ensure_future(guard.check())
        await asyncio.to_thread(log.started.wait, 10)
        first.cancel()  # the client went away while the depth was being read
        with pytest.raises(asyncio.CancelledError):
            await first
        log.release.set()
        await asyncio.sleep(0)
        while log.reads == 1 and guard._depth._reading is not None:  # the read finishes on its own
            await asyncio.sleep(0.01)
        # The next write, within refresh_s, uses what that read found: 3 queued, at the limit.
        with pytest.raises(UnavailableError):
            await guard.check()

    asyncio.run(cancelled_then_another())
    assert log.reads == 1


def test_pacing_at_or_above_the_limit_is_off_and_the_limit_decides(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[{"key": f"k{i}", "accountId": "c1", "bits": 1} for i in range(3)])
    time = _FakeTime()
    for pace in (3, 5):
        guard = QueueGuard(services.storage.log, 3, pace=pace, clock=time.clock, sleep=time.sleep)
        with pytest.raises(UnavailableError):
            asyncio.run(guard.check())
    assert time.sleeps == []
