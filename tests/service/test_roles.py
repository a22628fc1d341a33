"""A role whose lock is lost while its holder runs on (its PostgreSQL session terminated, as a
server restart, a failover or an idle timeout would; its SQLite lock file deleted) is given up
at the holder's next round: it stands by, and the process that took the lock leads alone.
Before, the old holder led on beside the new one: two sequencers, and every webhook sent twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.conftest import lose_the_lock
from tests.e2e.server import wait_until
from trueup.sequencer.loop import SequencerLoop
from trueup.service.container import Services, open_services
from trueup.service.roles import ElectedRole
from trueup.service.settings import Settings
from trueup.storage.postgres import _still_locked
from trueup.webhooks.dispatcher import Dispatcher

POLL_S = 0.05


def _role(kind: str, services: Services) -> ElectedRole:
    if kind == "sequencer":
        return SequencerLoop(services.storage, services.sealer, interval_s=0.01, standby_poll_s=POLL_S)
    return Dispatcher(services.storage, services.settings, poll_s=0.01, standby_poll_s=POLL_S)


@pytest.fixture
def other_services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """A second process's services on the same database (its own connections and locks)."""
    opened = open_services(replace(Settings(), data_dir=tmp_path, database_url=database_url))
    yield opened
    opened.close()


@pytest.mark.parametrize("kind", ["sequencer", "dispatcher"])
def test_a_holder_that_lost_its_lock_stands_by_while_the_new_holder_leads(
    kind: str, database_url: str, services: Services, other_services: Services
) -> None:
    first, second = _role(kind, services), _role(kind, other_services)
    first.start()
    try:
        wait_until(lambda: first.is_leader)
        second.start()
        lose_the_lock(first.role, services)
        wait_until(lambda: second.is_leader)
        wait_until(lambda: not first.is_leader)  # it noticed, and the lock is now the other's
        assert (first.elections, second.elections) == (1, 1)
        second.stop()
        wait_until(lambda: first.is_leader)  # a standby like any other: it takes the role back
        assert first.elections == 2
    finally:
        second.stop()
        first.stop()


def test_a_postgresql_session_that_answers_without_the_lock_holds_no_role(pg_url: str) -> None:
    """The question is whether the session holds the lock, not whether it answers: a session
    that answers without it (a pooler handing out another one) is no holder."""
    key = 0x9234_5678_9ABC_DEF0 - 2**64  # negative, as half of the keys are
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert not _still_locked(conn, key)
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        assert _still_locked(conn, key)
        assert not _still_locked(conn, key + 1)
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert not _still_locked(conn, key)
    assert not _still_locked(conn, key)  # closed: no answer at all
