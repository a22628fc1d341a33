"""Settings: every knob, its default, and the environment variable that sets it.

Command-line flags override environment variables, which override the defaults below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from trueup.core.deltas import DeltaLimits
from trueup.core.ids import MAX_ITEMS_CEILING, is_key_id
from trueup.core.json_text import quoted
from trueup.core.url_passwords import without_password
from trueup.proof import CheckpointError
from trueup.proof.note import check_key_name
from trueup.storage import is_database_url

__all__ = [
    "PLAN_ALLOWANCES",
    "RateLimit",
    "Settings",
    "SettingsError",
    "check_database_url",
    "parse_overrides",
    "parse_plan_allowances",
    "unknown_plan",
    "without_password",
]


class SettingsError(ValueError):
    """A ``TRUEUP_*`` variable that cannot be used; the message names it and its value."""


PLAN_ALLOWANCES: Mapping[str, int | None] = {
    "free": 100,
    "pilot": 10_000,
    "starter": 100_000,
    "growth": 500_000,
    "scale": 2_000_000,
    "unlimited": None,
}
"""Monthly allowance of accepted deltas per plan (``None``: no limit), modelled on PacSpace's."""


def parse_plan_allowances(text: str) -> dict[str, int | None]:
    """``PLAN_ALLOWANCES`` with ``"name=count,other=unlimited"`` applied (new names allowed)."""
    plans: dict[str, int | None] = dict(PLAN_ALLOWANCES)
    named: set[str] = set()
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not name or not value:
            raise SettingsError(
                f"TRUEUP_PLAN_ALLOWANCES: cannot read {entry!r} (plan=count or plan=unlimited)"
            )
        if name in named:  # which one was meant? the last silently won
            raise SettingsError(f"TRUEUP_PLAN_ALLOWANCES: plan {name!r} is given twice")
        named.add(name)
        if value == "unlimited":
            plans[name] = None
            continue
        try:
            count = int(value)
        except ValueError as exc:
            raise SettingsError(
                f"TRUEUP_PLAN_ALLOWANCES: {name!r} needs a whole number, got {value!r}"
            ) from exc
        if count < 0:
            raise SettingsError(f"TRUEUP_PLAN_ALLOWANCES: {name!r} must not be negative, got {value!r}")
        if count > _LARGEST_INT:  # as every integer setting; `unlimited` is what has no bound
            raise SettingsError(
                f"TRUEUP_PLAN_ALLOWANCES: {name!r} must be at most {_LARGEST_INT:,} "
                f"(or unlimited), got {value!r}"
            )
        plans[name] = count
    return plans


def unknown_plan(plan: str) -> str:
    """Why a tenant on ``plan``, which this server's allowances do not name, may store nothing."""
    return (
        f"the tenant's plan {quoted(plan)} has no allowance on this server, so nothing is stored; "
        f"the operator sets it in TRUEUP_PLAN_ALLOWANCES ({plan}=<count> or {plan}=unlimited)"
    )


_Number = TypeVar("_Number", int, float)
_MIN_BODY_BYTES = 1_024
"""The smallest TRUEUP_MAX_BODY_BYTES: below it not even a one-item write fits."""
_LARGEST_INT = 2**63 - 1
"""The largest integer setting: queue depths and seal sizes are bound into SQL (``LIMIT ?``),
and neither SQLite nor PostgreSQL takes a larger integer there (every write failed with a 500)."""
_LONGEST_WAIT_S = 86_400.0
"""The longest a duration setting (in seconds) may be, a day. Each becomes a wait or a timeout, and
one past what the platform's clock holds fails where it is used, not at start-up: a socket's or a
thread's wait of 1e300 s raises ``OverflowError``."""
_LONGEST_RETENTION_DAYS = 36_500
"""The longest webhook retention, 100 years (0 keeps events for good): the dispatcher subtracts
it from the time, and a date before the year 1 is past what a datetime holds."""
_LONGEST_SEAL_INTERVAL_MS = 86_400_000
"""The longest seal interval, a day: the sequencer waits it out between seals, and a wait past
what the platform's clock holds (about 292 years) made every round of the sequencer fail, so
that nothing was sealed."""


def _env_int(
    env: Mapping[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    return _within(name, raw, value, minimum, _LARGEST_INT if maximum is None else maximum)


def _env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    return _within(name, raw, value, minimum, maximum)


def _within(name: str, raw: str, value: _Number, minimum: _Number | None, maximum: _Number | None) -> _Number:
    """``value`` of variable ``name`` (set to ``raw``), or ``ValueError`` naming the bound it breaks."""
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {_bound(minimum)}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {_bound(maximum)}, got {raw!r}")
    return value


def _bound(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _env_url(env: Mapping[str, str], name: str) -> str | None:
    """An absolute http(s) base URL without query or fragment (its trailing ``/`` dropped)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises for a port that is no number from 0 to 65535
    except ValueError:  # an unclosed IPv6 bracket, say
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "?" in raw  # an empty query or fragment too: the links would end in "?/api/…"
        or "#" in raw
        or any(char.isspace() or not char.isprintable() for char in raw)
    ):
        raise SettingsError(
            f"{name} must be an http(s) URL with no query, fragment or spaces, such as "
            f"https://ledger.example.com, got {without_password(raw)!r}"
        )
    if "@" in parts.netloc:  # it is repeated in every receipt's verifyUrl, to both parties
        raise SettingsError(
            f"{name} must not hold a user name or password (user:password@), got {without_password(raw)!r}"
        )
    return raw.rstrip("/")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "")
    word = raw.strip().lower()
    if word not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")
    return word in _TRUE


def _env_origin(env: Mapping[str, str], name: str, default: str) -> str:
    """The log's origin line, which is also its signing key's name (signed-note rules)."""
    origin = env.get(name) or default
    try:
        check_key_name(origin)
    except CheckpointError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return origin


def check_database_url(url: str | None, name: str) -> str | None:
    """``url`` if it names a backend Trueup has (SQLite or PostgreSQL), else a
    :class:`SettingsError` naming ``name`` (the variable or flag that gave it)."""
    if url and not is_database_url(url):
        shown = without_password(url)
        raise SettingsError(f"{name} must be sqlite:///<path> or postgresql://…, got {shown!r}")
    return url


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_per_s`` requests a second on average, bursts of up to ``burst``; 0 disables."""

    rate_per_s: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0 and self.burst > 0


def parse_overrides(text: str) -> dict[str, RateLimit]:
    """``"<key id>=<rate>/<burst>,…"`` (e.g. ``abcd…=50/100``) into limits by key id."""
    limits: dict[str, RateLimit] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        # A whole key (any case), or a key id with its secret after the dot: the secret is not
        # repeated in the message.
        if entry.lower().startswith("pk_") or "." in entry.partition("=")[0]:
            raise SettingsError(
                f"TRUEUP_RATE_LIMIT_OVERRIDES: {entry.partition('.')[0]}… is a whole API key or holds "
                "its secret; name the key by its id, the 16 characters after pk_live_ or pk_test_ "
                "(`trueup keys list` shows them), and keep its secret out of the settings"
            )
        key_id, _, spec = entry.partition("=")
        rate, _, burst = spec.partition("/")
        try:
            limit = RateLimit(float(rate), int(burst or max(1.0, float(rate))))
        except (ValueError, OverflowError) as exc:
            raise SettingsError(
                f"TRUEUP_RATE_LIMIT_OVERRIDES: cannot read {entry!r} (key=rate/burst)"
            ) from exc
        # As TRUEUP_RATE_LIMIT_PER_S and _BURST: a limit that is not a finite number of at
        # least 0 would let every request through.
        if (
            not key_id.strip()
            or not math.isfinite(limit.rate_per_s)
            or min(limit.rate_per_s, limit.burst) < 0
            or limit.burst > _LARGEST_INT
        ):
            raise SettingsError(
                f"TRUEUP_RATE_LIMIT_OVERRIDES: {entry!r} needs a key id, a finite rate of at least 0 "
                "and a burst of 0 to 2^63 - 1 (key=rate/burst)"
            )
        if (limit.rate_per_s == 0) != (limit.burst == 0):  # read as off, not as a tight limit
            raise SettingsError(
                f"TRUEUP_RATE_LIMIT_OVERRIDES: {entry!r} has a rate or a burst of 0, which would turn "
                "the key's limit off rather than refuse its requests; give both above 0, or 0/0 "
                "to turn the limit off"
            )
        if not is_key_id(key_id.strip()):  # it would match no key: the limit would be ignored
            raise SettingsError(
                f"TRUEUP_RATE_LIMIT_OVERRIDES: {key_id.strip()!r} is not a key id (16 characters, "
                "a-z and 2-7, as `trueup keys list` shows them)"
            )
        if key_id.strip() in limits:  # which one was meant? the last silently won
            raise SettingsError(f"TRUEUP_RATE_LIMIT_OVERRIDES: key {key_id.strip()!r} is given twice")
        limits[key_id.strip()] = limit
    return limits


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration. Paths are resolved against the working directory."""

    data_dir: Path = Path("data")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    log_origin: str = "localhost/trueup"
    signing_key_path: Path | None = None
    signed_head_path: Path | None = None
    """Where the sequencer records the newest head it signed (``None``: in the data directory,
    named after the key file)."""
    seal_interval_ms: int = 35
    seal_batch_size: int = 1_000
    seal_max_batch_size: int = 16_000
    max_queue_depth: int = 1_000_000
    queue_pace_depth: int = 20_000
    queue_pace_max_wait_s: float = 10.0
    max_body_bytes: int = 1_048_576
    body_bytes_in_flight: int = 67_108_864
    """Bytes of request bodies one API process holds while they arrive, all requests together
    (``api/body.py``): past it a request whose body is still coming gets a 503."""
    body_timeout_s: float = 30.0
    limits: DeltaLimits = field(default_factory=DeltaLimits)
    default_plan: str = "unlimited"
    plan_allowances: Mapping[str, int | None] = field(default_factory=lambda: dict(PLAN_ALLOWANCES))
    run_dispatcher: bool = True
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_retry_base_s: float = 5.0
    webhook_timeout_s: float = 10.0
    webhook_retention_days: int = 30
    """Days an event is kept after it happened, once its deliveries are finished (delivered, or
    failed for good); the dispatcher then prunes it with its deliveries and attempts. 0 keeps
    everything."""
    rate_limit_per_s: float = 1_000.0
    rate_limit_burst: int = 2_000
    rate_limit_overrides: str = ""
    key_cache_ttl_s: float = 2.0
    public_url: str | None = None
    """The base URL clients reach this API at (behind a proxy), for the links replies hold;
    ``None``: the URL each request came to."""

    @property
    def resolved_database_url(self) -> str:
        """``database_url`` or the embedded default ``sqlite:///<data_dir>/trueup.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'trueup.db'}"

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "signing-key.pem"

    @property
    def resolved_signed_head_path(self) -> Path:
        """``signed_head_path`` or ``<data dir>/<signing key file's name>.signed``
        (trueup.service.signed_head): ``signing-key.pem.signed`` beside the key where the key is
        the data directory's own, and in the data directory, which the server must be able to
        write anyway, where the key is kept elsewhere (a secret mounted read-only, say)."""
        if self.signed_head_path is not None:
            return self.signed_head_path
        return self.data_dir / (self.resolved_signing_key_path.name + ".signed")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``TRUEUP_*`` variables (see docs/configuration.md)."""
        env = os.environ if env is None else env
        base = cls()
        limits = DeltaLimits(
            # A leaf carries its amount as an I-JSON number (RFC 7493): a larger one could be
            # accepted but never sealed.
            max_abs_amount=_env_int(env, "TRUEUP_MAX_ABS_AMOUNT", base.limits.max_abs_amount, 1, 2**53 - 1),
            max_items=_env_int(env, "TRUEUP_MAX_ITEMS", base.limits.max_items, 1, MAX_ITEMS_CEILING),
        )
        max_body_bytes = _env_int(env, "TRUEUP_MAX_BODY_BYTES", base.max_body_bytes, _MIN_BODY_BYTES)
        key_path = env.get("TRUEUP_SIGNING_KEY")
        signed_head = env.get("TRUEUP_SIGNED_HEAD_FILE")
        plans = parse_plan_allowances(env.get("TRUEUP_PLAN_ALLOWANCES", ""))
        overrides = env.get("TRUEUP_RATE_LIMIT_OVERRIDES", "")
        parse_overrides(overrides)  # read when the services open; refused here, before anything is made
        default_plan = env.get("TRUEUP_DEFAULT_PLAN") or base.default_plan
        if default_plan not in plans:
            raise SettingsError(
                f"TRUEUP_DEFAULT_PLAN: {default_plan!r} is not a plan ({', '.join(plans)}; "
                "TRUEUP_PLAN_ALLOWANCES adds plans)"
            )
        return replace(
            base,
            data_dir=Path(env.get("TRUEUP_DATA_DIR") or base.data_dir),
            database_url=check_database_url(env.get("TRUEUP_DATABASE_URL") or None, "TRUEUP_DATABASE_URL"),
            log_origin=_env_origin(env, "TRUEUP_LOG_ORIGIN", base.log_origin),
            signing_key_path=Path(key_path) if key_path else None,
            signed_head_path=Path(signed_head) if signed_head else None,
            seal_interval_ms=_env_int(
                env, "TRUEUP_SEAL_INTERVAL_MS", base.seal_interval_ms, 1, _LONGEST_SEAL_INTERVAL_MS
            ),
            seal_batch_size=_env_int(env, "TRUEUP_SEAL_BATCH_SIZE", base.seal_batch_size, 1),
            seal_max_batch_size=_env_int(env, "TRUEUP_SEAL_MAX_BATCH_SIZE", base.seal_max_batch_size, 1),
            max_queue_depth=_env_int(env, "TRUEUP_MAX_QUEUE_DEPTH", base.max_queue_depth, 0),
            queue_pace_depth=_env_int(env, "TRUEUP_QUEUE_PACE_DEPTH", base.queue_pace_depth, 0),
            queue_pace_max_wait_s=_env_float(
                env,
                "TRUEUP_QUEUE_PACE_MAX_WAIT_S",
                base.queue_pace_max_wait_s,
                minimum=0,
                maximum=_LONGEST_WAIT_S,
            ),
            max_body_bytes=max_body_bytes,
            body_bytes_in_flight=_env_int(
                env,
                "TRUEUP_BODY_BYTES_IN_FLIGHT",
                max(base.body_bytes_in_flight, max_body_bytes),  # one body of the largest size fits
                max_body_bytes,
            ),
            body_timeout_s=_env_float(
                env, "TRUEUP_BODY_TIMEOUT_S", base.body_timeout_s, minimum=0.001, maximum=_LONGEST_WAIT_S
            ),
            limits=limits,
            default_plan=default_plan,
            plan_allowances=plans,
            webhook_allow_http=_env_flag(env, "TRUEUP_WEBHOOK_ALLOW_HTTP"),
            webhook_allow_private=_env_flag(env, "TRUEUP_WEBHOOK_ALLOW_PRIVATE"),
            rate_limit_per_s=_env_float(env, "TRUEUP_RATE_LIMIT_PER_S", base.rate_limit_per_s, minimum=0),
            rate_limit_burst=_env_int(env, "TRUEUP_RATE_LIMIT_BURST", base.rate_limit_burst, 0),
            rate_limit_overrides=overrides,
            key_cache_ttl_s=_env_float(
                env, "TRUEUP_KEY_CACHE_TTL_S", base.key_cache_ttl_s, minimum=0, maximum=_LONGEST_WAIT_S
            ),
            webhook_retry_base_s=_env_float(
                env,
                "TRUEUP_WEBHOOK_RETRY_BASE_S",
                base.webhook_retry_base_s,
                minimum=0.001,
                maximum=_LONGEST_WAIT_S,
            ),
            webhook_timeout_s=_env_float(
                env,
                "TRUEUP_WEBHOOK_TIMEOUT_S",
                base.webhook_timeout_s,
                minimum=0.001,
                maximum=_LONGEST_WAIT_S,
            ),
            webhook_retention_days=_env_int(
                env,
                "TRUEUP_WEBHOOK_RETENTION_DAYS",
                base.webhook_retention_days,
                minimum=0,
                maximum=_LONGEST_RETENTION_DAYS,
            ),
            public_url=_env_url(env, "TRUEUP_PUBLIC_URL"),
        )
