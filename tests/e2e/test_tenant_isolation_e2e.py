"""Every route, called with a second tenant's key and the first tenant's ids, reveals nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_pg_schema
from tests.e2e.conftest import Running
from tests.e2e.server import ServerProcess, create_key, local_server, wait_until

PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/api/v1/log/checkpoint",
    "/api/v1/log/key",
    "/api/v1/log/proof/consistency",
    "/api/v1/verify/{root}",
}


def _seed_tenant_a(running: Running) -> dict[str, Any]:
    url, headers = running.url, running.headers
    reply = httpx.post(
        f"{url}/api/v1/writes",
        headers=headers,
        json={
            "items": [
                {"key": "iso-1", "accountId": "iso-cust", "bits": 10, "occurredAt": "2026-01-10T00:00:00Z"},
                {"key": "iso-2", "accountId": "iso-cust", "bits": -4, "occurredAt": "2026-01-11T00:00:00Z"},
            ]
        },
    )
    assert reply.status_code == 202
    request_id = reply.json()["data"]["requestId"]
    status_url = f"{url}/api/v1/writes/{request_id}"
    wait_until(lambda: httpx.get(status_url, headers=headers).json()["data"]["status"] == "verified")
    items = httpx.get(status_url, headers=headers).json()["data"]["items"]
    checkpoint = httpx.post(
        f"{url}/api/v1/balance/checkpoint",
        headers=headers,
        json={"customerId": "iso-cust", "period": "2026-01"},
    ).json()["data"]
    ids: dict[str, Any] = {
        "request": request_id,
        "record": items[0]["recordId"],
        "anchor": items[0]["anchorId"],
        "customer": "iso-cust",
        "checkpoint": checkpoint["checkpointId"],
    }
    hook = httpx.post(
        f"{url}/api/v1/webhooks", headers=headers, json={"url": "https://hooks.example.com/trueup"}
    )
    if hook.status_code in (200, 201):
        ids["webhook"] = hook.json()["data"]["id"]
    events = httpx.get(f"{url}/api/v1/balance/webhooks", headers=headers)
    if events.status_code == 200:
        deliveries = events.json()["data"].get("deliveries") or events.json()["data"].get("events") or []
        if deliveries:
            ids["event"] = deliveries[0].get("eventId") or deliveries[0].get("id")
    return ids


def test_no_route_shows_one_tenants_data_to_another(running: Running) -> None:
    ids = _seed_tenant_a(running)
    other = {
        "X-Api-Key": create_key(running.data_dir, running.database_url, "isolation-b"),
        "Content-Type": "application/json",
    }
    url = running.url
    secret_markers = ("iso-cust", "iso-1", ids["request"], ids["checkpoint"])
    calls: dict[tuple[str, str], list[tuple[str, str, Any, dict[str, Any]]]] = {
        ("post", "/api/v1/writes"): [],
        ("get", "/api/v1/writes/{requestId}"): [("get", f"/api/v1/writes/{ids['request']}", None, {})],
        ("post", "/api/v1/balance/delta"): [],
        ("post", "/api/v1/balance/delta/batch"): [],
        ("get", "/api/v1/balance/delta/{recordId}"): [
            ("get", f"/api/v1/balance/delta/{ids['record']}", None, {}),
            ("get", f"/api/v1/balance/delta/{ids['anchor']}", None, {}),
        ],
        ("get", "/api/v1/balance/derive/{customerId}"): [
            ("get", f"/api/v1/balance/derive/{ids['customer']}", None, {}),
            (
                "get",
                f"/api/v1/balance/derive/{ids['customer']}",
                None,
                {"startingCheckpoint": ids["checkpoint"]},
            ),
        ],
        ("post", "/api/v1/balance/compare"): [
            (
                "post",
                "/api/v1/balance/compare",
                {"customerId": ids["customer"], "yourBalance": 6, "theirBalance": 6, "startingBalance": 0},
                {},
            )
        ],
        ("post", "/api/v1/balance/checkpoint"): [
            ("post", "/api/v1/balance/checkpoint", {"customerId": ids["customer"], "period": "2026-01"}, {})
        ],
        ("get", "/api/v1/balance/checkpoints"): [
            ("get", "/api/v1/balance/checkpoints", None, {"customerId": ids["customer"]})
        ],
        ("get", "/api/v1/balance/receipt/{customerId}"): [
            ("get", f"/api/v1/balance/receipt/{ids['customer']}", None, {"period": "2026-01"})
        ],
        ("get", "/api/v1/balance/invoice-proof/{customerId}"): [
            ("get", f"/api/v1/balance/invoice-proof/{ids['customer']}", None, {"period": "2026-01"})
        ],
        ("get", "/api/v1/balance/customers"): [("get", "/api/v1/balance/customers", None, {"search": "iso"})],
        ("get", "/api/v1/balance/customers/{customerId}"): [
            ("get", f"/api/v1/balance/customers/{ids['customer']}", None, {})
        ],
        ("get", "/api/v1/balance/usage"): [("get", "/api/v1/balance/usage", None, {})],
        ("get", "/api/v1/log/proof/inclusion"): [
            ("get", "/api/v1/log/proof/inclusion", None, {"anchorId": ids["anchor"]})
        ],
        ("get", "/api/v1/log/proof/bundle/{anchorId}"): [
            ("get", f"/api/v1/log/proof/bundle/{ids['anchor']}", None, {})
        ],
    }
    webhook_id, event_id = ids.get("webhook", "wh_missing"), ids.get("event", "evt_missing")
    calls.update(
        {
            ("post", "/api/v1/webhooks"): [],
            ("get", "/api/v1/webhooks"): [("get", "/api/v1/webhooks", None, {})],
            ("delete", "/api/v1/webhooks/{webhookId}"): [
                ("delete", f"/api/v1/webhooks/{webhook_id}", None, {})
            ],
            ("post", "/api/v1/webhooks/{webhookId}/rotate"): [
                ("post", f"/api/v1/webhooks/{webhook_id}/rotate", {}, {})
            ],
            ("get", "/api/v1/balance/webhooks"): [("get", "/api/v1/balance/webhooks", None, {})],
            ("post", "/api/v1/balance/webhooks/{eventId}/retry"): [
                ("post", f"/api/v1/balance/webhooks/{event_id}/retry", {}, {})
            ],
            ("delete", "/api/v1/webhooks"): [("delete", "/api/v1/webhooks", None, {"id": webhook_id})],
            ("get", "/api/v1/balance/webhooks/{eventId}"): [
                ("get", f"/api/v1/balance/webhooks/{event_id}", None, {})
            ],
        }
    )
    schema = httpx.get(f"{url}/openapi.json").json()
    uncovered = []
    for path, item in schema["paths"].items():
        for method in item:
            if path in PUBLIC:
                continue
            key = (method, path)
            if key not in calls and not any(
                k[0] == method and k[1].split("{")[0] == path.split("{")[0] for k in calls
            ):
                uncovered.append(f"{method.upper()} {path}")
    assert not uncovered, f"routes without an isolation check: {uncovered}"
    for requests in calls.values():
        for method, path, body, params in requests:
            reply = httpx.request(method, f"{url}{path}", headers=other, json=body, params=params)
            assert reply.status_code < 500, (path, reply.text)
            text = reply.text
            for marker in secret_markers:
                if reply.status_code == 404 and marker in text and "not found" in text.lower():
                    continue  # an error echoing the id the caller sent reveals nothing new
                assert marker not in text or reply.status_code >= 400, (method, path, text[:300])
            if reply.status_code < 300:
                assert "iso-cust" not in text, (method, path, text[:300])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def with_local_hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A server that takes webhook endpoints on 127.0.0.1, so tenant A has real endpoint and
    event ids wherever the test runs (a public name needs DNS, and without it the webhook routes
    were only ever asked for ids that exist nowhere)."""
    data_dir = tmp_path_factory.mktemp("hooks")
    env = {"TRUEUP_WEBHOOK_ALLOW_HTTP": "1", "TRUEUP_WEBHOOK_ALLOW_PRIVATE": "1"}
    with contextlib.ExitStack() as stack:
        url = None if request.param == "sqlite" else stack.enter_context(fresh_pg_schema())
        key = create_key(data_dir, url)
        server = stack.enter_context(ServerProcess(data_dir, url, extra_env=env))
        yield Running(server, key, data_dir, url)


def test_another_tenants_ids_answer_exactly_as_unknown_ones(with_local_hooks: Running) -> None:
    """Same status and same body (but for the id sent) for tenant A's ids asked by tenant B and
    for ids no tenant has: nothing tells B that an id exists."""
    running = with_local_hooks
    url, headers = running.url, running.headers

    def deliveries() -> Any:
        return httpx.get(f"{url}/api/v1/balance/webhooks", headers=headers).json()["data"]

    with local_server(lambda handler, body: (500, {}, b"")) as receiver:
        hook = httpx.post(f"{url}/api/v1/webhooks", headers=headers, json={"url": f"{receiver}/a"})
        assert hook.status_code == 201, hook.text
        ids = _seed_tenant_a(running)
        wait_until(lambda: deliveries()["total"] > 0)
    webhook_id, event_id = hook.json()["data"]["id"], deliveries()["deliveries"][0]["eventId"]
    proof_root = httpx.get(f"{url}/api/v1/balance/checkpoints", headers=headers).json()["data"]
    proof_root = proof_root["checkpoints"][0]["proofRoot"]
    other = {"X-Api-Key": create_key(running.data_dir, running.database_url, "isolation-c")}

    def unknown(real: str) -> str:  # the same shape and length, naming nothing
        prefix, _, rest = real.rpartition("_")
        return f"{prefix}_{'2' * len(rest)}" if prefix else "0x" + "ab" * 32

    derive = "/api/v1/balance/derive/iso-cust?startingCheckpoint={}"
    compare = {"customerId": "iso-cust", "yourBalance": 1, "theirBalance": 2, "startingBalance": 0}
    compare["startingCheckpoint"] = "{}"
    lock = {"customerId": "{}", "period": "2026-01"}
    cases: list[tuple[str, str, str, str, Any]] = [
        ("get", "/api/v1/writes/{}", ids["request"], unknown(ids["request"]), None),
        ("get", "/api/v1/balance/delta/{}", ids["record"], ids["record"][:-1] + "9", None),
        ("get", "/api/v1/balance/delta/{}", ids["anchor"], "a_99999999", None),
        ("get", "/api/v1/log/proof/inclusion?anchorId={}", ids["anchor"], "a_99999999", None),
        ("get", "/api/v1/log/proof/bundle/{}", ids["anchor"], "a_99999999", None),
        ("get", derive, ids["checkpoint"], unknown(ids["checkpoint"]), None),
        ("get", derive, proof_root, unknown(proof_root), None),
        ("get", derive + "&startingCheckpointType=anchorId", ids["anchor"], "a_99999999", None),
        ("post", "/api/v1/balance/compare", ids["checkpoint"], unknown(ids["checkpoint"]), compare),
        ("get", "/api/v1/balance/derive/{}", "iso-cust", "iso-none", None),
        ("get", "/api/v1/balance/customers/{}", "iso-cust", "iso-none", None),
        ("get", "/api/v1/balance/receipt/{}?period=2026-01", "iso-cust", "iso-none", None),
        ("get", "/api/v1/balance/checkpoints?customerId={}", "iso-cust", "iso-none", None),
        ("post", "/api/v1/balance/checkpoint", "iso-cust", "iso-none", lock),
        ("post", "/api/v1/webhooks/{}/rotate", webhook_id, unknown(webhook_id), None),
        ("delete", "/api/v1/webhooks/{}", webhook_id, unknown(webhook_id), None),
        ("delete", "/api/v1/webhooks?id={}", webhook_id, unknown(webhook_id), None),
        ("delete", "/api/v1/webhooks?url={}", f"{receiver}/a", f"{receiver}/b", None),
        ("get", "/api/v1/balance/webhooks/{}", event_id, unknown(event_id), None),
        ("post", "/api/v1/balance/webhooks/{}/retry", event_id, unknown(event_id), None),
    ]

    def ask(method: str, path: str, body: Any, value: str) -> tuple[int, str]:
        if isinstance(body, dict):  # "{}" in a body, as in a path, stands for the id asked
            body = {name: value if given == "{}" else given for name, given in body.items()}
        reply = httpx.request(method, url + path.format(value), headers=other, json=body)
        return reply.status_code, reply.text.replace(value, "<id>")

    for method, path, real, nobody, body in cases:
        assert ask(method, path, body, real) == ask(method, path, body, nobody), (method, path)
    # A's endpoint was left alone by all of it.
    left = httpx.get(f"{url}/api/v1/webhooks", headers=headers).json()["data"]["webhooks"]
    assert [endpoint["id"] for endpoint in left] == [webhook_id]
