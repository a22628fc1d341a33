"""Apply the schema's migrations that a database has not seen yet."""

from __future__ import annotations

from datetime import UTC, datetime

from trueup.storage.engine import Engine
from trueup.storage.errors import StorageError
from trueup.storage.schema import MIGRATIONS, Migration

__all__ = ["SchemaTooNewError", "applied_versions", "migrate"]


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer Trueup: this one would write rows its queries, or
    the newer version's, do not find (for example sealed deltas without an account number)."""


_BOOKKEEPING = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def schema_version(engine: Engine) -> int | None:
    """The newest migration applied, without changing anything; ``None`` where none was
    (a database, or a schema, that no Trueup has opened)."""
    exists = (
        "SELECT to_regclass('schema_migrations') IS NOT NULL"
        if engine.dialect.name == "postgresql"
        else "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    with engine.read() as tx:
        if not tx.scalar(exists):
            return None
        version = tx.scalar("SELECT MAX(version) FROM schema_migrations")
    return None if version is None else int(version)


def applied_versions(engine: Engine) -> set[int]:
    with engine.write() as tx:
        # Serialised before the CREATE: two PostgreSQL sessions creating the same table at
        # once make one of them fail on the catalog's unique index, IF NOT EXISTS or not.
        engine.serialize(tx, "migrate")
        tx.execute(_BOOKKEEPING)
        return {int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations")}


def migrate(engine: Engine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions applied.

    Safe to run from several processes at once: on PostgreSQL a transaction-level advisory
    lock serialises them, on SQLite the single-writer lock does.

    Raises:
        SchemaTooNewError: if the database holds a migration this code does not know.
    """
    known = {migration.version for migration in migrations}
    unknown = sorted(applied_versions(engine) - known)
    if unknown:
        raise SchemaTooNewError(
            f"the database has schema version {unknown[-1]}, newer than this Trueup knows "
            f"({max(known, default=0)}): run the version that migrated it, or a later one"
        )
    applied: list[int] = []
    for migration in migrations:
        with engine.write() as tx:
            engine.serialize(tx, "migrate")  # applied_versions above created the bookkeeping table
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
