"""The sequencer's loop when a period is locked between a seal's plan and its write."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.server import wait_until
from tests.service.conftest import principal_for, write
from trueup.sequencer.loop import SequencerLoop
from trueup.service.container import Services
from trueup.storage.log import SealOutcome, SealPlan


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
