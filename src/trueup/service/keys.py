"""API keys: issue, authenticate, list, revoke.

A key is ``pk_<env>_<id>.<secret>``. Only ``HMAC-SHA256(pepper, secret)`` is stored; the pepper
lives in the data directory (0600), so a copy of the database alone cannot be used to test
guessed secrets. Checks are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from trueup.core.errors import InvalidApiKeyError, ValidationError
from trueup.core.ids import format_api_key, new_key_id, parse_api_key, random_token
from trueup.core.periods import next_period
from trueup.service.files import SecretFileError, read_or_create_secret
from trueup.service.settings import PLAN_ALLOWANCES
from trueup.storage import Storage
from trueup.storage.secret_box import SecretBox
from trueup.storage.tenants import ApiKeyRecord, TenantRecord

__all__ = ["IssuedKey", "KeyService", "Principal"]

log = logging.getLogger(__name__)

_CACHE_LIMIT = 10_000  # distinct keys remembered per process before the cache starts over

# Compared against when the key id is unknown, so both paths cost one HMAC.
_DUMMY_HASH = bytes(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant (data namespace) and what the key may do."""

    tenant_id: str
    tenant_name: str
    env: str
    plan: str
    key_id: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str
    key_id: str
    tenant: TenantRecord
    read_only: bool


class KeyService:
    def __init__(
        self,
        storage: Storage,
        pepper_path: Path,
        plans: Mapping[str, int | None] = PLAN_ALLOWANCES,
        cache_ttl_s: float = 0.0,
        *,
        bind_pepper: bool = True,
    ) -> None:
        """Raises :class:`SecretFileError` when the pepper is missing where the database has
        keys, cannot be read, or is not the database's. ``bind_pepper``: bind a database that
        keeps no pepper check value yet to this pepper (``open_services`` binds it together
        with the log's first head instead, once every check has passed)."""
        self._storage = storage
        self._plans = plans
        self._cache_ttl = cache_ttl_s
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._refreshing: set[str] = set()
        self._refresh_lock = threading.Lock()
        self._refresher: ThreadPoolExecutor | None = None
        self._closed = False
        if not pepper_path.exists() and storage.tenants.count() > 0:
            # A new pepper would make every key of the database unusable (each is stored as an
            # HMAC under the pepper it was issued with): another host's data directory, say.
            raise SecretFileError(
                f"no API key pepper at {pepper_path}, but this database has tenants and keys: copy "
                "key-pepper from the data directory they were created with"
            )
        self._pepper = read_or_create_secret(pepper_path, 32, "the API key pepper")
        # Every key is stored as an HMAC under the pepper it was issued with: the database keeps
        # a check value of its pepper (the first process to open it stores one), and a process
        # with another pepper (another host's data directory, say) is refused rather than
        # turning every key away.
        digest = hmac.new(self._pepper, b"trueup key pepper check", "sha256").digest()
        self.pepper_check = int.from_bytes(digest[:8]) >> 1  # fits a signed 64-bit column
        self._pepper_path = pepper_path
        if bind_pepper and storage.tenants.pepper_check() is None:
            storage.tenants.bind_pepper(self.pepper_check)
        self.require_bound_pepper(storage.tenants.pepper_check(), bound=bind_pepper)

    def secret_box(self) -> SecretBox:
        """What seals the secrets the database keeps for the server to read back (webhook
        secrets): a key of its own derived from this pepper, which is the database's."""
        return SecretBox(self._pepper)

    def require_bound_pepper(self, stored: int | None, bound: bool = True) -> None:
        """Refuse a pepper other than the one whose check value the database keeps (``stored``;
        ``None`` is accepted only where ``bound`` is false: the binding comes later)."""
        if stored == self.pepper_check or (stored is None and not bound):
            return
        # A pepper is 32 bytes; a longer file is likely the right one with something added (a
        # line break from an editor or a copy through a terminal), and all its bytes count.
        longer = (
            f" (it holds {len(self._pepper)} bytes, where Trueup makes 32: if it is this database's "
            "pepper with something added, a line break say, every byte counts)"
            if len(self._pepper) > 32
            else ""
        )
        raise SecretFileError(
            f"the API key pepper at {self._pepper_path} is not the one this database's keys are "
            f"issued with{longer}: copy key-pepper from the data directory the first server used"
        )

    def _hash(self, secret: str) -> bytes:
        return hmac.new(self._pepper, secret.encode("ascii"), hashlib.sha256).digest()

    def create(
        self,
        tenant_name: str,
        env: str = "live",
        plan: str = "unlimited",
        read_only: bool = False,
        *,
        plan_given: bool = False,
    ) -> IssuedKey:
        """Create the tenant if needed and issue a new key for it. ``plan`` is a new tenant's;
        with ``plan_given`` an existing tenant on another plan is refused, not silently kept."""
        new = self._new_tenant(tenant_name, env, plan)
        tenant = self._storage.tenants.ensure(new)  # the stored one, when the tenant exists
        if plan_given and tenant.plan != plan:
            raise ValidationError(
                "plan",
                f"tenant {tenant_name!r} ({env}) exists on plan {tenant.plan!r}; a new key cannot "
                f"change it to {plan!r} (leave --plan out to issue a key on its plan; "
                "`trueup keys plan` changes a tenant's plan)",
            )
        key, key_id, secret_hash = self._new_key(env)
        self._storage.tenants.add_key(key_id, tenant.id, secret_hash, read_only, new.created_at)
        return IssuedKey(key=key, key_id=key_id, tenant=tenant, read_only=read_only)

    def change_plan(self, tenant_name: str, env: str, plan: str) -> str:
        """Put an existing tenant on ``plan`` (one this process knows); return its plan before.
        The month's use so far counts against the new allowance. Raises :class:`ValidationError`
        naming ``plan``, ``env`` or ``tenant``."""
        if env not in ("live", "test"):
            raise ValidationError("env", f"must be live or test, got {env!r}")
        if plan not in self._plans:
            raise ValidationError("plan", f"must be one of {', '.join(self._plans)}, got {plan!r}")
        before = self._storage.tenants.set_plan(tenant_name, env, plan)
        if before is None:
            raise ValidationError(
                "tenant", f"no tenant {tenant_name!r} ({env}); `trueup keys list` shows the tenants"
            )
        return before

    def create_first(self, tenant_name: str, plan: str) -> IssuedKey | None:
        """The first tenant and its live key, or ``None`` when the database has a tenant
        already: one transaction, so of several servers starting on a new database together
        exactly one prints a first key."""
        tenant = self._new_tenant(tenant_name, "live", plan)
        key, key_id, secret_hash = self._new_key("live")
        if not self._storage.tenants.add_first(tenant, key_id, secret_hash):
            return None
        return IssuedKey(key=key, key_id=key_id, tenant=tenant, read_only=False)

    def _new_tenant(self, name: str, env: str, plan: str) -> TenantRecord:
        if env not in ("live", "test"):
            raise ValidationError("env", f"must be live or test, got {env!r}")
        if plan not in self._plans:
            raise ValidationError("plan", f"must be one of {', '.join(self._plans)}, got {plan!r}")
        if not name or len(name) > 128:
            raise ValidationError("tenant", "must be 1-128 characters")
        # `trueup keys list` prints names one a line, in columns, to a terminal: a newline or an
        # escape sequence in one would break the table or drive the terminal.
        if not name.isprintable() or name.strip() != name:
            raise ValidationError(
                "tenant", f"must be printable characters, no space at either end, got {name!r}"
            )
        now = datetime.now(UTC).isoformat()
        return TenantRecord(
            id="ten_" + random_token(secrets.token_bytes(10)), name=name, env=env, plan=plan, created_at=now
        )

    def _new_key(self, env: str) -> tuple[str, str, bytes]:
        """A new key, its id and the hash stored for it."""
        key_id = new_key_id(secrets.token_bytes(10))
        key = format_api_key(env, key_id, secrets.token_bytes(32))
        parts = parse_api_key(key)
        assert parts is not None
        return key, key_id, self._hash(parts.secret)

    def cached(self, presented: str | None) -> Principal | None:
        """The principal of a key verified in full within the last ``cache_ttl_s``, if any.

        Only an exact, recently verified key string hits; a revocation takes effect within
        ``cache_ttl_s`` in every process (``TRUEUP_KEY_CACHE_TTL_S``, 2 s by default; 0 here, when
        a ``KeyService`` is made without it, means no cache).

        A key in the second half of its time in the cache is verified again in the background
        (once, not per request), while the cached principal goes on answering. A busy key thus
        never drops out of the cache: without this, every request in flight when it expired
        missed at once and verified the key against the database (64 at a time under the
        single-item benchmark, every two seconds).
        """
        if presented is None:
            return None
        entry = self._cache.get(presented)
        if entry is None:
            return None
        principal, expires = entry
        now = time.monotonic()
        if now >= expires:
            self._cache.pop(presented, None)
            with self._refresh_lock:
                self._refreshing.discard(presented)  # a refresh that failed is tried no more
            return None
        if now >= expires - self._cache_ttl / 2:
            self._refresh_soon(presented)
        return principal

    def _refresh_soon(self, presented: str) -> None:
        with self._refresh_lock:
            if self._closed or presented in self._refreshing:
                return
            self._refreshing.add(presented)
            if self._refresher is None:
                self._refresher = ThreadPoolExecutor(1, thread_name_prefix="trueup-key-refresh")
            self._refresher.submit(self._refresh, presented)

    def _refresh(self, presented: str) -> None:
        """Verify a cached key again: renew its entry, or drop it when it is no longer valid.

        When the database cannot say (it is unavailable), the key stays marked as being verified,
        so requests do not queue one attempt each; the entry then expires as it would have, and
        the next request verifies the key itself.
        """
        try:
            self.authenticate(presented)
        except InvalidApiKeyError:
            self._cache.pop(presented, None)
        except Exception as exc:  # noqa: BLE001 - storage unavailable: logged, the entry expires
            log.warning("verifying a cached API key again failed: %s", exc)
            return
        with self._refresh_lock:
            self._refreshing.discard(presented)

    def close(self) -> None:
        """Stop verifying keys in the background: a verification under way finishes, queued
        ones are dropped, and none starts after this."""
        with self._refresh_lock:
            self._closed = True
            refresher, self._refresher = self._refresher, None
            self._refreshing.clear()
        if refresher is not None:
            refresher.shutdown(wait=True, cancel_futures=True)

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of a valid, unrevoked key; :class:`InvalidApiKeyError` otherwise."""
        verified_at = time.monotonic()  # before the read: a revocation after it is not seen
        principal = self._verify(presented)
        # Cached under the key exactly as issued: a key presented with anything around it is
        # verified every time rather than filling the cache with variants of one key.
        if self._cache_ttl > 0 and presented is not None and parse_api_key(presented) is not None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[presented] = (principal, verified_at + self._cache_ttl)
        return principal

    def _verify(self, presented: str | None) -> Principal:
        if presented is None:
            raise InvalidApiKeyError("missing X-Api-Key header")
        stripped = presented.strip(" \t")  # what HTTP calls whitespace, no more
        if not stripped:
            raise InvalidApiKeyError("X-Api-Key is empty")
        parts = parse_api_key(stripped)
        if parts is None:
            raise InvalidApiKeyError(
                "X-Api-Key is malformed: expected pk_live_<id>.<secret> or pk_test_<id>.<secret>"
            )
        record = self._storage.tenants.key(parts.key_id)
        expected = record.secret_hash if record is not None else _DUMMY_HASH
        matches = hmac.compare_digest(expected, self._hash(parts.secret))
        if record is None or not matches or record.tenant.env != parts.env:
            raise InvalidApiKeyError("X-Api-Key is not valid")
        if record.revoked_at is not None:
            raise InvalidApiKeyError("X-Api-Key has been revoked")
        return _principal(record)

    def usage(self, principal: Principal, now: datetime | None = None) -> dict[str, object]:
        """The tenant's plan, its monthly allowance, and what this month used of it."""
        moment = now or datetime.now(UTC)
        period = moment.strftime("%Y-%m")
        # A plan this server has no allowance for stores nothing (trueup.service.ingest).
        allowance = self._plans.get(principal.plan, 0)
        used = self._storage.writes.used(principal.tenant_id, period)
        return {
            "tenantId": principal.tenant_id,  # the "tenant" of this tenant's leaves
            "plan": principal.plan,
            "period": period,
            "allowance": allowance,
            "used": used,
            "remaining": None if allowance is None else max(0, allowance - used),
            "resetsAt": f"{next_period(period)}-01T00:00:00Z",
            "unlimited": allowance is None,
        }

    def list(self) -> list[ApiKeyRecord]:
        return self._storage.tenants.keys()

    def revoke(self, key_id: str) -> bool:
        return self._storage.tenants.revoke(key_id, datetime.now(UTC).isoformat())

    def named_key(self, given: str) -> str:
        """The id of the key ``given`` names: a key id, the public part ``pk_<env>_<id>`` a log
        shows, or the whole key ``pk_<env>_<id>.<secret>``. A public part or whole key of
        another environment than its key's, or a whole key whose secret is not its key's, names
        no key: :class:`ValidationError` saying which (an id no key has is returned as it is,
        for the caller to say so)."""
        if not given.startswith("pk_"):
            return given
        env, _, rest = given[3:].partition("_")
        key_id, dot, _ = rest.partition(".")
        record = self._storage.tenants.key(key_id)
        if record is None:
            return key_id
        if env != record.tenant.env:
            raise ValidationError(
                "", f"key {key_id} is a {record.tenant.env} key, not pk_{env}_: nothing was changed"
            )
        if dot:
            parts = parse_api_key(given)
            if parts is None or not hmac.compare_digest(record.secret_hash, self._hash(parts.secret)):
                raise ValidationError(
                    "",
                    f"the secret given is not that of key {key_id}: nothing was changed (give the key's "
                    f"id or pk_{env}_{key_id} to revoke it without its secret)",
                )
        return key_id


def _principal(record: ApiKeyRecord) -> Principal:
    return Principal(
        tenant_id=record.tenant.id,
        tenant_name=record.tenant.name,
        env=record.tenant.env,
        plan=record.tenant.plan,
        key_id=record.id,
        read_only=record.read_only,
    )
