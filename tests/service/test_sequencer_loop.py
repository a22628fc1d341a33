"""The sequencer's loop when a seal cannot be written: a period locked between its plan and
its write, or a failure that repeats."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.server import wait_until
from tests.service.conftest import principal_for, write
from trueup.sequencer.loop import MAX_FAILURE_WAIT_S, SequencerLoop
from trueup.service.container import Services
from trueup.service.metrics import SEAL_FAILURES
from trueup.storage.seal import SealOutcome, SealPlan


def test_a_lock_landing_while_a_seal_is_planned_is_planned_again_at_once(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock is real, taken by the seal's own first write attempt: the seal finds the lock
    count moved and writes nothing. The loop plans again at once (its interval, 60 s here,
    is not waited) and logs no error, as for any routine race."""
    who = principal_for(services)
    write(services, who, {"key": "k1", "accountId": "c1", "bits": 5, "occurredAt": "2026-10-10T00:00:00Z"})
    seal = services.storage.log.seal
    locked: list[bool] = []

    def lock_first(plan: SealPlan) -> SealOutcome:
        if not locked:
            locked.append(services.balances.lock_period(who, {"customerId": "c1", "period": "2026-01"})[1])
        return seal(plan)

    services.storage.log.seal = lock_first  # type: ignore[method-assign]
    loop = SequencerLoop(services.storage, services.sealer, interval_s=60.0)
    caplog.set_level(logging.INFO, logger="trueup")
    try:
        loop.start()
        wait_until(lambda: loop.seals == 1)
    finally:
        loop.stop()
    assert locked == [True]
    assert services.storage.log.queue_stats()[0] == 0  # sealed, by the second plan
    records: list[Any] = [r for r in caplog.records if r.name.startswith("trueup.")]
    assert [(r.levelname, r.getMessage()) for r in records if r.levelno >= logging.INFO] == [
        ("INFO", "this process holds the sequencer role"),
        ("INFO", "seal planned again: a period was locked while this seal was planned"),
    ]


def test_seals_failing_in_a_row_back_off_log_one_traceback_and_are_counted(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A seal that keeps failing (a disk full, a row the code cannot take) was tried again every
    interval with a traceback each time: hundreds of lines a second. Each wait now doubles, up
    to MAX_FAILURE_WAIT_S, and only the first failure logs its traceback."""
    who = principal_for(services)
    write(services, who, {"key": "k1", "accountId": "c1", "bits": 5})

    def broken(limit: int) -> SealOutcome:
        raise OSError("database or disk is full")

    services.sealer.seal_once = broken  # type: ignore[method-assign]
    reported: list[str] = []
    loop = SequencerLoop(
        services.storage, services.sealer, interval_s=0.5, on_failure=lambda: reported.append("failed")
    )
    waits: list[float] = []
    real_wait = loop._stop.wait

    def recorded(timeout: float | None = None) -> bool:
        waits.append(float(timeout or 0))
        if len(waits) == 7:
            loop._stop.set()
        return real_wait(0)

    loop._stop.wait = recorded  # type: ignore[method-assign]
    before = SEAL_FAILURES._value.get()
    caplog.set_level(logging.INFO, logger="trueup")
    loop.start()
    wait_until(lambda: not loop._thread.is_alive())
    assert waits[:7] == [0.5, 1.0, 2.0, 4.0, MAX_FAILURE_WAIT_S, MAX_FAILURE_WAIT_S, MAX_FAILURE_WAIT_S]
    assert SEAL_FAILURES._value.get() - before == 7 and reported == ["failed"] * 7
    failed = [r for r in caplog.records if r.getMessage().startswith("seal failed")]
    assert [r.exc_info is not None for r in failed] == [True] + [False] * 6
    assert failed[1].getMessage() == (
        "seal failed again (2 in a row; next try in 1.00 s): database or disk is full"
    )


def test_seals_that_work_again_after_failing_say_so_once(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The log ended at the last failure: whether sealing had resumed was not in it."""
    who = principal_for(services)
    write(services, who, {"key": "k1", "accountId": "c1", "bits": 5})
    real_seal = services.sealer.seal_once
    tries: list[int] = []

    def failing_twice(limit: int) -> SealOutcome | None:
        tries.append(limit)
        if len(tries) <= 2:
            raise OSError("database or disk is full")
        return real_seal(limit)

    services.sealer.seal_once = failing_twice  # type: ignore[method-assign]
    loop = SequencerLoop(services.storage, services.sealer, interval_s=0.01)
    caplog.set_level(logging.INFO, logger="trueup")
    loop.start()
    try:
        wait_until(lambda: loop.seals == 1 and len(tries) >= 5)  # k1 sealed, and more tries after
    finally:
        loop.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "trueup.sequencer.loop"]
    assert said.count("seals work again, after 2 failures in a row") == 1, said
