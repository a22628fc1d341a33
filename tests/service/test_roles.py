"""A role whose lock is lost while its holder runs on (its PostgreSQL session terminated, as a
server restart, a failover or an idle timeout would; its SQLite lock file deleted) is given up
at the holder's next round: it stands by, and the process that took the lock leads alone.
Before, the old holder led on beside the new one: two sequencers, and every webhook sent twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.conftest import lose_the_lock
from tests.e2e.server import wait_until
from tests.service.conftest import principal_for, sealed_log, write
from trueup.sequencer.loop import SequencerLoop
from trueup.service.container import Services, open_services
from trueup.service.roles import ElectedRole
from trueup.service.settings import Settings
from trueup.storage.postgres_locks import still_locked
from trueup.storage.schema import SCHEMA_VERSION
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


@pytest.mark.parametrize("kind", ["sequencer", "dispatcher"])
def test_a_standby_says_once_that_it_stands_by(
    kind: str, services: Services, other_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A second `trueup sequencer` or `dispatcher` printed nothing while it waited: nobody could
    tell waiting from hanging. It says so once, not at every poll, and again after it led."""
    caplog.set_level(logging.INFO, logger="trueup.service.roles")
    first, second = _role(kind, services), _role(kind, other_services)
    first.start()
    try:
        wait_until(lambda: first.is_leader)
        second.start()
        time.sleep(POLL_S * 6)  # several polls, each finding the role held
        first.stop()
        wait_until(lambda: second.is_leader)
    finally:
        second.stop()
        first.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "trueup.service.roles"]
    assert said == [
        f"this process holds the {kind} role",
        f"another process holds the {kind} role; this one stands by and takes it over when it is "
        f"free (checked every {POLL_S:g} s)",
        f"this process holds the {kind} role",
    ]


def test_a_postgresql_session_that_answers_without_the_lock_holds_no_role(pg_url: str) -> None:
    """The question is whether the session holds the lock, not whether it answers: a session
    that answers without it (a pooler handing out another one) is no holder."""
    key = 0x9234_5678_9ABC_DEF0 - 2**64  # negative, as half of the keys are
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert not still_locked(conn, key)
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        assert still_locked(conn, key)
        assert not still_locked(conn, key + 1)
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert not still_locked(conn, key)
    assert not still_locked(conn, key)  # closed: no answer at all


@pytest.mark.parametrize("kind", ["sequencer", "dispatcher"])
def test_a_process_stands_by_on_a_schema_other_than_its_own(
    kind: str, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """Left running (a standby, say) while a newer Trueup migrated the database, it would write
    rows of its own schema into the new one; it refuses the role, says why once, and leads
    again once the schema is its own."""
    with services.storage.engine.write() as tx:  # as a newer version's migration leaves it
        tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'x', 'now')")
    role = _role(kind, services)
    caplog.set_level(logging.INFO, logger="trueup.service.roles")
    role.start()
    try:
        refusal = f"the database has schema version 99 and this Trueup writes {SCHEMA_VERSION}: "
        wait_until(lambda: sum(m.startswith(refusal) for m in caplog.messages) == 1)
        time.sleep(10 * POLL_S)  # several more elections: still standing by, and said once
        assert (role.is_leader, role.elections) == (False, 0)
        assert sum(m.startswith(refusal) for m in caplog.messages) == 1
        with services.storage.engine.write() as tx:
            tx.execute("DELETE FROM schema_migrations WHERE version = 99")
        wait_until(lambda: role.is_leader)
    finally:
        role.stop()


@pytest.mark.parametrize("kind", ["sequencer", "dispatcher"])
def test_an_election_that_keeps_failing_logs_its_traceback_once(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the role's lock cannot be asked for at all (the database down; here its SQLite lock
    file is a directory), every election logged a whole traceback, each second for each role:
    thousands of lines a minute that buried the one saying what was wrong. The first failure in
    a row logs its traceback and each one after it one line, until an election succeeds."""
    services = open_services(
        replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'trueup.db'}")
    )
    lock = tmp_path / f"trueup.db.{kind}.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    role = _role(kind, services)
    caplog.set_level(logging.INFO, logger="trueup.service.roles")
    role.start()
    try:
        wait_until(lambda: sum("election failed" in m for m in caplog.messages) >= 5)
        assert role.state == "down"  # it cannot lead, and no other process is known to
        lock.rmdir()
        wait_until(lambda: role.state == "leader")
        # Said when it recovers, not when its leadership ends (hours later, perhaps).
        assert any(m.startswith(f"{kind} elections and leads work again, after ") for m in caplog.messages)
        assert f"this process holds the {kind} role" in caplog.messages
    finally:
        role.stop()
        services.close()
    failed = [r for r in caplog.records if "election failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed] == [True] + [False] * (len(failed) - 1)
    assert failed[1].getMessage().startswith(f"{kind} election failed again (2 in a row): ")


def test_a_sequencer_that_cannot_extend_a_damaged_log_says_down_and_logs_its_traceback_once(
    services: Services, other_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """It holds the lock, and each lead fails at once ("log is damaged"): /readyz said
    "standby", as if another process sealed, and each second's retry logged a whole traceback,
    since taking the lock counted as a success. It says "down" until a lead works."""
    sealed_log(services)
    with services.storage.engine.write() as tx:  # 30 leaves: 16 + 8 + 4 + 2, the 2's node gone
        tx.execute("DELETE FROM tree_nodes WHERE level = 1")
    caplog.set_level(logging.INFO, logger="trueup.service.roles")
    role = _role("sequencer", other_services)  # a process that reads the log's right edge anew
    assert role.state == "standby"  # not yet tried
    states: list[str] = []
    role.start()
    try:
        wait_until(
            lambda: (
                states.append(role.state) is None
                and sum("sequencer lead failed" in m for m in caplog.messages) >= 3
            ),
            interval_s=0.001,
        )
    finally:
        role.stop()
    assert "leader" not in states and states[-1] == "down"  # not "leader" for a moment each try
    failed = [r for r in caplog.records if "sequencer lead failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed] == [True] + [False] * (len(failed) - 1)
    assert "are missing" in failed[1].getMessage()  # what the lead found, in one line
    assert sum("this process holds the sequencer role" in m for m in caplog.messages) == 1


def test_a_sequencer_whose_seals_keep_failing_says_down_until_one_works(tmp_path: Path) -> None:
    """It holds the role and its log loads, but each seal fails (a queued delta's amount is not
    a number): /readyz said "leader" while nothing was sealed."""
    services = open_services(
        replace(Settings(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'trueup.db'}")
    )
    role = _role("sequencer", services)
    try:
        write(services, principal_for(services), {"key": "bad", "accountId": "c1", "bits": 5})
        with services.storage.engine.write() as tx:
            tx.execute("UPDATE deltas SET amount = 'abc' WHERE status = 'queued'")
        role.start()
        wait_until(lambda: role.state == "down" and role.is_leader)
        with services.storage.engine.write() as tx:
            tx.execute("UPDATE deltas SET amount = 5 WHERE status = 'queued'")
        wait_until(lambda: role.state == "leader")
        head = services.storage.log.head()
        assert head is not None and head.size == 1
    finally:
        role.stop()
        services.close()
