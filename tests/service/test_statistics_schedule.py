"""The sequencer keeps PostgreSQL's planner statistics in step with the log it grows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tests.conftest import lose_the_lock
from tests.service.conftest import principal_for, write
from trueup.sequencer.loop import SequencerLoop, StatisticsSchedule
from trueup.service.container import Services, open_services
from trueup.service.settings import Settings


def test_the_schedule_refreshes_on_taking_the_role_then_after_a_tenth_more_growth() -> None:
    schedule = StatisticsSchedule(min_growth=100, fraction=0.1)
    assert schedule.due(0)  # the role was just taken
    schedule.refreshed(0)
    assert not schedule.due(99)
    assert schedule.due(100)  # at least min_growth leaves
    schedule.refreshed(5_000)
    assert not schedule.due(5_499)
    assert schedule.due(5_500)  # a tenth of the size at the last refresh


def test_by_default_the_statistics_are_refreshed_each_time_the_log_doubles() -> None:
    schedule = StatisticsSchedule()
    refreshed_at = []
    for size in range(0, 1_000_001, 1_000):
        if schedule.due(size):
            schedule.refreshed(size)
            refreshed_at.append(size)
    # 10,000 leaves at least, then twice the size of the last refresh.
    assert refreshed_at == [0, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000]


def _deltas_analysed(services: Services) -> int:
    """How many times ``deltas`` was analysed by an ``ANALYZE`` statement (autovacuum's own
    analyses, where it runs, count apart)."""
    with services.storage.engine.read() as tx:
        sql = "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'deltas'::regclass"
        return int(tx.scalar(sql))


def test_the_sequencer_refreshes_postgresqls_statistics_as_the_log_grows(pg_url: str, tmp_path: Path) -> None:
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=pg_url))
    loop = SequencerLoop(
        services.storage,
        services.sealer,
        interval_s=0.01,
        statistics=StatisticsSchedule(min_growth=20, fraction=0.1),
    )
    try:
        assert _deltas_analysed(services) == 0  # a fresh schema
        who = principal_for(services)
        loop.start()
        _wait_for(lambda: _deltas_analysed(services) == 1)  # on taking the role
        write(services, who, *[{"key": f"a{i}", "accountId": "c1", "bits": 1} for i in range(19)])
        _wait_for(lambda: loop.seals >= 1 and services.storage.log.queued_at_least(1) == 0)
        write(services, who, *[{"key": f"b{i}", "accountId": "c2", "bits": 1} for i in range(2)])
        _wait_for(lambda: services.storage.log.queued_at_least(1) == 0)
        _wait_for(lambda: _deltas_analysed(services) == 2)  # 21 leaves: grown by at least 20
        with services.storage.engine.read() as tx:  # analysed with all 21 rows in the table
            assert tx.scalar("SELECT reltuples FROM pg_class WHERE oid = 'deltas'::regclass") == 21
        assert _deltas_analysed(services) == 2  # and not on the seal of 19 leaves
    finally:
        loop.stop()
        services.close()


def _wait_for(condition: Callable[[], bool]) -> None:
    """Wait for what the sequencer does on its own; the bound only keeps a broken run from hanging."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the sequencer did not get there"
        time.sleep(0.01)


def test_the_sequencer_refreshes_them_each_time_it_takes_the_role(pg_url: str, tmp_path: Path) -> None:
    """Taken again (its lock was lost, then won back), the role starts with a refresh, as on
    its first taking: whoever held it meanwhile may have let them fall behind."""
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=pg_url))
    loop = SequencerLoop(services.storage, services.sealer, interval_s=0.01, standby_poll_s=0.05)
    try:
        loop.start()
        _wait_for(lambda: _deltas_analysed(services) == 1)
        lose_the_lock(loop.role, services)
        _wait_for(lambda: loop.elections == 2)
        _wait_for(lambda: _deltas_analysed(services) == 2)
    finally:
        loop.stop()
        services.close()
