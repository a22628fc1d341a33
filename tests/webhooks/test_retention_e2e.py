"""Webhook retention end to end: the real server process (each backend) delivers to a real
receiver on 127.0.0.1; once an event is older than the retention, the server that takes the
dispatcher role next prunes it, and its routes answer 404 naming it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, create_key, wait_until
from tests.webhooks.receiver import Receiver
from trueup.storage import open_storage

pytestmark = pytest.mark.e2e

WEBHOOK_ENV = {
    "TRUEUP_WEBHOOK_ALLOW_HTTP": "1",
    "TRUEUP_WEBHOOK_ALLOW_PRIVATE": "1",
    "TRUEUP_WEBHOOK_RETENTION_DAYS": "30",
}
LONG_AGO = "2026-01-02T03:04:05.000000Z"


def test_an_old_delivered_event_is_pruned_and_its_routes_answer_404_naming_it(
    tmp_path: Path, server_database: str | None
) -> None:
    key = create_key(tmp_path, server_database)
    headers = {"X-Api-Key": key}
    with Receiver() as receiver:
        with (
            ServerProcess(tmp_path, server_database, extra_env=WEBHOOK_ENV) as server,
            httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as api,
        ):
            created = api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["delta.verified"]})
            assert created.status_code == 201, created.text
            for key_name in ("old", "young"):
                items = [{"key": key_name, "accountId": "c-1", "bits": 5}]
                assert api.post("/api/v1/writes", json={"items": items}).status_code == 202

            def delivered() -> list[dict[str, object]]:
                listed = api.get("/api/v1/balance/webhooks", params={"status": "delivered"})
                found: list[dict[str, object]] = listed.json()["data"]["deliveries"]
                return found

            wait_until(lambda: len(delivered()) == 2)
            by_key = {r.text.split('"key":"')[1].split('"')[0]: r.event_id for r in receiver.requests()}
            old, young = by_key["old"], by_key["young"]
            assert api.get(f"/api/v1/balance/webhooks/{old}").status_code == 200

        # Stopped, the event is made to have happened long ago (as after a month of running).
        storage = open_storage(server_database or f"sqlite:///{tmp_path / 'trueup.db'}")
        try:
            with storage.engine.write() as tx:
                tx.execute("UPDATE webhook_events SET created_at = ? WHERE id = ?", (LONG_AGO, old))
        finally:
            storage.close()

        with (
            ServerProcess(tmp_path, server_database, extra_env=WEBHOOK_ENV) as server,
            httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as api,
        ):
            # Its dispatcher prunes as it takes the role.
            wait_until(lambda: api.get(f"/api/v1/balance/webhooks/{old}").status_code == 404)
            for method, path in (
                ("GET", f"/api/v1/balance/webhooks/{old}"),
                ("POST", f"/api/v1/balance/webhooks/{old}/retry"),
            ):
                reply = api.request(method, path)
                assert reply.status_code == 404, reply.text
                body = reply.json()
                assert body["success"] is False and body["code"] == "NOT_FOUND"
                assert body["message"].startswith(f'webhook event "{old}" not found; events are kept 30 days')
            listed = api.get("/api/v1/balance/webhooks").json()["data"]
            assert [d["eventId"] for d in listed["deliveries"]] == [young]
            assert api.get(f"/api/v1/balance/webhooks/{young}").status_code == 200
            metrics = api.get("/metrics").text
            assert 'trueup_webhook_pruned_rows_total{table="webhook_events"} 1.0' in metrics
            assert 'trueup_webhook_pruned_rows_total{table="webhook_attempts"} 1.0' in metrics
    assert len(receiver.requests()) == 2  # nothing was sent again
