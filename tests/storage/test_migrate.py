"""Migrating: several processes may start at once on a fresh database; an upgrade never runs
under another process that still holds a role."""

from __future__ import annotations

import logging
import threading

import pytest

from trueup.storage import open_storage
from trueup.storage.migrate import SchemaInUseError, applied_versions, migrate, schema_version
from trueup.storage.schema import MIGRATIONS, SCHEMA_VERSION

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
