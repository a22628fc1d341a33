"""Migrating: several processes may start at once on a fresh database."""

from __future__ import annotations

import threading

from trueup.storage import open_storage
from trueup.storage.migrate import applied_versions
from trueup.storage.schema import MIGRATIONS


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
