"""Assembly of the service layer from settings: storage, keys, writes, sealing."""

from __future__ import annotations

from dataclasses import dataclass

from trueup.service.balances import BalanceService
from trueup.service.files import warn_if_shared
from trueup.service.group_commit import GroupCommitter
from trueup.service.ingest import WriteService
from trueup.service.keys import KeyService
from trueup.service.log import LogService
from trueup.service.ratelimit import RateLimit, RateLimiter, parse_overrides
from trueup.service.sealing import Sealer
from trueup.service.settings import Settings
from trueup.service.signing import load_or_create_signer
from trueup.service.views import ViewService
from trueup.service.webhooks import WebhookService
from trueup.storage import Storage, open_storage, sqlite_path
from trueup.storage.ratelimits import RateLimitStore

__all__ = ["Services", "open_services"]


@dataclass(slots=True)
class Services:
    """Everything the API, the sequencer and the CLI call into."""

    settings: Settings
    storage: Storage
    keys: KeyService
    committer: GroupCommitter
    writes: WriteService
    sealer: Sealer
    views: ViewService
    log: LogService
    balances: BalanceService
    webhooks: WebhookService
    limiter: RateLimiter

    def close(self) -> None:
        self.committer.close()
        self.keys.close()
        self.storage.close()


def open_services(settings: Settings) -> Services:
    """Open storage (migrating it) and build every service. Fails closed on a bad key."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = open_storage(settings.resolved_database_url)
    signer = load_or_create_signer(settings.resolved_signing_key_path, settings.log_origin)
    secret_files = [
        (settings.resolved_signing_key_path, "the signing key"),
        (settings.data_dir / "key-pepper", "the API key pepper"),
    ]
    database = sqlite_path(settings.resolved_database_url)
    if database is not None:
        secret_files.append((database, "the SQLite database (webhook secrets, salts)"))
    for path, what in secret_files:
        warn_if_shared(path, what)
    committer = GroupCommitter(storage.writes)
    log = LogService(storage, signer)
    return Services(
        settings=settings,
        storage=storage,
        keys=KeyService(
            storage,
            settings.data_dir / "key-pepper",
            settings.plan_allowances,
            cache_ttl_s=settings.key_cache_ttl_s,
        ),
        committer=committer,
        writes=WriteService(storage, committer, settings),
        sealer=Sealer(storage, signer, settings.log_origin, settings.seal_batch_size),
        views=ViewService(storage, log),
        log=log,
        balances=BalanceService(storage),
        webhooks=WebhookService(storage, settings),
        limiter=RateLimiter(
            RateLimit(settings.rate_limit_per_s, settings.rate_limit_burst),
            parse_overrides(settings.rate_limit_overrides),
            # Buckets live in PostgreSQL so the limit holds across processes and hosts.
            shared=RateLimitStore(storage.engine) if storage.engine.dialect.name == "postgresql" else None,
        ),
    )
