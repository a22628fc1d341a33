"""Webhook secrets at rest: stored sealed under a key derived from the key pepper, opened for
signing, bound to their row, and sealed on upgrade where an older version kept them in clear."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from tests.e2e.server import wait_until
from tests.webhooks.conftest import principal_for, seal_all, write
from trueup.cli import audit as cli_audit
from trueup.core.timestamps import format_canonical
from trueup.service.container import Services, open_services
from trueup.service.webhooks import ENDPOINT_CREATE_ROUTE
from trueup.storage import StorageError, open_storage
from trueup.storage.schema import CLEAR_SECRETS, CLOSED_MONTHS_FROM, SCHEMA_VERSION
from trueup.storage.secret_box import SecretBox, SecretBoxError, is_sealed
from trueup.storage.webhook_queue import UNOPENED_ERROR
from trueup.webhooks.dispatcher import Dispatcher

HOOK = "http://127.0.0.1:9/hook"


def _stored_secrets(services: Services, endpoint_id: str) -> tuple[str, str | None]:
    with services.storage.engine.read() as tx:
        row = tx.one("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
    assert row is not None
    return str(row[0]), None if row[1] is None else str(row[1])


def _stored_reply(services: Services, key: str) -> str:
    with services.storage.engine.read() as tx:
        return str(tx.scalar("SELECT response FROM idempotency_keys WHERE idem_key = ?", (key,)))


def _create_remembered(services: Services, key: str) -> tuple[str, str]:
    """What the create route does with an Idempotency-Key; ``(endpoint id, secret)`` replied."""
    principal = principal_for(services)
    issued = services.webhooks.prepare(principal, {"url": HOOK})
    payload = {"data": {"id": issued.endpoint.id, "secret": issued.secret}}
    reply = services.writes.remember(
        principal, key, ENDPOINT_CREATE_ROUTE, b"{}", 201, payload, services.webhooks.storing(issued)
    )
    assert reply.raw is not None
    data = json.loads(reply.raw)["data"]
    return str(data["id"]), str(data["secret"])


def test_secrets_are_stored_sealed_and_sign_deliveries_opened(services: Services) -> None:
    principal = principal_for(services)
    created = services.webhooks.create(principal, {"url": HOOK})
    secret, previous = _stored_secrets(services, created.endpoint.id)
    assert is_sealed(secret) and created.secret not in secret and previous is None
    rotated = services.webhooks.rotate(principal, created.endpoint.id)
    secret, previous = _stored_secrets(services, created.endpoint.id)
    assert previous is not None and is_sealed(secret) and is_sealed(previous)
    assert rotated.secret not in secret + previous and created.secret not in secret + previous
    # What the dispatcher reads to sign: both secrets, opened, the new one first.
    write(services, principal, {"key": "s-1", "accountId": "c-1", "bits": 5})
    seal_all(services)
    now = format_canonical(datetime.now(UTC))
    (due, *_) = services.storage.webhooks.due(now, 10)
    assert due.endpoint.signing_secrets(now) == (rotated.secret, created.secret)
    record = services.storage.webhooks.endpoint(principal.tenant_id, created.endpoint.id)
    assert record is not None and (record.secret, record.previous_secret) == (rotated.secret, created.secret)
    (listed,) = services.webhooks.endpoints(principal)  # a listing leaves them sealed
    assert is_sealed(listed.secret) and rotated.secret not in listed.secret


def test_the_reply_kept_under_an_idempotency_key_is_sealed_and_replayed_opened(services: Services) -> None:
    endpoint_id, secret = _create_remembered(services, "create-1")
    stored = _stored_reply(services, "create-1")
    assert is_sealed(stored) and secret not in stored and endpoint_id not in stored
    assert _create_remembered(services, "create-1") == (endpoint_id, secret)  # a retry: the same reply


def test_a_sealed_secret_moved_to_another_endpoint_does_not_open(services: Services) -> None:
    principal = principal_for(services)
    first = services.webhooks.create(principal, {"url": HOOK})
    second = services.webhooks.create(principal, {"url": HOOK})
    moved, _ = _stored_secrets(services, first.endpoint.id)
    with services.storage.engine.write() as tx:
        tx.execute("UPDATE webhook_endpoints SET secret = ? WHERE id = ?", (moved, second.endpoint.id))
    with pytest.raises(SecretBoxError, match=f"for webhook endpoint {second.endpoint.id} does not open"):
        services.storage.webhooks.endpoint(principal.tenant_id, second.endpoint.id)
    assert services.storage.webhooks.endpoint(principal.tenant_id, first.endpoint.id) is not None


def test_an_endpoint_whose_secret_does_not_open_fails_only_its_own_deliveries_and_rotating_mends_it(
    services: Services,
) -> None:
    principal = principal_for(services)
    broken = services.webhooks.create(principal, {"url": HOOK})
    sound = services.webhooks.create(principal, {"url": HOOK})
    stored, _ = _stored_secrets(services, broken.endpoint.id)
    with services.storage.engine.write() as tx:  # a row changed in the database: the tag fails
        tx.execute(
            "UPDATE webhook_endpoints SET secret = ? WHERE id = ?",
            (stored[:-6] + "AAAAAA", broken.endpoint.id),
        )
    write(services, principal, {"key": "u-1", "accountId": "c-1", "bits": 5})
    seal_all(services)
    now = format_canonical(datetime.now(UTC))
    due = services.storage.webhooks.due(now, 10)
    assert {d.endpoint_id for d in due} == {sound.endpoint.id}
    assert due[0].endpoint.signing_secrets(now) == (sound.secret,)
    listed, _ = services.webhooks.deliveries(principal, "failed", 20, 0)
    assert {(d.endpoint_id, d.last_error) for d in listed} == {(broken.endpoint.id, UNOPENED_ERROR)}
    assert len(listed) == 2  # delta.verified and verification.completed
    assert len(services.webhooks.endpoints(principal)) == 2  # the listing still shows both
    rotated = services.webhooks.rotate(principal, broken.endpoint.id)
    mended = services.storage.webhooks.endpoint(principal.tenant_id, broken.endpoint.id)
    assert mended is not None and (mended.secret, mended.previous_secret) == (rotated.secret, None)
    assert mended.previous_expires_at is None
    services.webhooks.delete(principal, sound.endpoint.id)
    with services.storage.engine.write() as tx:
        tx.execute(
            "UPDATE webhook_endpoints SET secret = 'sealed:v1:AAAA' WHERE id = ?", (broken.endpoint.id,)
        )
    assert services.webhooks.delete(principal, broken.endpoint.id).id == broken.endpoint.id
    assert services.webhooks.endpoints(principal) == []


def test_a_box_of_another_pepper_opens_nothing_and_clear_values_pass_through() -> None:
    box, other = SecretBox(b"p" * 32), SecretBox(b"q" * 32)
    sealed = box.seal("whsec_abc", "here")
    assert box.open(sealed, "here") == "whsec_abc"
    assert sealed != box.seal("whsec_abc", "here")  # a fresh nonce each time
    for opener, context in ((other, "here"), (box, "there")):
        with pytest.raises(SecretBoxError, match="does not open"):
            opener.open(sealed, context)
    with pytest.raises(SecretBoxError):
        box.open(sealed[:-4] + "AAAA", "here")
    assert box.open("whsec_kept-in-clear", "here") == "whsec_kept-in-clear"


def _as_an_older_version_left_it(
    services: Services, clear: dict[str, tuple[str, str | None]], reply_key: str, reply: str
) -> None:
    """Put the secrets back in clear and the schema back before migration 14, as a Trueup of
    schema 13 would have left the database."""
    with services.storage.engine.write() as tx:
        for endpoint_id, (secret, previous) in clear.items():
            tx.execute(
                "UPDATE webhook_endpoints SET secret = ?, previous_secret = ? WHERE id = ?",
                (secret, previous, endpoint_id),
            )
        tx.execute("UPDATE idempotency_keys SET response = ? WHERE idem_key = ?", (reply, reply_key))
        tx.execute("DELETE FROM schema_migrations WHERE version >= 14")
        tx.execute("DELETE FROM counters WHERE name IN (?, ?)", (CLEAR_SECRETS, CLOSED_MONTHS_FROM))


def test_an_upgrade_seals_the_secrets_an_older_version_kept_in_clear(services: Services) -> None:
    principal = principal_for(services)
    first = services.webhooks.create(principal, {"url": HOOK})
    rotated_id, first_secret = first.endpoint.id, first.secret
    rotated = services.webhooks.rotate(principal, rotated_id)
    plain = services.webhooks.create(principal, {"url": HOOK})
    remembered_id, remembered_secret = _create_remembered(services, "create-old")
    reply = json.dumps({"data": {"id": remembered_id, "secret": remembered_secret}})
    clear = {
        rotated_id: (rotated.secret, first_secret),
        plain.endpoint.id: (plain.secret, None),
        remembered_id: (remembered_secret, None),
    }
    _as_an_older_version_left_it(services, clear, "create-old", reply)
    upgraded = open_services(services.settings)  # migrates to 14, which marks the database, and seals
    try:
        for endpoint_id, (secret, previous) in clear.items():
            stored, stored_previous = _stored_secrets(upgraded, endpoint_id)
            assert is_sealed(stored) and secret not in stored
            assert (stored_previous is None) == (previous is None)
            assert stored_previous is None or (is_sealed(stored_previous) and previous not in stored_previous)
            record = upgraded.storage.webhooks.endpoint(principal.tenant_id, endpoint_id)
            assert record is not None and (record.secret, record.previous_secret) == (secret, previous)
        stored_reply = _stored_reply(upgraded, "create-old")
        assert is_sealed(stored_reply) and remembered_secret not in stored_reply
        assert _create_remembered(upgraded, "create-old") == (remembered_id, remembered_secret)
        with upgraded.storage.engine.read() as tx:
            assert tx.scalar("SELECT value FROM counters WHERE name = ?", (CLEAR_SECRETS,)) is None
    finally:
        upgraded.close()


def test_a_database_without_webhooks_is_never_marked_for_sealing(services: Services) -> None:
    with services.storage.engine.read() as tx:
        assert tx.scalar("SELECT value FROM counters WHERE name = ?", (CLEAR_SECRETS,)) is None
        assert tx.scalar("SELECT MAX(version) FROM schema_migrations") == SCHEMA_VERSION


def test_a_store_opened_without_the_pepper_refuses_to_read_or_write_a_secret(services: Services) -> None:
    principal = principal_for(services)
    created = services.webhooks.create(principal, {"url": HOOK})
    bare = open_storage(services.settings.resolved_database_url, run_migrations=False)
    try:
        with pytest.raises(
            StorageError, match=r"^webhook secrets are sealed with the key pepper, which this"
        ):
            bare.webhooks.endpoint(principal.tenant_id, created.endpoint.id)
        with pytest.raises(
            StorageError, match=r"^replies kept under idempotency keys are sealed with the key"
        ):
            bare.writes.seal_clear_replies(ENDPOINT_CREATE_ROUTE)
    finally:
        bare.close()


def test_the_dispatcher_taking_its_role_seals_secrets_an_older_process_wrote_in_clear(
    services: Services,
) -> None:
    """An API process of a version before 14 left running through the upgrade (it holds no role
    lock, so the upgrade does not wait for it) still stores new secrets in clear."""
    principal = principal_for(services)
    created = services.webhooks.create(principal, {"url": HOOK})
    with services.storage.engine.write() as tx:
        tx.execute(
            "UPDATE webhook_endpoints SET secret = ? WHERE id = ?", (created.secret, created.endpoint.id)
        )
    dispatcher = Dispatcher(services.storage, services.settings, poll_s=0.05)
    dispatcher.start()
    try:
        wait_until(lambda: is_sealed(_stored_secrets(services, created.endpoint.id)[0]))
    finally:
        dispatcher.stop()
    record = services.storage.webhooks.endpoint(principal.tenant_id, created.endpoint.id)
    assert record is not None and record.secret == created.secret


def test_the_audit_warns_of_secrets_stored_in_clear_and_passes(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    principal = principal_for(services)
    created = services.webhooks.create(principal, {"url": HOOK})
    services.webhooks.create(principal, {"url": HOOK})
    settings = services.settings
    where = ["--data-dir", str(settings.data_dir), "--database-url", settings.resolved_database_url]
    assert cli_audit.run(where) == 0
    assert capsys.readouterr().err == ""
    with services.storage.engine.write() as tx:  # as an older API process writes it
        tx.execute(
            "UPDATE webhook_endpoints SET secret = ? WHERE id = ?", (created.secret, created.endpoint.id)
        )
    assert cli_audit.run(where) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith(
        "audit warning: 1 webhook endpoints have a secret stored in clear, as a Trueup before schema"
    )
    assert created.secret not in printed.err + printed.out
    assert printed.out.startswith("audit passed:")


def test_servers_starting_together_on_a_marked_database_seal_every_secret_once(services: Services) -> None:
    """Several processes of a new version start on an upgraded database at once (``serve
    --workers``, several hosts): each looks through it, none waits on another for long or
    deadlocks, and each secret ends sealed, opening to what it was."""
    tenants = [principal_for(services, f"tenant-{n}") for n in range(5)]
    created = [services.webhooks.create(tenants[n % 5], {"url": HOOK}) for n in range(40)]
    with services.storage.engine.write() as tx:  # as a Trueup before schema 14 left them
        for issued in created:
            tx.execute(
                "UPDATE webhook_endpoints SET secret = ? WHERE id = ?", (issued.secret, issued.endpoint.id)
            )
        tx.execute("INSERT INTO counters (name, value) VALUES (?, 1)", (CLEAR_SECRETS,))
    with ThreadPoolExecutor(max_workers=4) as pool:
        opened = list(pool.map(lambda _: open_services(services.settings), range(4)))
    for each in opened:
        each.close()
    assert services.storage.webhooks.clear_secret_count() == 0
    for issued in created:
        record = services.storage.webhooks.endpoint(issued.endpoint.tenant_id, issued.endpoint.id)
        assert record is not None and record.secret == issued.secret
    with services.storage.engine.read() as tx:
        assert tx.scalar("SELECT value FROM counters WHERE name = ?", (CLEAR_SECRETS,)) is None
