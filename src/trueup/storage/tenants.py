"""Tenants and their API keys. Only a keyed hash of each key's secret is stored."""

from __future__ import annotations

from dataclasses import dataclass

from trueup.storage.engine import Engine, Row, Tx

__all__ = ["ApiKeyRecord", "TenantRecord", "TenantStore"]


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    name: str
    env: str
    plan: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    tenant: TenantRecord
    secret_hash: bytes
    read_only: bool
    created_at: str
    revoked_at: str | None


_KEY_COLUMNS = """k.id, k.secret_hash, k.read_only, k.created_at, k.revoked_at,
    t.id, t.name, t.env, t.plan, t.created_at"""


def _key_from_row(row: Row) -> ApiKeyRecord:
    tenant = TenantRecord(
        id=str(row[5]), name=str(row[6]), env=str(row[7]), plan=str(row[8]), created_at=str(row[9])
    )
    return ApiKeyRecord(
        id=str(row[0]),
        tenant=tenant,
        secret_hash=bytes(row[1]),
        read_only=bool(row[2]),
        created_at=str(row[3]),
        revoked_at=None if row[4] is None else str(row[4]),
    )


PEPPER_CHECK = "key_pepper_check"
"""The name under which ``counters`` keeps the key pepper's check value."""


def store_pepper_check(tx: Tx, value: int) -> None:
    """Keep ``value`` as the pepper's check value, unless one is kept already."""
    tx.execute(
        f"INSERT INTO counters (name, value) VALUES ('{PEPPER_CHECK}', ?) ON CONFLICT (name) DO NOTHING",
        (value,),
    )


class TenantStore:
    """CRUD for tenants and API keys."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def count(self) -> int:
        with self._engine.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM tenants"))

    def find(self, name: str, env: str) -> TenantRecord | None:
        with self._engine.read() as tx:
            row = tx.one(
                "SELECT id, name, env, plan, created_at FROM tenants WHERE name = ? AND env = ?",
                (name, env),
            )
        return None if row is None else TenantRecord(*(str(value) for value in row))

    def ensure(self, tenant: TenantRecord) -> TenantRecord:
        """Create ``tenant`` unless one with its name and env exists; return the stored one."""
        with self._engine.write() as tx:
            tx.execute(
                """INSERT INTO tenants (id, name, env, plan, created_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (name, env) DO NOTHING""",
                (tenant.id, tenant.name, tenant.env, tenant.plan, tenant.created_at),
            )
            row = tx.one(
                "SELECT id, name, env, plan, created_at FROM tenants WHERE name = ? AND env = ?",
                (tenant.name, tenant.env),
            )
        assert row is not None
        return TenantRecord(*(str(value) for value in row))

    def set_plan(self, name: str, env: str, plan: str) -> str | None:
        """Put tenant ``name`` (``env``) on ``plan``; its plan before, or ``None`` when there is no
        such tenant. A key's plan is read with the key, so servers apply it once their cached
        keys expire (``TRUEUP_KEY_CACHE_TTL_S``)."""
        with self._engine.write() as tx:
            row = tx.one("SELECT plan FROM tenants WHERE name = ? AND env = ?", (name, env))
            if row is None:
                return None
            tx.execute("UPDATE tenants SET plan = ? WHERE name = ? AND env = ?", (plan, name, env))
        return str(row[0])

    def pepper_check(self) -> int | None:
        """The check value of the key pepper this database is bound to, or ``None``."""
        with self._engine.read() as tx:
            value = tx.scalar(f"SELECT value FROM counters WHERE name = '{PEPPER_CHECK}'")
        return None if value is None else int(value)

    def bind_pepper(self, value: int) -> None:
        """Bind the database to the key pepper whose check value is ``value``, unless it is
        bound already."""
        with self._engine.write() as tx:
            store_pepper_check(tx, value)

    def add_first(self, tenant: TenantRecord, key_id: str, secret_hash: bytes) -> bool:
        """Store ``tenant`` and its first key only if the database has no tenant yet."""
        with self._engine.write() as tx:
            self._engine.serialize(tx, "first-tenant")  # PostgreSQL; SQLite has one writer
            if tx.one("SELECT 1 FROM tenants LIMIT 1") is not None:
                return False
            tx.execute(
                "INSERT INTO tenants (id, name, env, plan, created_at) VALUES (?, ?, ?, ?, ?)",
                (tenant.id, tenant.name, tenant.env, tenant.plan, tenant.created_at),
            )
            tx.execute(
                """INSERT INTO api_keys (id, tenant_id, secret_hash, read_only, created_at)
                   VALUES (?, ?, ?, 0, ?)""",
                (key_id, tenant.id, secret_hash, tenant.created_at),
            )
        return True

    def add_key(
        self, key_id: str, tenant_id: str, secret_hash: bytes, read_only: bool, created_at: str
    ) -> None:
        with self._engine.write() as tx:
            tx.execute(
                """INSERT INTO api_keys (id, tenant_id, secret_hash, read_only, created_at)
                   VALUES (?, ?, ?, ?, ?)""",
                (key_id, tenant_id, secret_hash, int(read_only), created_at),
            )

    def key(self, key_id: str) -> ApiKeyRecord | None:
        with self._engine.read() as tx:
            row = tx.one(
                f"""SELECT {_KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                    WHERE k.id = ?""",
                (key_id,),
            )
        return None if row is None else _key_from_row(row)

    def keys(self) -> list[ApiKeyRecord]:
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT {_KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                    ORDER BY k.created_at, k.id"""
            )
        return [_key_from_row(row) for row in rows]

    def revoke(self, key_id: str, revoked_at: str) -> bool:
        """Mark a key revoked; ``False`` when no such key exists or it was already revoked."""
        with self._engine.write() as tx:
            rows = tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
                (revoked_at, key_id),
            )
        return bool(rows)
