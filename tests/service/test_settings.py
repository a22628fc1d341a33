"""Settings from the environment: plans, limits, and clear errors for bad values."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from trueup.service.container import open_services
from trueup.service.settings import (
    PLAN_ALLOWANCES,
    Settings,
    SettingsError,
    parse_overrides,
    parse_plan_allowances,
)
from trueup.storage import open_storage


def test_plan_allowances_default_to_pacspace_s_and_can_be_changed_or_added() -> None:
    assert parse_plan_allowances("") == dict(PLAN_ALLOWANCES)
    plans = parse_plan_allowances("starter=150000, enterprise=unlimited, tiny=5")
    assert plans["starter"] == 150_000 and plans["enterprise"] is None and plans["tiny"] == 5
    assert plans["free"] == 100
    with pytest.raises(ValueError, match="whole number"):
        parse_plan_allowances("free=lots")
    with pytest.raises(ValueError, match="plan=count"):
        parse_plan_allowances("free")


def test_settings_read_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TRUEUP_DATA_DIR": "/srv/trueup",
            "TRUEUP_SEAL_INTERVAL_MS": "20",
            "TRUEUP_PLAN_ALLOWANCES": "free=10",
            "TRUEUP_RATE_LIMIT_PER_S": "0",
            "TRUEUP_QUEUE_PACE_DEPTH": "5000",
            "TRUEUP_QUEUE_PACE_MAX_WAIT_S": "2.5",
        }
    )
    assert str(settings.data_dir) == "/srv/trueup"
    assert settings.resolved_database_url == "sqlite:////srv/trueup/trueup.db"
    assert settings.seal_interval_ms == 20
    assert settings.plan_allowances["free"] == 10
    assert settings.rate_limit_per_s == 0
    assert (settings.queue_pace_depth, settings.queue_pace_max_wait_s) == (5_000, 2.5)
    assert (Settings().queue_pace_depth, Settings().max_queue_depth) == (20_000, 1_000_000)
    with pytest.raises(ValueError, match="TRUEUP_SEAL_INTERVAL_MS must be an integer"):
        Settings.from_env({"TRUEUP_SEAL_INTERVAL_MS": "fast"})
    with pytest.raises(ValueError, match="TRUEUP_QUEUE_PACE_MAX_WAIT_S must be a number, got 'soon'"):
        Settings.from_env({"TRUEUP_QUEUE_PACE_MAX_WAIT_S": "soon"})
    with pytest.raises(ValueError, match="TRUEUP_QUEUE_PACE_MAX_WAIT_S must be at least 0, got '-1'"):
        Settings.from_env({"TRUEUP_QUEUE_PACE_MAX_WAIT_S": "-1"})
    with pytest.raises(ValueError, match="TRUEUP_WEBHOOK_TIMEOUT_S must be a finite number"):
        Settings.from_env({"TRUEUP_WEBHOOK_TIMEOUT_S": "nan"})
    assert Settings().body_timeout_s == 30
    assert Settings.from_env({"TRUEUP_BODY_TIMEOUT_S": "2"}).body_timeout_s == 2
    with pytest.raises(ValueError, match=r"TRUEUP_BODY_TIMEOUT_S must be at least 0\.001, got '0'"):
        Settings.from_env({"TRUEUP_BODY_TIMEOUT_S": "0"})  # no body could ever arrive


@pytest.mark.parametrize(
    "value",
    [
        "ledger.example.com",
        "ftp://ledger.example.com",
        "https://",
        "https://x.example/?a=1",
        "https://[::1",  # urlsplit's ValueError, once a traceback
        "https://a.example?",  # an empty query: links would end in "?/api/…"
        "https://a.example#",
        "https://a example",
        "https://a.example:x",
        "https://a.example:99999",
        "https://a.example/\x00",
    ],
)
def test_a_public_url_must_be_an_http_base_url(value: str) -> None:
    with pytest.raises(ValueError, match="TRUEUP_PUBLIC_URL must be an http"):
        Settings.from_env({"TRUEUP_PUBLIC_URL": value})


def test_a_public_url_with_a_user_or_password_is_refused_without_showing_the_password() -> None:
    # It was taken, and every receipt's verifyUrl then handed the password to both parties.
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"TRUEUP_PUBLIC_URL": "https://ops:S3cret@ledger.example"})
    assert str(caught.value) == (
        "TRUEUP_PUBLIC_URL must not hold a user name or password (user:password@), "
        "got 'https://ops:***@ledger.example'"
    )
    with pytest.raises(ValueError, match="must not hold a user name"):
        Settings.from_env({"TRUEUP_PUBLIC_URL": "https://ops@ledger.example"})


def test_a_public_url_loses_its_trailing_slash() -> None:
    assert (
        Settings.from_env({"TRUEUP_PUBLIC_URL": "https://x.example/base/"}).public_url
        == "https://x.example/base"
    )
    assert Settings.from_env({}).public_url is None


def test_amount_limits_stay_within_what_a_leaf_can_carry() -> None:
    largest = Settings.from_env({"TRUEUP_MAX_ABS_AMOUNT": str(2**53 - 1)})
    assert largest.limits.max_abs_amount == 2**53 - 1
    with pytest.raises(ValueError, match="TRUEUP_MAX_ABS_AMOUNT must be at most 9,007,199,254,740,991"):
        Settings.from_env({"TRUEUP_MAX_ABS_AMOUNT": str(2**53)})
    with pytest.raises(ValueError, match="TRUEUP_MAX_ABS_AMOUNT must be at least 1, got '0'"):
        Settings.from_env({"TRUEUP_MAX_ABS_AMOUNT": "0"})
    with pytest.raises(ValueError, match="TRUEUP_MAX_ITEMS must be at least 1, got '-5'"):
        Settings.from_env({"TRUEUP_MAX_ITEMS": "-5"})
    # Record ids spell an item's index in at most 7 digits.
    assert Settings.from_env({"TRUEUP_MAX_ITEMS": "1000000"}).limits.max_items == 1_000_000
    with pytest.raises(ValueError, match="TRUEUP_MAX_ITEMS must be at most 1,000,000, got '1000001'"):
        Settings.from_env({"TRUEUP_MAX_ITEMS": "1000001"})


def test_the_data_directory_and_its_secrets_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    services = open_services(replace(Settings(), data_dir=data_dir))
    services.close()
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for name in ("trueup.db", "signing-key.pem", "key-pepper"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_role_lock_files_are_owner_only(tmp_path: Path) -> None:
    # They were 0644: in a data directory others can enter, another local user could take a
    # role's lock and hold it, and no sequencer would ever seal.
    data_dir = tmp_path / "fresh"
    services = open_services(replace(Settings(), data_dir=data_dir))
    try:
        for role in ("sequencer", "dispatcher"):
            with services.storage.engine.try_leader_lock(role) as held:
                assert held
            assert (data_dir / f"trueup.db.{role}.lock").stat().st_mode & 0o777 == 0o600, role
    finally:
        services.close()


def test_lock_files_an_older_version_left_open_are_made_owner_only(tmp_path: Path) -> None:
    # Opening a lock file kept its mode: those an older version created 0644 stayed so, and
    # another local user could still take the sequencer's lock (flock needs no write access).
    data_dir = tmp_path / "older"
    locks = [data_dir / f"trueup.db.{name}.lock" for name in ("writer", "sequencer", "dispatcher")]
    open_services(replace(Settings(), data_dir=data_dir)).close()
    for lock in locks:
        lock.touch()
        lock.chmod(0o644)
    services = open_services(replace(Settings(), data_dir=data_dir))
    try:
        for role in ("sequencer", "dispatcher"):
            with services.storage.engine.try_leader_lock(role) as held:
                assert held
        for lock in locks:
            assert lock.stat().st_mode & 0o777 == 0o600, lock.name
    finally:
        services.close()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # each of these started a server that could not work: writes never sealed, every body
        # too large, eleven webhook attempts in three seconds, a log origin no key can be named
        ("TRUEUP_SEAL_BATCH_SIZE", "0", "must be at least 1, got '0'"),
        ("TRUEUP_SEAL_MAX_BATCH_SIZE", "0", "must be at least 1, got '0'"),
        ("TRUEUP_SEAL_INTERVAL_MS", "-5", "must be at least 1, got '-5'"),
        ("TRUEUP_MAX_BODY_BYTES", "-5", "must be at least 1,024, got '-5'"),
        ("TRUEUP_MAX_QUEUE_DEPTH", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_QUEUE_PACE_DEPTH", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_RATE_LIMIT_PER_S", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_RATE_LIMIT_BURST", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_KEY_CACHE_TTL_S", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_WEBHOOK_RETRY_BASE_S", "0", r"must be at least 0\.001, got '0'"),
        ("TRUEUP_WEBHOOK_TIMEOUT_S", "-1", r"must be at least 0\.001, got '-1'"),
        ("TRUEUP_WEBHOOK_RETENTION_DAYS", "-1", "must be at least 0, got '-1'"),
        ("TRUEUP_WEBHOOK_RETENTION_DAYS", "7.5", r"must be an integer, got '7\.5'"),
        ("TRUEUP_WEBHOOK_RETENTION_DAYS", "30d", "must be an integer, got '30d'"),
        # a date before the year 1, which the dispatcher's every pass failed to compute
        ("TRUEUP_WEBHOOK_RETENTION_DAYS", "1000000", "must be at most 36,500, got '1000000'"),
        ("TRUEUP_PLAN_ALLOWANCES", "starter=-5", "'starter' must not be negative, got '-5'"),
        # a name given twice: the last silently won, whichever was meant
        ("TRUEUP_PLAN_ALLOWANCES", "starter=1, free=3,starter=2", "plan 'starter' is given twice"),
        (
            "TRUEUP_RATE_LIMIT_OVERRIDES",
            "abcdefghijklmnop=5,abcdefghijklmno2=1, abcdefghijklmnop=50/100",
            "key 'abcdefghijklmnop' is given twice",
        ),
        ("TRUEUP_WEBHOOK_ALLOW_HTTP", "maybe", "must be one of 1/true/yes/on or 0/false/no/off, got 'maybe'"),
        ("TRUEUP_LOG_ORIGIN", "bad origin", "key name 'bad origin' must not contain spaces"),
        (
            "TRUEUP_DATABASE_URL",
            "mysql://x/y",
            "must be sqlite:///<path> or postgresql://…, got 'mysql://x/y'",
        ),
    ],
)
def test_a_value_no_server_could_work_with_is_refused_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{name}:? {message}"):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "name",
    [
        "TRUEUP_MAX_QUEUE_DEPTH",
        "TRUEUP_QUEUE_PACE_DEPTH",
        "TRUEUP_SEAL_BATCH_SIZE",
        "TRUEUP_SEAL_MAX_BATCH_SIZE",
        "TRUEUP_MAX_BODY_BYTES",
        "TRUEUP_RATE_LIMIT_BURST",
    ],
)
def test_an_integer_setting_past_what_a_database_integer_holds_is_refused(name: str) -> None:
    # TRUEUP_MAX_QUEUE_DEPTH=99999999999999999999 started a server whose every write was a 500
    # (the depth is bound into "LIMIT ?", which neither SQLite nor PostgreSQL takes so large).
    with pytest.raises(SettingsError, match=rf"^{name} must be at most 9,223,372,036,854,775,807, got '"):
        Settings.from_env({name: str(2**63)})
    assert getattr(Settings.from_env({name: str(2**63 - 1)}), name[len("TRUEUP_") :].lower()) == 2**63 - 1


def test_a_plan_allowance_past_what_a_database_integer_holds_is_refused() -> None:
    # starter=99999999999999999999 started a server, where every other integer setting that large
    # is refused (docs/configuration.md bounds them all by 2^63 - 1; `unlimited` has no bound).
    refused = r"^TRUEUP_PLAN_ALLOWANCES: 'starter' must be at most 9,223,372,036,854,775,807 \(or unlimited\)"
    with pytest.raises(SettingsError, match=refused):
        Settings.from_env({"TRUEUP_PLAN_ALLOWANCES": f"starter={2**63}"})
    largest = Settings.from_env({"TRUEUP_PLAN_ALLOWANCES": f"starter={2**63 - 1}"})
    assert largest.plan_allowances["starter"] == 2**63 - 1


def test_a_seal_interval_longer_than_a_day_is_refused() -> None:
    # 9223372036854775807 was accepted, and every round of the sequencer then failed on a wait
    # past what the platform's clock holds: nothing was ever sealed.
    for raw in (str(2**63 - 1), "86400001"):
        with pytest.raises(SettingsError, match=r"^TRUEUP_SEAL_INTERVAL_MS must be at most 86,400,000, got "):
            Settings.from_env({"TRUEUP_SEAL_INTERVAL_MS": raw})
    assert Settings.from_env({"TRUEUP_SEAL_INTERVAL_MS": "86400000"}).seal_interval_ms == 86_400_000


@pytest.mark.parametrize(
    "name",
    [
        "TRUEUP_QUEUE_PACE_MAX_WAIT_S",
        "TRUEUP_BODY_TIMEOUT_S",
        "TRUEUP_KEY_CACHE_TTL_S",
        "TRUEUP_WEBHOOK_RETRY_BASE_S",
        "TRUEUP_WEBHOOK_TIMEOUT_S",
    ],
)
def test_a_duration_longer_than_a_day_is_refused(name: str) -> None:
    # 1e300 was accepted and failed only where it was used: a socket's timeout or a thread's
    # wait that long raises OverflowError.
    for raw in ("1e300", "86400.5"):
        with pytest.raises(SettingsError, match=rf"^{name} must be at most 86400, got "):
            Settings.from_env({name: raw})
    assert getattr(Settings.from_env({name: "86400"}), name[len("TRUEUP_") :].lower()) == 86_400


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    # "sqlite:///" was taken as the working directory: the command stopped with exit status 1,
    # "cannot open SQLite database .", after warning that "." may be read by other users.
    with pytest.raises(
        SettingsError, match=r"^TRUEUP_DATABASE_URL must be sqlite:///<path> or postgresql://"
    ):
        Settings.from_env({"TRUEUP_DATABASE_URL": url})
    assert Settings.from_env({"TRUEUP_DATABASE_URL": "sqlite:///x.db"}).database_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://app:S3cret@db.internal/ledger",
            "'postgresql+psycopg://app:***@db.internal/ledger'",
        ),
        ("mysql://app:p%40ss:w/rd@db/x", "'mysql://app:***@db/x'"),
        ("postgre://:S3cret@db/x", "'postgre://:***@db/x'"),
        ("mysql://app@db/x", "'mysql://app@db/x'"),
        ("postgresql:/app:S3cret@db/x", "'postgresql:/app:***@db/x'"),  # a slash short
        ("mysql://app@db/x?sslmode=off&password=S3cret", "'mysql://app@db/x?sslmode=off&password=***'"),
        # libpq reads a query's value to the next & (# is part of it), its name percent-decoded
        ("mysql://app@db/x?PASSWORD=S3cret#x", "'mysql://app@db/x?PASSWORD=***'"),
        ("mysql://app@db/x?pass%77ord=S3cret&a=1", "'mysql://app@db/x?pass%77ord=***&a=1'"),
        ("mysql://app@db/x?sslpassword=S3cret&a=1", "'mysql://app@db/x?sslpassword=***&a=1'"),
        # libpq's keyword form is refused (a URL is asked for), but was named password and all
        ("host=127.0.0.1 password=S3cret dbname=x", "'host=127.0.0.1 password=*** dbname=x'"),
        ("host=db password = 'S3cret with \\' quote' user=u", "'host=db password = *** user=u'"),
        ("sslpassword=S3cret host=db", "'sslpassword=*** host=db'"),
        # a query's value ends at & or # only; a keyword's at a space no backslash escapes
        ("mysql://app@db/x?password=S3cret more", "'mysql://app@db/x?password=***'"),
        ("host=db password=S3cret#&x user=u", "'host=db password=*** user=u'"),
        ("mysql://app@db/x?sslmode=off", "'mysql://app@db/x?sslmode=off'"),
        ("host=db password=S3cret\\ more user=u", "'host=db password=*** user=u'"),
    ],
)
def test_a_refused_database_url_is_named_without_its_password(url: str, shown: str) -> None:
    # The message goes to stderr, which a service manager keeps in its journal: a URL of the
    # wrong scheme (SQLAlchemy's postgresql+psycopg://, say) put the database password there.
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRUEUP_DATABASE_URL": url})
    assert str(refused.value).endswith(f"got {shown}")
    assert "S3cret" not in str(refused.value)
    assert "p%40ss" not in str(refused.value)


def test_an_override_burst_past_what_a_database_integer_holds_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"TRUEUP_RATE_LIMIT_OVERRIDES: .*2\^63 - 1 \(key=rate/burst\)"):
        Settings.from_env({"TRUEUP_RATE_LIMIT_OVERRIDES": f"k=5/{2**63}"})


@pytest.mark.parametrize("spec", ["5/0", "0/100", "0"])
def test_an_override_with_one_zero_is_refused_rather_than_read_as_no_limit(spec: str) -> None:
    with pytest.raises(SettingsError, match=r"has a rate or a burst of 0, .* or 0/0 to turn the limit off$"):
        Settings.from_env({"TRUEUP_RATE_LIMIT_OVERRIDES": f"abcdefgh234567ab={spec}"})
    assert not parse_overrides("abcdefgh234567ab=0/0")["abcdefgh234567ab"].enabled


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_largest_queue_depth_accepted_is_one_the_database_counts_to(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'trueup.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    largest = Settings.from_env({"TRUEUP_MAX_QUEUE_DEPTH": str(2**63 - 1)}).max_queue_depth
    storage = open_storage(url)
    try:
        assert storage.log.queued_at_least(largest) == 0
    finally:
        storage.close()


def test_flags_take_the_usual_words_and_the_bounds_themselves() -> None:
    for word, expected in (("", False), ("off", False), ("No", False), ("1", True), (" YES ", True)):
        assert Settings.from_env({"TRUEUP_WEBHOOK_ALLOW_PRIVATE": word}).webhook_allow_private is expected
    edges = Settings.from_env(
        {
            "TRUEUP_SEAL_BATCH_SIZE": "1",
            "TRUEUP_MAX_BODY_BYTES": "1024",
            "TRUEUP_MAX_QUEUE_DEPTH": "0",
            "TRUEUP_KEY_CACHE_TTL_S": "0",
            "TRUEUP_PLAN_ALLOWANCES": "free=0",
            "TRUEUP_LOG_ORIGIN": "ledger.example.com/log",
            "TRUEUP_DATABASE_URL": "postgres://u@h/d",
        }
    )
    assert (edges.seal_batch_size, edges.max_body_bytes, edges.max_queue_depth) == (1, 1_024, 0)
    assert edges.key_cache_ttl_s == 0 and edges.plan_allowances["free"] == 0
    assert (edges.log_origin, edges.database_url) == ("ledger.example.com/log", "postgres://u@h/d")


def test_secrets_others_may_read_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Created by Trueup they are 0600; a copy, a restore or an older version may leave them open."""
    settings = replace(Settings(), data_dir=tmp_path)
    caplog.set_level(logging.WARNING, logger="trueup")
    open_services(settings).close()
    assert [r for r in caplog.records if r.name == "trueup.service.files"] == []  # as created
    for name in ("signing-key.pem", "key-pepper", "trueup.db"):
        (tmp_path / name).chmod(0o644)
    open_services(settings).close()
    warned = [r.getMessage() for r in caplog.records if r.name == "trueup.service.files"]
    advice = "has mode 0644: other users may read it; chmod 600 it"
    assert warned == [
        f"the signing key {tmp_path / 'signing-key.pem'} {advice}",
        f"the API key pepper {tmp_path / 'key-pepper'} {advice}",
        f"the SQLite database (deltas, salts, sealed webhook secrets) {tmp_path / 'trueup.db'} {advice}",
    ]


def test_a_write_ahead_log_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite makes the -wal file with the database's mode, and keeps it as it is: one made while
    the database was open to others held its newest pages, secrets among them, with no warning
    once the database alone had been made 0600 as the warning asked."""
    settings = replace(Settings(), data_dir=tmp_path)
    open_services(settings).close()
    wal = tmp_path / "trueup.db-wal"
    wal.touch()
    wal.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="trueup")
    open_services(settings).close()
    warned = [r.getMessage() for r in caplog.records if r.name == "trueup.service.files"]
    assert warned == [
        f"the SQLite database's write-ahead log {wal} has mode 0644: other users may read it; chmod 600 it"
    ]


def test_webhook_retention_is_30_days_by_default_and_0_keeps_everything() -> None:
    assert Settings.from_env({}).webhook_retention_days == 30
    assert Settings.from_env({"TRUEUP_WEBHOOK_RETENTION_DAYS": ""}).webhook_retention_days == 30
    assert Settings.from_env({"TRUEUP_WEBHOOK_RETENTION_DAYS": "0"}).webhook_retention_days == 0
    assert Settings.from_env({"TRUEUP_WEBHOOK_RETENTION_DAYS": "36500"}).webhook_retention_days == 36_500


def test_the_bodies_held_at_once_are_at_least_one_body_of_the_largest_size() -> None:
    assert Settings.from_env({}).body_bytes_in_flight == 64 * 1024 * 1024
    assert Settings.from_env({"TRUEUP_BODY_BYTES_IN_FLIGHT": "2000000"}).body_bytes_in_flight == 2_000_000
    # a larger body than the default bound fits whole when the bound is not set
    larger = Settings.from_env({"TRUEUP_MAX_BODY_BYTES": str(100 * 1024 * 1024)})
    assert larger.body_bytes_in_flight == 100 * 1024 * 1024
    with pytest.raises(
        SettingsError, match=r"^TRUEUP_BODY_BYTES_IN_FLIGHT must be at least 2,000,000, got '1999999'"
    ):
        Settings.from_env({"TRUEUP_MAX_BODY_BYTES": "2000000", "TRUEUP_BODY_BYTES_IN_FLIGHT": "1999999"})
