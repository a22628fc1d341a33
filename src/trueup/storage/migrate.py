"""Apply the schema's migrations that a database has not seen yet."""

from __future__ import annotations

from datetime import UTC, datetime

from trueup.storage.engine import Engine
from trueup.storage.schema import MIGRATIONS, Migration

__all__ = ["applied_versions", "migrate"]

_BOOKKEEPING = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def applied_versions(engine: Engine) -> set[int]:
    with engine.write() as tx:
        tx.execute(_BOOKKEEPING)
        return {int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations")}


def migrate(engine: Engine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions applied.

    Safe to run from several processes at once: on PostgreSQL a transaction-level advisory
    lock serialises them, on SQLite the single-writer lock does.
    """
    applied: list[int] = []
    for migration in migrations:
        with engine.write() as tx:
            tx.execute(_BOOKKEEPING)
            engine.serialize(tx, "migrate")
            done = tx.one("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,))
            if done is not None:
                continue
            for statement in migration.statements:
                tx.execute(engine.dialect.ddl(statement))
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            applied.append(migration.version)
    return applied
