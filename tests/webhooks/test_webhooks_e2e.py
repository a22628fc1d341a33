"""Webhooks end to end: the real server process (each backend) delivering to a real receiver
on 127.0.0.1, checked with our verify_webhook and with PacSpace's SDK."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pacspace_sdk import PacSpace, Webhooks
from pacspace_sdk.errors import WebhookVerificationError as SDKVerificationError

from tests.conftest import fresh_pg_schema
from tests.e2e.server import ServerProcess, create_key, free_port, wait_until
from tests.webhooks.conftest import principal_for, seal_all, write
from tests.webhooks.receiver import Received, Receiver, block_first, fail_first
from trueup import verify_webhook
from trueup.service.container import open_services
from trueup.service.settings import Settings
from trueup.webhooks.signing import EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, sign_payload

pytestmark = pytest.mark.e2e

WEBHOOK_ENV = {
    "TRUEUP_WEBHOOK_ALLOW_HTTP": "1",
    "TRUEUP_WEBHOOK_ALLOW_PRIVATE": "1",
    "TRUEUP_WEBHOOK_RETRY_BASE_S": "0.05",
}
_tenants = itertools.count(1)


@dataclass
class Site:
    """A running server over one backend; each test makes its own tenant on it."""

    server: ServerProcess
    data_dir: Path
    database_url: str | None

    @property
    def url(self) -> str:
        return self.server.base_url

    def tenant(self) -> Tenant:
        name = f"hooks-{next(_tenants)}"
        return Tenant(self, create_key(self.data_dir, self.database_url, name), name)


@dataclass
class Tenant:
    site: Site
    key: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.key, "Content-Type": "application/json"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.site.url + path, headers=self.headers, timeout=30, **kwargs)

    def endpoint(self, url: str, **body: Any) -> dict[str, Any]:
        reply = self.call("POST", "/api/v1/webhooks", json={"url": url, **body})
        assert reply.status_code == 201, reply.text
        data: dict[str, Any] = reply.json()["data"]
        return data

    def write(self, *keys: str, account: str = "cust-1") -> str:
        items = [{"key": key, "accountId": account, "bits": 10 + n} for n, key in enumerate(keys)]
        reply = self.call("POST", "/api/v1/writes", json={"items": items})
        assert reply.status_code == 202, reply.text
        request_id: str = reply.json()["data"]["requestId"]
        return request_id

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        reply = self.call("GET", "/api/v1/balance/webhooks", params={"limit": 100, **params})
        assert reply.status_code == 200, reply.text
        listed: list[dict[str, Any]] = reply.json()["data"]["deliveries"]
        return listed

    def all_delivered(self, count: int) -> bool:
        listed = self.deliveries()
        return len(listed) == count and all(d["status"] == "delivered" for d in listed)


def _start(data_dir: Path, database_url: str | None) -> ServerProcess:
    return ServerProcess(data_dir, database_url, extra_env=WEBHOOK_ENV).start()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("hooks")
    if request.param == "sqlite":
        server = _start(data_dir, None)
        try:
            yield Site(server, data_dir, None)
        finally:
            server.stop()
    else:
        with fresh_pg_schema() as url:
            server = _start(data_dir, url)
            try:
                yield Site(server, data_dir, url)
            finally:
                server.stop()


def _envelopes(received: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in received]


def test_deliveries_verify_with_our_helper_and_with_pacspaces_sdk(site: Site) -> None:
    tenant = site.tenant()
    with Receiver() as receiver:
        secret = tenant.endpoint(receiver.url, description="e2e")["secret"]
        tenant.write("v-1", "v-2")
        wait_until(lambda: tenant.all_delivered(3))
    got = receiver.requests()
    assert sorted(r.event_type for r in got) == ["delta.verified", "delta.verified", "verification.completed"]
    for received in got:
        ours = verify_webhook(secret, received.headers, received.body)
        theirs = Webhooks(secret).verify_from_headers(received.headers, received.text)
        assert ours == theirs
        assert ours["id"] == received.headers[EVENT_ID_HEADER]
        assert ours["event"] == received.headers[EVENT_HEADER]
        with pytest.raises(SDKVerificationError):
            Webhooks("whsec_not-the-secret").verify_from_headers(received.headers, received.text)


def test_verification_completed_arrives_once_per_request_with_the_documented_data(site: Site) -> None:
    tenant = site.tenant()
    with Receiver() as receiver:
        tenant.endpoint(receiver.url, events=["verification.completed"])
        first = tenant.write("c-1", "c-2", "c-3")
        second = tenant.write("c-4", account="cust-2")
        wait_until(lambda: tenant.all_delivered(2))
    by_request = {e["data"]["requestId"]: e for e in _envelopes(receiver.requests())}
    assert sorted(by_request) == sorted([first, second]) and len(receiver.requests()) == 2
    for request_id, keys in ((first, ["c-1", "c-2", "c-3"]), (second, ["c-4"])):
        envelope = by_request[request_id]
        assert set(envelope) == {"id", "event", "timestamp", "data"}
        assert envelope["event"] == "verification.completed"
        data = envelope["data"]
        status = tenant.call("GET", f"/api/v1/writes/{request_id}").json()["data"]
        assert data["itemCount"] == len(keys) and data["status"] == "verified"
        assert data["treeHead"] == status["treeHead"]
        assert data["itemsRoot"] == status["treeHead"]["rootHash"]
        assert [(i["key"], i["accountId"], i["anchorId"]) for i in data["items"]] == [
            (i["key"], i["accountId"], i["anchorId"]) for i in status["items"]
        ]
        assert all(i["anchorId"].startswith("a_") for i in data["items"])


def test_a_retried_request_of_sealed_deltas_completes_at_once(site: Site) -> None:
    tenant = site.tenant()
    with Receiver() as receiver:
        tenant.endpoint(receiver.url, events=["verification.completed"])
        first = tenant.write("r-1", "r-2")
        wait_until(lambda: tenant.all_delivered(1))
        retry = tenant.write("r-1", "r-2")
        wait_until(lambda: tenant.all_delivered(2))
    by_request = {e["data"]["requestId"]: e["data"] for e in _envelopes(receiver.requests())}
    assert set(by_request) == {first, retry}
    original, repeated = by_request[first], by_request[retry]
    assert [i["anchorId"] for i in repeated["items"]] == [i["anchorId"] for i in original["items"]]
    assert [i["status"] for i in repeated["items"]] == ["duplicate", "duplicate"]
    assert repeated["status"] == "verified" and repeated["treeHead"] == original["treeHead"]
    status = tenant.call("GET", f"/api/v1/writes/{retry}").json()["data"]
    assert status["status"] == "verified" and status["verifiedAt"] is not None


def test_a_receiver_failing_three_times_gets_the_event_exactly_once_more(site: Site) -> None:
    tenant = site.tenant()
    with Receiver(fail_first(3)) as receiver:
        tenant.endpoint(receiver.url, events=["verification.completed"])
        tenant.write("f-1")
        wait_until(lambda: tenant.all_delivered(1))
    got = receiver.requests()
    assert [r.status for r in got] == [503, 503, 503, 200]
    assert len({r.headers[EVENT_ID_HEADER] for r in got}) == 1
    assert len({r.body for r in got}) == 1  # the same bytes each time; only the signature is fresh
    (delivery,) = tenant.deliveries()
    assert (delivery["attempts"], delivery["lastStatusCode"], delivery["status"]) == (4, 200, "delivered")
    detail = tenant.call("GET", f"/api/v1/balance/webhooks/{delivery['eventId']}").json()["data"]
    assert [a["statusCode"] for a in detail["attempts"]] == [503, 503, 503, 200]
    assert detail["payload"]["id"] == delivery["eventId"]


def test_after_rotation_deliveries_carry_two_signatures_new_first(site: Site) -> None:
    tenant = site.tenant()
    with Receiver() as receiver:
        created = tenant.endpoint(receiver.url, events=["verification.completed"])
        rotated = tenant.call("POST", f"/api/v1/webhooks/{created['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new_secret, old_secret = rotated.json()["data"]["secret"], created["secret"]
        assert new_secret != old_secret and rotated.json()["data"]["previousSecretExpiresAt"]
        tenant.write("r-1")
        wait_until(lambda: tenant.all_delivered(1))
    (received,) = receiver.requests()
    stamp = received.headers["X-PacSpace-Timestamp"]
    assert received.headers[SIGNATURE_HEADER] == ", ".join(
        [sign_payload(new_secret, stamp, received.body), sign_payload(old_secret, stamp, received.body)]
    )
    for secret in (new_secret, old_secret):
        assert Webhooks(secret).verify_from_headers(received.headers, received.text)["id"]
        assert verify_webhook(secret, received.headers, received.body)["id"]
    listed = tenant.call("GET", "/api/v1/webhooks").json()["data"]["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]


def test_the_sdk_lists_deliveries_and_retries_one(site: Site) -> None:
    tenant = site.tenant()
    sdk = PacSpace(tenant.key, base_url=site.url, max_retries=0)
    with Receiver() as receiver:
        tenant.endpoint(receiver.url, events=["verification.completed"])
        tenant.write("sdk-1")
        wait_until(lambda: tenant.all_delivered(1))
        listed = sdk.balance.list_webhook_deliveries({"status": "delivered", "limit": 10})
        (delivery,) = listed["deliveries"]
        assert listed["total"] == 1 and delivery["deliveryStatus"] == "delivered"
        assert sdk.balance.list_webhook_deliveries({"status": "failed"})["deliveries"] == []
        retried = sdk.balance.retry_webhook(delivery["eventId"])
        assert retried["eventId"] == delivery["eventId"] and retried["queued"] == 1
        wait_until(lambda: len(receiver.requests()) == 2 and tenant.all_delivered(1))
    first, again = receiver.requests()
    assert first.headers[EVENT_ID_HEADER] == again.headers[EVENT_ID_HEADER] == delivery["eventId"]
    assert first.body == again.body


def test_a_retried_create_with_an_idempotency_key_returns_the_same_endpoint(site: Site) -> None:
    tenant = site.tenant()
    with Receiver() as receiver:
        body = {"url": receiver.url, "description": "retry me"}
        headers = {**tenant.headers, "Idempotency-Key": "create-once"}
        first = httpx.post(site.url + "/api/v1/webhooks", headers=headers, json=body, timeout=30)
        again = httpx.post(site.url + "/api/v1/webhooks", headers=headers, json=body, timeout=30)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        other = httpx.post(
            site.url + "/api/v1/webhooks", headers=headers, json={**body, "description": "x"}, timeout=30
        )
        assert other.status_code == 409 and other.json()["code"] == "IDEMPOTENCY_MISMATCH"
        listed = tenant.call("GET", "/api/v1/webhooks").json()["data"]
        assert listed["total"] == 1


def _stored_text(site: Site) -> bytes:
    """What the database holds of endpoints and kept replies: on SQLite every byte of its files
    (the write-ahead log among them), on PostgreSQL those tables' rows as text."""
    if site.database_url is None:
        return b"".join(path.read_bytes() for path in sorted(site.data_dir.glob("trueup.db*")))
    with psycopg.connect(site.database_url) as conn:
        rows = conn.execute(
            "SELECT t::text FROM webhook_endpoints t UNION ALL SELECT t::text FROM idempotency_keys t"
        ).fetchall()
    return "\n".join(str(row[0]) for row in rows).encode()


def test_the_database_holds_no_secret_a_tenant_was_shown(site: Site) -> None:
    """Secrets are sealed with a key derived from the key pepper: a copy of the database alone
    gives nobody what signs deliveries, while deliveries still verify with the shown secret."""
    tenant = site.tenant()
    with Receiver() as receiver:
        headers = {**tenant.headers, "Idempotency-Key": "sealed-create"}
        created = httpx.post(
            site.url + "/api/v1/webhooks", headers=headers, json={"url": receiver.url}, timeout=30
        )
        assert created.status_code == 201, created.text
        first = created.json()["data"]
        rotated = tenant.call("POST", f"/api/v1/webhooks/{first['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["data"]["secret"]
        again = httpx.post(
            site.url + "/api/v1/webhooks", headers=headers, json={"url": receiver.url}, timeout=30
        )
        assert again.json()["data"]["secret"] == first["secret"]  # the kept reply, opened
        tenant.write("sealed-1")
        wait_until(lambda: tenant.all_delivered(2))
    stored = _stored_text(site)
    assert first["id"].encode() in stored  # the rows were read
    for secret in (first["secret"], second):
        assert secret.encode() not in stored
        assert secret.removeprefix("whsec_").encode() not in stored
    for received in receiver.requests():
        assert verify_webhook(second, received.headers, received.body)
        assert verify_webhook(first["secret"], received.headers, received.body)


def test_a_read_only_key_gets_403_before_any_replay_or_lookup(site: Site) -> None:
    """A read-only key of the same tenant learns nothing from a managing route: not the secret
    a stored reply holds, not whether an endpoint exists."""
    tenant = site.tenant()
    reader = create_key(site.data_dir, site.database_url, tenant.name, "--read-only")
    headers = {"X-Api-Key": reader, "Content-Type": "application/json", "Idempotency-Key": "made-once"}
    body = {"url": "http://127.0.0.1:1/secret"}
    writer = {**headers, "X-Api-Key": tenant.key}
    made = httpx.post(site.url + "/api/v1/webhooks", headers=writer, json=body, timeout=30)
    assert made.status_code == 201 and made.json()["data"]["secret"].startswith("whsec_")
    replayed = httpx.post(site.url + "/api/v1/webhooks", headers=headers, json=body, timeout=30)
    assert replayed.status_code == 403 and "secret" not in replayed.text, replayed.text
    for url in ("http://127.0.0.1:1/secret", "http://127.0.0.1:1/none"):
        gone = httpx.delete(site.url + "/api/v1/webhooks", headers=headers, params={"url": url}, timeout=30)
        assert gone.status_code == 403 and gone.json()["code"] == "FORBIDDEN", gone.text
    # Whatever the parameters: none, both, too long.
    for params in ({}, {"id": "x", "url": "y"}, {"id": "x" * 65}, {"url": "h" * 3000}):
        gone = httpx.delete(site.url + "/api/v1/webhooks", headers=headers, params=params, timeout=30)
        assert gone.status_code == 403 and gone.json()["code"] == "FORBIDDEN", gone.text
    for params, message in (
        ({"id": "x" * 65}, "id: must be at most 64 characters, got 65"),
        ({"url": "h" * 3000}, "url: must be at most 2048 characters, got 3,000"),
    ):
        gone = tenant.call("DELETE", "/api/v1/webhooks", params=params)
        assert (gone.status_code, gone.json()["message"]) == (400, message), gone.text
    assert tenant.call("GET", "/api/v1/webhooks").json()["data"]["total"] == 1


def test_bad_endpoints_and_unknown_ids_get_4xx_naming_the_field(site: Site) -> None:
    tenant = site.tenant()
    for body, field in (
        ({"url": "ftp://example.com/"}, "url"),
        ({}, "url"),
        ({"url": "http://127.0.0.1:1/", "events": ["nope"]}, "events[0]"),
    ):
        reply = tenant.call("POST", "/api/v1/webhooks", json=body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "VALIDATION_ERROR"
        assert reply.json()["message"].startswith(f"{field}: ")
    assert tenant.call("DELETE", "/api/v1/webhooks/wh_unknown").status_code == 404
    assert tenant.call("POST", "/api/v1/balance/webhooks/evt_unknown/retry").status_code == 404
    assert tenant.call("GET", "/api/v1/balance/webhooks", params={"status": "sent"}).status_code == 400
    assert tenant.call("DELETE", "/api/v1/webhooks").status_code == 400
    created = tenant.endpoint("http://127.0.0.1:1/by-url")
    other = site.tenant()
    assert other.call("DELETE", f"/api/v1/webhooks/{created['id']}").status_code == 404
    deleted = tenant.call("DELETE", "/api/v1/webhooks", params={"url": "http://127.0.0.1:1/by-url"})
    assert deleted.status_code == 200 and deleted.json()["data"] == {
        "id": created["id"],
        "url": created["url"],
        "deleted": True,
        "ids": [created["id"]],
    }
    assert tenant.call("GET", "/api/v1/webhooks").json()["data"] == {"webhooks": [], "total": 0}


def test_deleting_by_url_deletes_every_endpoint_registered_with_it(site: Site) -> None:
    """A URL registered twice (a create retried without an Idempotency-Key) is gone after one
    DELETE ?url=: no endpoint is left sending to it."""
    tenant = site.tenant()
    url = "http://127.0.0.1:1/twice"
    first, second = tenant.endpoint(url), tenant.endpoint(url)
    kept = tenant.endpoint("http://127.0.0.1:1/kept")
    deleted = tenant.call("DELETE", "/api/v1/webhooks", params={"url": url})
    assert deleted.status_code == 200, deleted.text
    listed = tenant.call("GET", "/api/v1/webhooks").json()["data"]
    assert [w["id"] for w in listed["webhooks"]] == [kept["id"]]
    assert deleted.json()["data"] == {
        "id": first["id"],
        "url": url,
        "deleted": True,
        "ids": [first["id"], second["id"]],
    }
    assert tenant.call("DELETE", "/api/v1/webhooks", params={"url": url}).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_server_killed_mid_delivery_redelivers_the_same_event_after_restart(
    backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        _kill_mid_delivery(tmp_path, None)
    else:
        with fresh_pg_schema() as url:
            _kill_mid_delivery(tmp_path, url)


def _kill_mid_delivery(data_dir: Path, database_url: str | None) -> None:
    key = create_key(data_dir, database_url, "killed")
    release = threading.Event()
    with Receiver(block_first(release)) as receiver:
        server = _start(data_dir, database_url)
        try:
            tenant = Tenant(Site(server, data_dir, database_url), key, "killed")
            tenant.endpoint(receiver.url, events=["verification.completed"])
            tenant.write("kill-1")
            wait_until(lambda: len(receiver.requests()) == 1)  # held open: mid-delivery
        finally:
            server.kill()
        release.set()  # the held request is answered only after its sender died
        server = _start(data_dir, database_url)
        try:
            tenant = Tenant(Site(server, data_dir, database_url), key, "killed")
            wait_until(lambda: tenant.all_delivered(1))
        finally:
            server.stop()
    first, again = receiver.requests()[:2]
    assert first.headers[EVENT_ID_HEADER] == again.headers[EVENT_ID_HEADER]
    assert first.body == again.body and again.status == 200
    assert len(receiver.answered(200)) >= 2  # the dead sender's answer plus the redelivery


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_dispatcher_runs_alone_as_its_own_process(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        _dispatch_alone(tmp_path, f"sqlite:///{tmp_path / 'trueup.db'}")
    else:
        with fresh_pg_schema() as url:
            _dispatch_alone(tmp_path, url)


def _dispatch_alone(data_dir: Path, database_url: str) -> None:
    settings = replace(
        Settings(),
        data_dir=data_dir,
        database_url=database_url,
        webhook_allow_http=True,
        webhook_allow_private=True,
    )
    services = open_services(settings)
    try:
        with Receiver() as receiver:
            principal = principal_for(services)
            secret = services.webhooks.create(
                principal, {"url": receiver.url, "events": ["verification.completed"]}
            ).secret
            write(services, principal, {"key": "alone-1", "accountId": "c-1", "bits": 3})
            seal_all(services)
            command = [
                sys.executable,
                "-m",
                "trueup.cli.main",
                "dispatcher",
                "--workers",
                "2",
                "--data-dir",
                str(data_dir),
                "--database-url",
                database_url,
                "--metrics-port",
                str(port := free_port()),
            ]
            process = subprocess.Popen(
                command, env={**os.environ, **WEBHOOK_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                wait_until(lambda: len(receiver.answered(200)) == 1)
                # its deliveries are counted where they were made, on its own port
                wait_until(
                    lambda: (
                        'trueup_webhook_attempts_total{outcome="delivered"} 1.0'
                        in httpx.get(f"http://127.0.0.1:{port}/metrics").text
                    )
                )
            finally:
                process.send_signal(signal.SIGTERM)
                _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr.decode()
            said = stderr.decode()
            assert "INFO trueup.cli.dispatcher: asked to stop (SIGTERM); stopping" in said, said
            assert said.rstrip().endswith("INFO trueup.cli.dispatcher: stopped"), said
        (received,) = receiver.requests()
        assert verify_webhook(secret, received.headers, received.body)["event"] == "verification.completed"
    finally:
        services.close()
