"""POST /api/v1/writes against the real server process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import create_key, trueup, wait_until
from trueup.storage import open_storage

SEED_BODY = {
    "items": [
        {
            "key": "order-12345",
            "accountId": "customer-001",
            "bits": 1,
            "metadata": {"amount": 250.00, "currency": "USD", "description": "Monthly subscription"},
        },
        {
            "key": "order-12346",
            "accountId": "customer-002",
            "bits": 3,
            "metadata": {"amount": 750.00, "currency": "USD", "description": "Enterprise license"},
        },
    ]
}


def stored_count(running: Running) -> int:
    storage = open_storage(running.storage_url, run_migrations=False)
    try:
        with storage.engine.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM deltas"))
    finally:
        storage.close()


def test_seed_example_returns_the_seed_reply(running: Running) -> None:
    reply = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=SEED_BODY)
    assert reply.status_code == 202
    body = reply.json()
    assert body["statusCode"] == 202
    data = body["data"]
    assert set(data) == {"requestId", "itemCount", "status", "message"}
    assert data["requestId"].startswith("req_")
    assert data["itemCount"] == 2
    assert data["status"] == "queued"
    assert data["message"] == "Write accepted. Items are queued for verification."

    def verified() -> bool:
        status = httpx.get(f"{running.url}/api/v1/writes/{data['requestId']}", headers=running.headers)
        return status.json()["data"]["status"] == "verified"

    wait_until(verified)
    status = httpx.get(f"{running.url}/api/v1/writes/{data['requestId']}", headers=running.headers).json()
    items = status["data"]["items"]
    assert [i["key"] for i in items] == ["order-12345", "order-12346"]
    assert all(i["anchorId"] == f"a_{i['leafIndex']}" for i in items)
    assert status["data"]["treeHead"]["treeSize"] >= 2
    assert status["data"]["treeHead"]["rootHash"].startswith("0x")


def _bad_requests() -> list[tuple[str, dict[str, str], bytes, int, str, str]]:
    """(name, extra headers, body, status, code, text expected in the message)."""
    ok_item = {"key": "k-bad", "accountId": "c1", "bits": 1}

    def items(*values: object) -> bytes:
        return json.dumps({"items": list(values)}).encode()

    deep: object = 1
    for _ in range(20):
        deep = [deep]
    return [
        ("malformed json", {}, b'{"items": [', 400, "VALIDATION_ERROR", "body: is not valid JSON"),
        ("empty body", {}, b"", 400, "VALIDATION_ERROR", "body"),
        ("not an object", {}, b"[1]", 400, "VALIDATION_ERROR", "body: must be a JSON object"),
        (
            "wrong content type",
            {"Content-Type": "text/plain"},
            items(ok_item),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "application/json",
        ),
        (
            "float bits",
            {},
            items({**ok_item, "bits": 1.5}),
            400,
            "VALIDATION_ERROR",
            "items[0].bits: must be an integer, got 1.5",
        ),
        ("string bits", {}, items({**ok_item, "bits": "3"}), 400, "VALIDATION_ERROR", "items[0].bits"),
        ("bool bits", {}, items({**ok_item, "bits": True}), 400, "VALIDATION_ERROR", "items[0].bits"),
        (
            "exponent bits",
            {},
            b'{"items":[{"key":"k","accountId":"c","bits":1e3}]}',
            400,
            "VALIDATION_ERROR",
            "items[0].bits: must be an integer, got 1e3",  # as sent, not as 1000.0
        ),
        (
            "huge bits",
            {},
            b'{"items":[{"key":"k","accountId":"c","bits":' + b"9" * 40 + b"}]}",
            400,
            "VALIDATION_ERROR",
            "items[0].bits: must be between",
        ),
        ("nan", {}, b'{"items":[{"key":"k","accountId":"c","bits":NaN}]}', 400, "VALIDATION_ERROR", "NaN"),
        (
            "duplicate json keys",
            {},
            b'{"items":[{"key":"k","key":"j","accountId":"c","bits":1}]}',
            400,
            "VALIDATION_ERROR",
            "duplicate key",
        ),
        (
            "infinite metadata number",
            {},
            b'{"items":[{"key":"k","accountId":"c","bits":1,"metadata":{"x":1e400}}]}',
            400,
            "VALIDATION_ERROR",
            "items[0].metadata.x: is a number beyond the range of a double",
        ),
        (
            "metadata number a double holds only as another",
            {},
            b'{"items":[{"key":"k","accountId":"c","bits":1,"metadata":{"orderId":12345678901234567.0}}]}',
            400,
            "VALIDATION_ERROR",
            "items[0].metadata.orderId: numbers in metadata must be read back as written, got "
            "12345678901234567.0, which a double holds only as 1.2345678901234568e+16",
        ),
        (
            "hostile nesting",
            {},
            b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            400,
            "VALIDATION_ERROR",
            "too deeply",
        ),
        (
            "deep nesting",
            {},
            json.dumps({"items": [{**ok_item, "metadata": {"x": deep}}]}).encode(),
            400,
            "VALIDATION_ERROR",
            "deeper",
        ),
        (
            "huge metadata",
            {},
            items({**ok_item, "metadata": {"blob": "x" * 5000}}),
            400,
            "VALIDATION_ERROR",
            "items[0].metadata: must be at most 4096 bytes",
        ),
        ("empty items", {}, items(), 400, "VALIDATION_ERROR", "items: must hold at least one item"),
        (
            "too many items",
            {},
            items(*[{**ok_item, "key": str(i)} for i in range(1001)]),
            400,
            "VALIDATION_ERROR",
            "at most 1000 items",
        ),
        (
            "second item bad",
            {},
            items(ok_item, {**ok_item, "key": "k2", "accountId": "bad id"}),
            400,
            "VALIDATION_ERROR",
            "items[1].accountId",
        ),
        (
            "body too large",
            {},
            b'{"items": [], "pad": "' + b"x" * 1_100_000 + b'"}',
            413,
            "PAYLOAD_TOO_LARGE",
            "1048576",
        ),
        ("empty key", {"X-Api-Key": ""}, items(ok_item), 401, "INVALID_API_KEY", "X-Api-Key is empty"),
        ("malformed key", {"X-Api-Key": "pk_live_nope"}, items(ok_item), 401, "INVALID_API_KEY", "malformed"),
        (
            "unknown key",
            {"X-Api-Key": "pk_live_aaaaaaaaaaaaaaaa." + "A" * 43},
            items(ok_item),
            401,
            "INVALID_API_KEY",
            "not valid",
        ),
    ]


def test_each_class_of_bad_input_gets_its_4xx_and_stores_nothing(running: Running) -> None:
    before = stored_count(running)
    for name, headers, body, status, code, text in _bad_requests():
        reply = httpx.post(
            f"{running.url}/api/v1/writes", headers={**running.headers, **headers}, content=body
        )
        assert reply.status_code == status, (name, reply.text)
        payload = reply.json()
        assert payload["success"] is False, name
        assert payload["statusCode"] == status, name
        assert payload["code"] == code, (name, payload)
        assert text in payload["message"], (name, payload["message"])
        assert isinstance(payload["error"], str) and payload["error"], name
        if status == 413:  # RFC 9110 §15.5.14's name, not RFC 7231's "Request Entity Too Large"
            assert payload["error"] == "Content Too Large"
    assert stored_count(running) == before


def test_a_write_with_a_query_parameter_is_refused_and_stores_nothing(running: Running) -> None:
    """The server answers a plain write itself, past the routes (api/whole_writes.py,
    api/fastpath.py); one with a query string goes to its route, which takes no parameters, so
    a write meant as a dry run is refused, on a kept-alive connection as on a new one."""
    before = stored_count(running)
    body = {"items": [{"key": "k-dry-run", "accountId": "c-dry", "bits": 7}]}
    with httpx.Client(headers=running.headers) as client:
        for path in ("/api/v1/writes", "/api/v1/balance/delta"):
            for _ in range(2):  # the second on the connection the first kept alive
                reply = client.post(f"{running.url}{path}?dryRun=true", json=body)
                assert reply.status_code == 400, reply.text
                assert reply.json()["message"] == "dryRun: unknown query parameter: this route takes none"
    assert stored_count(running) == before


def test_a_write_without_a_key_is_told_the_header_is_missing(running: Running) -> None:
    headers = {name: value for name, value in running.headers.items() if name.lower() != "x-api-key"}
    body = {"items": [{"key": "k-keyless", "accountId": "c1", "bits": 1}]}
    reply = httpx.post(f"{running.url}/api/v1/writes", headers=headers, json=body)
    assert reply.status_code == 401
    assert reply.json()["message"] == "missing X-Api-Key header"


def test_unknown_fields_are_ignored_and_unicode_keys_work(running: Running) -> None:
    body = {
        "items": [{"key": "ключ-🔑-1", "accountId": "c.u:1", "bits": -7, "colour": "blue"}],
        "extra": True,
    }
    reply = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=body)
    assert reply.status_code == 202, reply.text


def test_replayed_items_are_not_stored_twice_and_changed_ones_conflict(running: Running) -> None:
    body = {"items": [{"key": "dup-1", "accountId": "c-dup", "bits": 10}]}
    first = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=body)
    before = stored_count(running)
    again = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=body)
    assert first.status_code == again.status_code == 202
    assert again.json()["data"]["itemCount"] == 1
    assert stored_count(running) == before
    changed = {"items": [{"key": "dup-1", "accountId": "c-dup", "bits": 11}]}
    conflict = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=changed)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "DUPLICATE_KEY"
    assert conflict.json()["message"] == (
        'items[0]: key "dup-1" already exists with different bits; use a new key or send identical content'
    )
    status = httpx.get(
        f"{running.url}/api/v1/writes/{again.json()['data']['requestId']}", headers=running.headers
    ).json()
    assert status["data"]["items"][0]["status"] == "duplicate"


def test_a_batch_delta_refused_at_acceptance_keeps_its_number_and_is_listed_in_no_page(
    running: Running,
) -> None:
    """Items are paged by their number: a delta refused at acceptance (its referenceId taken
    by other content) is counted and numbered, not stored; one refused by validation is never
    numbered. Paging while offset < itemCount reaches every stored item."""
    url, headers = running.url, running.headers
    first = {"customerId": "count-1", "delta": 5, "reason": "first", "referenceId": "count-ref"}
    assert httpx.post(f"{url}/api/v1/balance/delta", headers=headers, json=first).status_code == 202
    batch = [
        {**first, "delta": 7},  # DUPLICATE_KEY: refused at acceptance, numbered 0
        {"customerId": "count-1", "delta": 0, "reason": "zero"},  # refused by validation
        *(
            {"customerId": "count-1", "delta": 1, "reason": f"n{i}", "referenceId": f"count-{i}"}
            for i in range(3)
        ),
    ]
    reply = httpx.post(f"{url}/api/v1/balance/delta/batch", headers=headers, json={"deltas": batch})
    assert reply.status_code == 202, reply.text
    results = reply.json()["data"]["results"]
    assert [r["status"] for r in results] == ["FAILED", "FAILED", "QUEUED", "QUEUED", "QUEUED"]
    request_id = "req_" + results[2]["recordId"].removeprefix("rec_").rpartition("_")[0]
    listed: list[dict[str, object]] = []
    offset, count = 0, 1
    while offset < count:
        page = httpx.get(
            f"{url}/api/v1/writes/{request_id}", params={"limit": 2, "offset": offset}, headers=headers
        ).json()["data"]
        count = page["itemCount"]
        listed += page["items"]
        offset += 2
    assert count == 4  # the four numbered: the refused one and the three stored
    assert [item["key"] for item in listed] == ["count-0", "count-1", "count-2"]
    assert [item["index"] for item in listed] == [1, 2, 3]


def test_idempotency_key_header_replays_the_original_reply(running: Running) -> None:
    headers = {**running.headers, "Idempotency-Key": "idem-e2e-1"}
    body = {"items": [{"key": "idem-item-1", "accountId": "c-idem", "bits": 4}]}
    first = httpx.post(f"{running.url}/api/v1/writes", headers=headers, json=body)
    second = httpx.post(f"{running.url}/api/v1/writes", headers=headers, json=body)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    other = httpx.post(
        f"{running.url}/api/v1/writes",
        headers=headers,
        json={"items": [{"key": "idem-item-2", "accountId": "c-idem", "bits": 4}]},
    )
    assert other.status_code == 409
    assert other.json()["code"] == "IDEMPOTENCY_MISMATCH"


def test_tenants_are_isolated(running: Running) -> None:
    other_key = create_key(running.data_dir, running.database_url, "globex")
    other = {**running.headers, "X-Api-Key": other_key}
    body = {"items": [{"key": "shared-key", "accountId": "shared-cust", "bits": 5}]}
    mine = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json=body)
    theirs = httpx.post(
        f"{running.url}/api/v1/writes",
        headers=other,
        json={"items": [{"key": "shared-key", "accountId": "shared-cust", "bits": 900}]},
    )
    assert mine.status_code == theirs.status_code == 202
    request_id = mine.json()["data"]["requestId"]
    assert httpx.get(f"{running.url}/api/v1/writes/{request_id}", headers=other).status_code == 404
    assert httpx.get(f"{running.url}/api/v1/writes/{request_id}", headers=running.headers).status_code == 200


def test_read_only_and_revoked_keys(running: Running) -> None:
    reader = create_key(running.data_dir, running.database_url, "acme", "--read-only")
    body = {"items": [{"key": "ro-1", "accountId": "c", "bits": 1}]}
    refused = httpx.post(
        f"{running.url}/api/v1/writes", headers={**running.headers, "X-Api-Key": reader}, json=body
    )
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    doomed = create_key(running.data_dir, running.database_url, "acme")
    done = trueup(["keys", "revoke", doomed], running.data_dir, running.database_url)
    assert done.returncode == 0, done.stderr
    revoked = httpx.post(
        f"{running.url}/api/v1/writes", headers={**running.headers, "X-Api-Key": doomed}, json=body
    )
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/writes",
        "/api/v1/balance/delta",
        "/api/v1/balance/delta/batch",
        "/api/v1/webhooks",
        "/api/v1/balance/checkpoint",
    ],
)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b"{not json"), ("text/plain", b"{}"), ("application/json", b"[" * 2_000_000)],
    ids=["malformed", "wrong type", "too large"],
)
def test_a_read_only_key_gets_403_whatever_body_it_sends(
    running: Running, path: str, content_type: str, body: bytes
) -> None:
    """The 403 comes before the body is read: a read-only key learns nothing of what a body
    would get (400, 413, 415)."""
    reader = create_key(running.data_dir, running.database_url, "acme", "--read-only")
    reply = httpx.post(
        f"{running.url}{path}", headers={"X-Api-Key": reader, "Content-Type": content_type}, content=body
    )
    assert (reply.status_code, reply.json()["code"]) == (403, "FORBIDDEN"), reply.text


def test_500_concurrent_single_item_writes_from_50_clients_are_all_stored_once(running: Running) -> None:
    before = stored_count(running)

    async def client(n: int, http: httpx.AsyncClient) -> list[int]:
        codes = []
        for i in range(10):
            reply = await http.post(
                f"{running.url}/api/v1/writes",
                headers=running.headers,
                json={"items": [{"key": f"conc-{n}-{i}", "accountId": f"cust-{n % 7}", "bits": n + 1}]},
            )
            codes.append(reply.status_code)
        return codes

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            results = await asyncio.gather(*(client(n, http) for n in range(50)))
        return [code for codes in results for code in codes]

    codes = asyncio.run(main())
    assert codes == [202] * 500
    assert stored_count(running) == before + 500


def test_unknown_routes_and_methods_use_the_error_envelope(running: Running) -> None:
    missing = httpx.get(f"{running.url}/api/v1/nothing-here", headers=running.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    wrong = httpx.delete(f"{running.url}/api/v1/writes", headers=running.headers)
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"
    assert wrong.headers["Allow"] == "POST"  # RFC 9110: a 405 says which methods the path takes
    # all of them, though routes of their own take them
    hooks = httpx.put(f"{running.url}/api/v1/webhooks", headers=running.headers)
    assert hooks.status_code == 405 and hooks.headers["Allow"] == "DELETE, GET, HEAD, POST"
    health = httpx.post(f"{running.url}/healthz")
    assert health.status_code == 405 and health.headers["Allow"] == "GET, HEAD"
    unknown = httpx.get(f"{running.url}/api/v1/writes/req_doesnotexist", headers=running.headers)
    assert unknown.status_code == 404 and unknown.json()["success"] is False
    # the batch route's path is not a record id of the status route beside it
    batch = httpx.get(f"{running.url}/api/v1/balance/delta/batch", headers=running.headers)
    assert batch.status_code == 405 and batch.headers["Allow"] == "POST"
    assert batch.json()["code"] == "METHOD_NOT_ALLOWED"
    record = httpx.get(f"{running.url}/api/v1/balance/delta/batches", headers=running.headers)
    assert record.status_code == 404 and record.json()["code"] == "NOT_FOUND"
    # a trailing slash is not redirected (the client would send its key wherever Location says)
    slash = httpx.post(f"{running.url}/api/v1/writes/", headers=running.headers, json={"items": []})
    assert slash.status_code == 404 and "Location" not in slash.headers
    assert slash.json()["message"] == (
        "no route POST /api/v1/writes/; paths take no trailing slash: /api/v1/writes"
    )
    assert httpx.get(f"{running.url}/api/v1/nothing/", headers=running.headers).json()["message"] == (
        "no route GET /api/v1/nothing/"
    )


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/healthz", "/readyz"])
def test_service_routes_answer(running: Running, path: str) -> None:
    reply = httpx.get(f"{running.url}{path}")
    assert reply.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_answer_head_without_a_body(running: Running, path: str) -> None:
    reply = httpx.head(f"{running.url}{path}")
    assert reply.status_code == 200 and reply.content == b""
    assert reply.headers["content-type"].startswith("application/json")
    paths = httpx.get(f"{running.url}/openapi.json").json()["paths"]
    assert list(paths[path]) == ["get"]  # HEAD is not a second documented operation


@pytest.mark.parametrize(
    "path", ["/api/v1/balance/usage", "/api/v1/log/checkpoint", "/api/v1/webhooks", "/metrics"]
)
def test_get_routes_answer_head_with_the_same_status_and_no_body(running: Running, path: str) -> None:
    for headers in (running.headers, {}):  # and without a key, the same refusal
        got = httpx.get(f"{running.url}{path}", headers=headers)
        head = httpx.head(f"{running.url}{path}", headers=headers)
        assert head.status_code == got.status_code, (path, headers)
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    assert httpx.head(f"{running.url}{path}", headers=running.headers).status_code == 200


def test_a_key_in_use_stops_working_soon_after_revocation(running: Running) -> None:
    key = create_key(running.data_dir, running.database_url, "acme")
    headers = {**running.headers, "X-Api-Key": key}
    assert httpx.get(f"{running.url}/api/v1/balance/usage", headers=headers).status_code == 200
    tenant_id = httpx.get(f"{running.url}/api/v1/balance/usage", headers=headers).json()["data"]["tenantId"]
    listed = trueup(["keys", "list"], running.data_dir, running.database_url)
    key_id = key.split("_", 2)[2].split(".", 1)[0]
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert row[1:4] == ["acme", tenant_id, "live"] and row[6] == "active"
    done = trueup(["keys", "revoke", key], running.data_dir, running.database_url)
    assert done.returncode == 0, done.stderr
    # Verified keys are remembered for TRUEUP_KEY_CACHE_TTL_S (2 s) per process.
    wait_until(lambda: httpx.get(f"{running.url}/api/v1/balance/usage", headers=headers).status_code == 401)


def test_a_key_is_revoked_by_its_public_part_without_its_secret(running: Running) -> None:
    key = create_key(running.data_dir, running.database_url, "public-part")
    public = key.split(".", 1)[0]  # pk_live_<id>
    key_id = public.removeprefix("pk_live_")
    done = trueup(["keys", "revoke", public], running.data_dir, running.database_url)
    assert (done.returncode, done.stdout.strip()) == (0, f"revoked {key_id}"), done.stderr
    listed = trueup(["keys", "list"], running.data_dir, running.database_url)
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert row[6] == "revoked"
    # Revoked again: said as such, not as an unknown key; an unknown id is said as that.
    again = trueup(["keys", "revoke", public], running.data_dir, running.database_url)
    assert again.returncode == 1
    assert again.stderr.startswith(f"trueup keys revoke: key {key_id!r} was already revoked, at "), (
        again.stderr
    )
    unknown = trueup(["keys", "revoke", "nosuchkey"], running.data_dir, running.database_url)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "trueup keys revoke: no key with id 'nosuchkey' (trueup keys list shows them)\n",
    )


def test_a_whole_key_revokes_its_key_only_with_its_own_secret_and_environment(running: Running) -> None:
    """A whole key given to ``keys revoke`` is checked: one whose secret is not its key's (a
    mistyped or another key's) or whose prefix is of the other environment names no key, and
    nothing is revoked; the key itself, whole, revokes it."""
    key = create_key(running.data_dir, running.database_url, "whole-key")
    public, secret = key.split(".", 1)
    key_id = public.removeprefix("pk_live_")
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    refused = {
        f"{public}.{other_secret}": f"the secret given is not that of key {key_id}: nothing was changed "
        f"(give the key's id or pk_live_{key_id} to revoke it without its secret)",
        f"pk_test_{key_id}.{secret}": f"key {key_id} is a live key, not pk_test_: nothing was changed",
        f"pk_test_{key_id}": f"key {key_id} is a live key, not pk_test_: nothing was changed",
        f"{public}.short": f"the secret given is not that of key {key_id}: nothing was changed "
        f"(give the key's id or pk_live_{key_id} to revoke it without its secret)",
    }
    for given, message in refused.items():
        done = trueup(["keys", "revoke", given], running.data_dir, running.database_url)
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"trueup keys revoke: {message}\n")
    headers = {**running.headers, "X-Api-Key": key}
    assert httpx.get(f"{running.url}/api/v1/balance/usage", headers=headers).status_code == 200
    done = trueup(["keys", "revoke", key], running.data_dir, running.database_url)
    assert (done.returncode, done.stdout.strip()) == (0, f"revoked {key_id}"), done.stderr


def test_an_emit_repeat_answers_the_original_records_creation_time(running: Running) -> None:
    body = {"customerId": "repeat-c", "delta": 5, "reason": "r", "referenceId": "repeat-created-at"}
    first = httpx.post(f"{running.url}/api/v1/balance/delta", headers=running.headers, json=body)
    assert first.status_code == 202, first.text
    repeat = httpx.post(f"{running.url}/api/v1/balance/delta", headers=running.headers, json=body)
    assert repeat.status_code == 202, repeat.text
    original, again = first.json()["data"], repeat.json()["data"]
    assert again["idempotent"] is True and again["recordId"] == original["recordId"]
    record = httpx.get(f"{running.url}/api/v1/balance/delta/{original['recordId']}", headers=running.headers)
    # The record's createdAt, as its own route gives it, in both replies.
    assert original["createdAt"] == again["createdAt"] == record.json()["data"]["createdAt"]
