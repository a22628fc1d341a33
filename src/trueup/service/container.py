"""Assembly of the service layer from settings: storage, keys, writes, sealing."""

from __future__ import annotations

from dataclasses import dataclass

from trueup.proof import EMPTY_ROOT, CheckpointSigner
from trueup.service.balances import BalanceService
from trueup.service.files import make_data_dir, warn_if_shared
from trueup.service.group_commit import GroupCommitter
from trueup.service.ingest import WriteService
from trueup.service.keys import KeyService
from trueup.service.log import LogService
from trueup.service.ratelimit import RateLimit, RateLimiter, parse_overrides
from trueup.service.sealing import Sealer
from trueup.service.settings import Settings
from trueup.service.signed_head import SignedHeadRecord
from trueup.service.signing import SigningKeyError, check_log_signer, load_or_create_signer, load_signer
from trueup.service.views import ViewService
from trueup.service.webhooks import ENDPOINT_CREATE_ROUTE, WebhookService
from trueup.storage import Storage, open_storage, sqlite_path
from trueup.storage.ratelimits import RateLimitStore

__all__ = ["Services", "open_services", "warn_about_shared_secrets"]


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
    make_data_dir(settings.data_dir)  # a file in its place was a traceback of `trueup sequencer`
    warn_about_shared_secrets(settings)
    storage = open_storage(settings.resolved_database_url)
    try:
        signer, keys = _checked_secrets(storage, settings)
    except BaseException:
        storage.close()
        raise
    storage.keep_secrets_with(keys.secret_box())
    try:
        storage.seal_clear_secrets(ENDPOINT_CREATE_ROUTE)
    except BaseException:
        keys.close()
        storage.close()
        raise
    committer = GroupCommitter(storage.writes)
    log = LogService(storage, signer)
    return Services(
        settings=settings,
        storage=storage,
        keys=keys,
        committer=committer,
        writes=WriteService(storage, committer, settings),
        sealer=Sealer(
            storage,
            signer,
            settings.log_origin,
            settings.seal_batch_size,
            record=SignedHeadRecord.of(settings),
        ),
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


def warn_about_shared_secrets(settings: Settings) -> None:
    """One warning for each secret file of the data directory that other users may read."""
    secret_files = [
        (settings.resolved_signing_key_path, "the signing key"),
        (settings.data_dir / "key-pepper", "the API key pepper"),
    ]
    database = sqlite_path(settings.resolved_database_url)
    if database is not None:
        secret_files.append((database, "the SQLite database (deltas, salts, sealed webhook secrets)"))
        # Its write-ahead log holds the newest pages, those secrets among them. SQLite makes it
        # with the database's mode and leaves it so: one made while the database was open to
        # others stays open after the database alone is made 0600.
        wal = database.with_name(database.name + "-wal")
        secret_files.append((wal, "the SQLite database's write-ahead log"))
    for path, what in secret_files:
        warn_if_shared(path, what)


def _checked_secrets(storage: Storage, settings: Settings) -> tuple[CheckpointSigner, KeyService]:
    """The log's signer and the key service, once this process's signing key, origin and key
    pepper are checked against the database's.

    A log that has a signed head is never given a new key, and its key and origin must be those
    of its newest head: a process with a key of its own would publish a verifier key that none
    of the log's checkpoints verify with. Likewise its pepper must be the database's. A new
    database is bound to the first process that opens it, once every check has passed: its
    first, empty, head signed with that process's key and its pepper's check value are stored
    in one transaction, so of processes opening it together one decides both, and the others
    are refused, as they would be later; a process refused for one reason binds nothing.
    """
    signer = _log_signer(storage, settings)
    keys = KeyService(
        storage,
        settings.data_dir / "key-pepper",
        settings.plan_allowances,
        cache_ttl_s=settings.key_cache_ttl_s,
        bind_pepper=False,
    )
    if storage.log.head() is None or storage.tenants.pepper_check() is None:
        first = Sealer(storage, signer, settings.log_origin).sign(0, EMPTY_ROOT)
        storage.log.store_first_head(first, keys.pepper_check)
        _log_signer(storage, settings)  # the stored head: this process's, or one that won the race
        keys.require_bound_pepper(storage.tenants.pepper_check())
    return signer, keys


def _log_signer(storage: Storage, settings: Settings) -> CheckpointSigner:
    """The signer of this log, checked against its newest head if it has one (a new log's key
    is made here, in the data directory; the head is stored by :func:`_checked_secrets`)."""
    path, origin = settings.resolved_signing_key_path, settings.log_origin
    head = storage.log.head()
    if head is None:
        return load_or_create_signer(path, origin)
    if not path.exists():
        raise SigningKeyError(
            f"no signing key at {path}, but this database holds a log of {head.size} leaves: copy the "
            "signing key the log was started with (every process of one log needs the same key file)"
        )
    signer = load_signer(path, origin)
    check_log_signer(signer, path, origin, head.checkpoint, head.size)
    return signer
