"""Migrating: several processes may start at once on a fresh database; an upgrade never runs
under another process that still holds a role."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from tests.conftest import end_lock_session
from trueup.storage import open_storage
from trueup.storage.migrate import SchemaInUseError, applied_versions, migrate, schema_version
from trueup.storage.schema import MIGRATIONS, SCHEMA_VERSION, Migration

PREVIOUS = MIGRATIONS[-2].version
"""The schema of the previous release, which an upgrade starts from."""


def test_servers_starting_at_once_on_a_fresh_database_all_migrate_it(database_url: str) -> None:
    """As `serve --workers 4` or several hosts do: each opens the database and migrates it."""
    starters = 4
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            open_storage(database_url, pool_size=2).close()
        except BaseException as exc:  # collected, and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    storage = open_storage(database_url, run_migrations=False)
    try:
        assert applied_versions(storage.engine) == {m.version for m in MIGRATIONS}
        with storage.engine.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM schema_migrations") == len(MIGRATIONS)
    finally:
        storage.close()


def test_an_upgrade_waits_for_and_then_refuses_a_process_still_holding_a_role(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An older Trueup still running holds the sequencer lock: migrating under it would let it
    seal rows of the old schema (deltas without an account number) into the new one. Several
    new processes starting at once each hold the locks only while migrating, so once the
    other is done, nothing is due and a waiter goes on (the test above)."""
    old = open_storage(database_url, run_migrations=False)
    new = open_storage(database_url, run_migrations=False)
    try:
        migrate(old.engine, MIGRATIONS[:-1])  # the database as the previous version left it
        with old.engine.try_leader_lock("sequencer") as leadership:
            assert leadership  # the old server, sealing
            with pytest.raises(
                SchemaInUseError,
                match=f"^the database has schema version {PREVIOUS} and this Trueup needs {SCHEMA_VERSION}, ",
            ):
                migrate(new.engine, wait_s=0.3)
            assert schema_version(new.engine) == PREVIOUS  # nothing changed under it
        caplog.set_level(logging.INFO, logger="trueup.storage.migrate")
        assert migrate(new.engine) == [SCHEMA_VERSION]  # stopped: the upgrade goes ahead
        assert f"migrating the database from schema {PREVIOUS} to {SCHEMA_VERSION}" in caplog.messages
        with old.engine.try_leader_lock("dispatcher") as leadership:
            assert leadership and migrate(new.engine, wait_s=0) == []  # nothing due: no wait
    finally:
        old.close()
        new.close()


def test_a_new_database_is_migrated_whatever_locks_are_held(database_url: str) -> None:
    """No Trueup has written to it: nothing of an older schema can be written into it."""
    holder = open_storage(database_url, run_migrations=False)
    try:
        with holder.engine.try_leader_lock("sequencer") as leadership:
            assert leadership
            assert migrate(holder.engine, wait_s=0) == [m.version for m in MIGRATIONS]
    finally:
        holder.close()


def test_an_upgrade_goes_ahead_once_the_holder_lets_go(database_url: str) -> None:
    """Waiting is for a holder that finishes (another new process migrating): the upgrade
    starts when the lock is released, within the wait."""
    holder = open_storage(database_url, run_migrations=False)
    new = open_storage(database_url, run_migrations=False)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.engine.try_leader_lock("dispatcher") as leadership:
            assert leadership
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    try:
        migrate(holder.engine, MIGRATIONS[:-1])
        thread.start()
        held.wait(30)
        threading.Timer(0.3, release.set).start()
        assert migrate(new.engine, wait_s=60) == [SCHEMA_VERSION]
    finally:
        release.set()
        thread.join(30)
        holder.close()
        new.close()


def _slow(version: int, seconds: float) -> Migration:
    return Migration(version, f"slow {version}", (f"SELECT pg_sleep({seconds})",))


def _wait_for_query(url: str, text: str) -> None:
    """Until a session of the server runs ``text`` (a migration under way)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(600):
            if conn.execute("SELECT 1 FROM pg_stat_activity WHERE query = %s", (text,)).fetchone():
                return
            time.sleep(0.05)
    raise AssertionError(f"no session ran {text!r}")


def test_an_upgrade_keeps_its_role_locks_through_a_migration_longer_than_their_idle_timeout(
    pg_url: str,
) -> None:
    """The server ends a lock session idle for the lock timeout, and the lock with it (a frozen
    holder lets go): an upgrade's locks sat idle while its migrations ran, so a migration longer
    than that (migration 7 takes about a minute a million deltas) let an older process left
    standing by take a role half-way through the upgrade."""
    new = open_storage(pg_url, run_migrations=False)
    other = open_storage(pg_url, run_migrations=False)
    new.engine.lock_idle_timeout_s = 1.0  # type: ignore[attr-defined]
    slow = _slow(SCHEMA_VERSION + 1, 4.01)
    result: list[object] = []
    try:
        migrate(new.engine)
        upgrade = threading.Thread(
            target=lambda: result.append(migrate(new.engine, (*MIGRATIONS, slow), ask_s=0.2))
        )
        upgrade.start()
        _wait_for_query(pg_url, slow.statements[0])
        time.sleep(2.0)  # twice the lock timeout, well inside the migration
        for role in ("sequencer", "dispatcher"):
            with other.engine.try_leader_lock(role) as leadership:
                assert not leadership, f"the {role} lock was free during the upgrade"
        upgrade.join(60)
        assert result == [[slow.version]]
    finally:
        new.close()
        other.close()


def test_an_upgrade_that_loses_a_role_lock_stops_after_the_migration_under_way(pg_url: str) -> None:
    """Its session terminated (an operator, a failover): another process may lead now, so the
    migrations after the one running are left for a start that holds the locks again."""
    new = open_storage(pg_url, run_migrations=False)
    first, second = _slow(SCHEMA_VERSION + 1, 1.01), _slow(SCHEMA_VERSION + 2, 0)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate(new.engine, (*MIGRATIONS, first, second))
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    try:
        migrate(new.engine)
        thread = threading.Thread(target=upgrade)
        thread.start()
        _wait_for_query(pg_url, first.statements[0])
        end_lock_session(pg_url, new.engine, "dispatcher")
        thread.join(60)
        assert len(errors) == 1 and isinstance(errors[0], SchemaInUseError)
        assert str(errors[0]) == (
            f"this process lost a role lock while it migrated the database (now at schema "
            f"{first.version}): start it again to finish the upgrade"
        )
        assert schema_version(new.engine) == first.version
        assert migrate(new.engine, (*MIGRATIONS, first, second)) == [second.version]  # started again
    finally:
        new.close()
