"""Apply the schema's migrations that a database has not seen yet."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from trueup.storage.engine import Engine, Leadership
from trueup.storage.errors import StorageError
from trueup.storage.schema import MIGRATIONS, Migration

__all__ = ["ROLES", "SchemaInUseError", "SchemaTooNewError", "applied_versions", "migrate", "schema_version"]

log = logging.getLogger(__name__)

ROLES = ("sequencer", "dispatcher")
"""The role locks a running Trueup holds: while another process holds one, it may be an older
version, which would go on writing rows of the old schema into the migrated one."""
UPGRADE_WAIT_S = 30.0
"""How long an upgrade waits for those locks (another new process migrating holds them briefly)."""
LOCK_ASK_S = 1.0
"""How often an upgrade asks after its role locks while its migrations run, as a leader asks
between rounds: a PostgreSQL lock session that sat idle for the server's lock timeout (10 s)
would be ended, and its lock with it, in the middle of a long migration."""


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer Trueup: this one would write rows its queries, or
    the newer version's, do not find (for example sealed deltas without an account number)."""


class SchemaInUseError(StorageError):
    """A migration is due while another Trueup process, perhaps of the older version, runs on
    the database: migrating under it would let it write rows the new schema does not expect."""


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


def migrate(
    engine: Engine,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    wait_s: float = UPGRADE_WAIT_S,
    ask_s: float = LOCK_ASK_S,
) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions applied.

    Safe to run from several processes at once: on PostgreSQL a transaction-level advisory
    lock serialises them, on SQLite the single-writer lock does. A database that has a schema
    is upgraded only while this process holds the sequencer and dispatcher role locks, so that
    an older Trueup still leading a role is found and the upgrade refused. It waits up to
    ``wait_s`` for them, counted afresh whenever another process applies a migration meanwhile
    (a new process migrating holds them). A process that holds no role when it looks (a
    standby, an API-only host) is not seen: stop every process of the old version first. Those
    of this version or later also stand by rather than lead on a schema other than their own
    (:class:`~trueup.service.roles.ElectedRole`). The locks are asked after every ``ask_s``
    while the migrations run, which keeps their sessions from being ended as idle; one lost all
    the same (a session terminated) stops the upgrade after the migration under way.

    Raises:
        SchemaTooNewError: if the database holds a migration this code does not know.
        SchemaInUseError: if a migration is due and another process kept a role lock, or a
            role lock was lost during the upgrade.
    """
    deadline, progress = time.monotonic() + wait_s, -1
    while True:
        done = applied_versions(engine)
        if len(done) > progress:  # another process is migrating: wait as long again from here
            deadline, progress = time.monotonic() + wait_s, len(done)
        known = {migration.version for migration in migrations}
        unknown = sorted(done - known)
        if unknown:
            raise SchemaTooNewError(
                f"the database has schema version {unknown[-1]}, newer than this Trueup knows "
                f"({max(known, default=0)}): run the version that migrated it, or a later one"
            )
        pending = tuple(migration for migration in migrations if migration.version not in done)
        if not pending:
            return []
        if not done:  # a new database: no Trueup has written to it
            return _apply(engine, pending)
        with ExitStack() as held:
            leaderships = [held.enter_context(engine.try_leader_lock(role)) for role in ROLES]
            if all(leaderships):
                log.info("migrating the database from schema %d to %d", max(done), pending[-1].version)
                with _asked_after(leaderships, ask_s) as still_held:
                    return _apply(engine, pending, still_held)
        if time.monotonic() >= deadline:
            raise SchemaInUseError(
                f"the database has schema version {max(done)} and this Trueup needs "
                f"{pending[-1].version}, but another Trueup process runs on it (it holds a role "
                "lock): stop every process of the older version, then start this one to migrate"
            )
        time.sleep(0.25)


@contextmanager
def _asked_after(leaderships: Sequence[Leadership], every_s: float) -> Iterator[Callable[[], bool]]:
    """Ask after each of ``leaderships`` every ``every_s`` on a thread of its own while the
    block runs (the migrations hold this one); yield a check, asking them all now, of whether
    all are still held (a lock's session serves one question at a time)."""
    stop = threading.Event()

    def ask() -> None:
        while not stop.wait(every_s):
            for leadership in leaderships:
                leadership.still_held()

    thread = threading.Thread(target=ask, name="trueup-upgrade-locks", daemon=True)
    thread.start()
    try:
        yield lambda: all(leadership.still_held() for leadership in leaderships)
    finally:
        stop.set()
        thread.join()


def _apply(
    engine: Engine, migrations: tuple[Migration, ...], still_held: Callable[[], bool] = lambda: True
) -> list[int]:
    applied: list[int] = []
    for migration in migrations:
        if not still_held():
            raise SchemaInUseError(
                f"this process lost a role lock while it migrated the database (now at schema "
                f"{max(applied_versions(engine))}): start it again to finish the upgrade"
            )
        with engine.write() as tx:
            engine.serialize(tx, "migrate")  # applied_versions above created the bookkeeping table
            done = tx.one("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,))
            if done is not None:
                continue
            statements = migration.statements
            if engine.dialect.name == "postgresql":
                statements += migration.postgresql_only
            for statement in statements:
                tx.execute(engine.dialect.ddl(statement))
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            applied.append(migration.version)
    return applied
