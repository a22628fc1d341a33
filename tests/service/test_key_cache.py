"""The per-process cache of verified API keys: a busy key is verified again before it expires."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from trueup.core.errors import InvalidApiKeyError
from trueup.service import keys as keys_module
from trueup.service.container import Services
from trueup.service.keys import KeyService, Principal
from trueup.storage.errors import StorageUnavailableError
from trueup.storage.tenants import ApiKeyRecord

TTL = 10.0


class Clock:
    """Stands in for the ``time`` module in :mod:`trueup.service.keys`: time moves when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keys_module, "time", fake)
    return fake


@pytest.fixture
def keys(services: Services, tmp_path: Path, clock: Clock) -> Iterator[KeyService]:
    service = KeyService(services.storage, tmp_path / "key-pepper", cache_ttl_s=TTL)  # the database's pepper
    yield service
    service.close()


class CountingReads:
    """Counts the key reads that reach the database, and can hold them until released."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.release = threading.Event()
        self.release.set()
        tenants = services.storage.tenants
        read = tenants.key

        def counted(key_id: str) -> ApiKeyRecord | None:
            self.count += 1
            self.release.wait(timeout=30)
            return read(key_id)

        monkeypatch.setattr(tenants, "key", counted)


def verified_key(keys: KeyService) -> tuple[str, Principal]:
    """A new key, verified once (so cached at the clock's present time), and its principal."""
    issued = keys.create("acme")
    return issued.key, keys.authenticate(issued.key)


def settle(keys: KeyService) -> None:
    """Wait for background verification to finish (``close`` joins its thread)."""
    keys.close()


def keys_drained(keys: KeyService) -> None:
    """Wait until the background verifier has nothing queued or running (it stays open)."""
    refresher = keys._refresher  # the service's own thread: a task queued after the others
    if refresher is not None:
        refresher.submit(lambda: None).result(timeout=30)


def test_a_key_in_the_first_half_of_its_time_is_served_from_the_cache_alone(
    keys: KeyService, clock: Clock, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, principal = verified_key(keys)
    reads = CountingReads(services, monkeypatch)
    clock.now += TTL / 2 - 0.001
    assert keys.cached(key) == principal
    settle(keys)
    assert reads.count == 0


def test_a_busy_key_is_verified_again_in_the_background_and_never_drops_out(
    keys: KeyService, clock: Clock, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, principal = verified_key(keys)
    reads = CountingReads(services, monkeypatch)
    clock.now += TTL * 0.75
    assert keys.cached(key) == principal  # answered at once, verified behind it
    settle(keys)
    assert reads.count == 1
    clock.now += TTL * 0.5  # past the first verification's expiry, inside the second's
    assert keys.cached(key) == principal
    settle(keys)


def test_requests_arriving_while_a_key_is_verified_again_share_one_verification(
    keys: KeyService, clock: Clock, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, principal = verified_key(keys)
    reads = CountingReads(services, monkeypatch)
    reads.release.clear()  # the verification in the background waits here
    clock.now += TTL * 0.75
    assert [keys.cached(key) for _ in range(64)] == [principal] * 64
    reads.release.set()
    settle(keys)
    assert reads.count == 1


def test_a_key_revoked_meanwhile_leaves_the_cache_at_its_next_verification(
    keys: KeyService, clock: Clock
) -> None:
    key, principal = verified_key(keys)
    assert keys.revoke(principal.key_id)
    clock.now += TTL * 0.75
    assert keys.cached(key) is not None  # verified before the revocation, TTL not over
    settle(keys)
    assert keys.cached(key) is None
    with pytest.raises(InvalidApiKeyError, match="revoked"):
        keys.authenticate(key)


def test_an_entry_expires_after_its_ttl_when_nobody_uses_it(keys: KeyService, clock: Clock) -> None:
    key, _ = verified_key(keys)
    clock.now += TTL
    assert keys.cached(key) is None


def test_while_the_database_cannot_answer_a_key_is_tried_once_and_then_left_to_expire(
    keys: KeyService, clock: Clock, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, principal = verified_key(keys)
    attempts = []

    def unavailable(key_id: str) -> None:
        attempts.append(key_id)
        raise StorageUnavailableError("the database is down")

    monkeypatch.setattr(services.storage.tenants, "key", unavailable)
    clock.now += TTL * 0.75
    for _ in range(3):
        assert [keys.cached(key) for _ in range(100)] == [principal] * 100
        keys_drained(keys)
    assert len(attempts) == 1  # not one per request while the entry lasts
    clock.now += TTL * 0.25
    assert keys.cached(key) is None  # expired: the next request verifies the key itself
    with pytest.raises(StorageUnavailableError):
        keys.authenticate(key)


def test_a_closed_service_verifies_nothing_in_the_background(
    keys: KeyService, clock: Clock, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, principal = verified_key(keys)
    reads = CountingReads(services, monkeypatch)
    keys.close()
    clock.now += TTL * 0.75
    assert keys.cached(key) == principal
    assert not [t for t in threading.enumerate() if t.name.startswith("trueup-key-refresh")]
    assert reads.count == 0


def test_only_the_key_as_issued_is_cached_and_only_http_whitespace_is_taken_off(
    keys: KeyService, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variants of one key (what ``str.strip`` takes off: no-break spaces, NEL) could fill
    the cache with a huge entry each; they are refused, and spaces or tabs around a key,
    which HTTP's parsers take off anyway, are verified each time rather than cached."""
    key, principal = verified_key(keys)
    for junk in ("\xa0", "\x85", "\u2003"):
        with pytest.raises(InvalidApiKeyError, match="malformed"):
            keys.authenticate(key + junk * 1000)
    reads = CountingReads(services, monkeypatch)
    assert keys.authenticate(f" {key}\t") == principal
    assert keys.cached(f" {key}\t") is None and reads.count == 1
    assert list(keys._cache) == [key]


def test_a_missing_an_empty_and_a_malformed_key_are_told_apart(services: Services) -> None:
    for presented, message in (
        (None, "missing X-Api-Key header"),
        ("", "X-Api-Key is empty"),
        (" \t", "X-Api-Key is empty"),
        (
            "pk_test_abc.def",
            "X-Api-Key is malformed: expected pk_live_<id>.<secret> or pk_test_<id>.<secret>",
        ),
    ):
        with pytest.raises(InvalidApiKeyError) as refused:
            services.keys.authenticate(presented)
        assert str(refused.value) == message, presented
