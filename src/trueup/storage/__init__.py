"""Storage: one interface, two backends (embedded SQLite, PostgreSQL), one schema.

:func:`open_storage` picks the backend from a database URL and applies pending migrations.
No SQL lives outside this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trueup.storage.balances import BalanceStore
from trueup.storage.checkpoints import CheckpointStore
from trueup.storage.engine import Engine
from trueup.storage.errors import IntegrityConflictError, StorageError, StorageUnavailableError
from trueup.storage.log import LogStore, queue_stats
from trueup.storage.migrate import ROLES, migrate
from trueup.storage.schema import CLEAR_SECRETS, GROWING_TABLES
from trueup.storage.secret_box import SecretBox
from trueup.storage.tenants import TenantStore
from trueup.storage.webhooks import WebhookStore
from trueup.storage.writes import WriteStore

__all__ = [
    "IntegrityConflictError",
    "Probe",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "is_database_url",
    "open_storage",
    "sqlite_path",
]


@dataclass(frozen=True, slots=True)
class Probe:
    queue_depth: int
    oldest_queued_at: str | None
    """The acceptance time of the oldest queued delta."""
    roles_held: dict[str, bool | None]
    """Whether some process, here or on another host, holds each single-writer role now
    (``sequencer``, ``dispatcher``; ``None`` where the backend cannot tell: a lock file it may
    not open)."""


@dataclass(frozen=True, slots=True)
class Storage:
    """Every repository over one engine."""

    engine: Engine
    tenants: TenantStore
    writes: WriteStore
    log: LogStore
    balances: BalanceStore
    checkpoints: CheckpointStore
    webhooks: WebhookStore

    def close(self) -> None:
        self.engine.close()

    def keep_secrets_with(self, box: SecretBox) -> None:
        """Seal the secrets the database keeps (webhook secrets, and the reply of an endpoint's
        creation kept under its idempotency key) with ``box``, and open them with it."""
        self.webhooks.keep_secrets_with(box)
        self.writes.keep_secrets_with(box)

    def seal_clear_secrets(self, replies_of: str) -> int:
        """Seal what an older Trueup kept in clear (webhook secrets, and the replies of the route
        ``replies_of`` kept under idempotency keys), once: only a database that migration 14
        marked is looked through. Return how many values were sealed."""
        with self.engine.read() as tx:
            if tx.scalar("SELECT value FROM counters WHERE name = ?", (CLEAR_SECRETS,)) is None:
                return 0
        sealed = self.webhooks.seal_clear_secrets() + self.writes.seal_clear_replies(replies_of)
        with self.engine.write() as tx:
            tx.execute("DELETE FROM counters WHERE name = ?", (CLEAR_SECRETS,))
        return sealed

    def refresh_statistics(self) -> None:
        """Bring the planner's statistics of the tables that grow with the log up to date
        (``ANALYZE`` on PostgreSQL, nothing on SQLite: :meth:`Engine.refresh_statistics`)."""
        self.engine.refresh_statistics(GROWING_TABLES)

    def probe(self, wait_s: float | None = None) -> Probe:
        """What ``/readyz`` and ``/metrics`` read of the database, in one read whose wait for a
        pooled connection ``wait_s`` bounds (so a probe answers within it)."""
        with self.engine.read(wait_s) as tx:
            depth, oldest = queue_stats(tx)
            held = {role: self.engine.leader_held(role, tx) for role in ROLES}
        return Probe(depth, oldest, held)

    def ping(self) -> None:
        """Raise :class:`StorageUnavailableError` unless the database answers."""
        with self.engine.read() as tx:
            tx.execute("SELECT 1")


_SQLITE = "sqlite:///"
_POSTGRESQL = ("postgresql://", "postgres://")


def sqlite_path(database_url: str) -> Path | None:
    """The file a ``sqlite:///<path>`` URL names; ``None`` for any other URL."""
    return Path(database_url.removeprefix(_SQLITE)) if database_url.startswith(_SQLITE) else None


def is_database_url(database_url: str) -> bool:
    """Whether the URL names a backend :func:`open_storage` has (SQLite or PostgreSQL); a
    SQLite URL must name a file (``sqlite:///`` alone named the working directory)."""
    if database_url.startswith(_SQLITE):
        return database_url != _SQLITE
    return database_url.startswith(_POSTGRESQL)


def open_storage(
    database_url: str, *, pool_size: int = 8, run_migrations: bool = True, checkpoint_wal: bool = True
) -> Storage:
    """Open ``sqlite:///path/to/file.db`` or ``postgresql://…`` and migrate it.

    ``checkpoint_wal=False`` (SQLite): leave the WAL to the server, for a command that only
    reads beside it (:class:`~trueup.storage.sqlite.SQLiteEngine`)."""
    engine: Engine
    path = sqlite_path(database_url)
    if path is not None:
        from trueup.storage.sqlite import SQLiteEngine  # noqa: PLC0415 - load only the backend used

        engine = SQLiteEngine(path, checkpoint_wal=checkpoint_wal)
    elif database_url.startswith(_POSTGRESQL):
        from trueup.storage.postgres import PostgresEngine  # noqa: PLC0415 - psycopg only when used

        engine = PostgresEngine(database_url, max_size=pool_size)
    else:
        raise StorageError(
            f"unsupported database URL {database_url.split(':', 1)[0]!r}: "
            "use sqlite:///path or postgresql://…"
        )
    if run_migrations:
        try:
            migrate(engine)
        except BaseException:
            engine.close()
            raise
    return Storage(
        engine=engine,
        tenants=TenantStore(engine),
        writes=WriteStore(engine),
        log=LogStore(engine),
        balances=BalanceStore(engine),
        checkpoints=CheckpointStore(engine),
        webhooks=WebhookStore(engine),
    )
