"""Derive, compare and period checkpoints over HTTP, as the seed pages call them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Running
from tests.e2e.server import ServerProcess, create_key, wait_until
from trueup.proof import (
    encode_leaf,
    leaf_fields_from_json,
    leaf_hash,
    root_from_leaf_hashes,
    verify_checkpoint,
    verify_inclusion,
)

SEED_DELTAS = [
    ("seed-jan-1", 2000, "2026-01-05T10:00:00Z", "Top-up"),
    ("seed-jan-2", -2000, "2026-01-20T10:00:00Z", "January usage"),
    ("seed-feb-1", -1000, "2026-02-10T14:30:00Z", "Monthly subscription charge"),
    ("seed-feb-2", -500, "2026-02-11T09:15:00Z", "Overage"),
]


def _seed(running: Running, customer: str) -> None:
    items = [
        {
            "key": f"{customer}-{key}",
            "accountId": customer,
            "bits": bits,
            "occurredAt": when,
            "reason": reason,
        }
        for key, bits, when, reason in SEED_DELTAS
    ]
    reply = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json={"items": items})
    assert reply.status_code == 202
    request_id = reply.json()["data"]["requestId"]
    wait_until(
        lambda: (
            httpx.get(f"{running.url}/api/v1/writes/{request_id}", headers=running.headers).json()["data"][
                "status"
            ]
            == "verified"
        )
    )


def test_derive_returns_every_seed_field(running: Running) -> None:
    _seed(running, "cust_derive")
    reply = httpx.get(
        f"{running.url}/api/v1/balance/derive/cust_derive",
        params={"startingBalance": 50000},
        headers=running.headers,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    data = body["data"]
    for field in (
        "customerId",
        "computedBalance",
        "deltasCount",
        "latestCheckpoint",
        "deltas",
        "windowSummaries",
        "verificationProof",
    ):
        assert field in data
    assert data["computedBalance"] == 48500 and data["deltasCount"] == 4
    first = data["deltas"][2]
    assert first["delta"] == -1000 and first["reason"] == "Monthly subscription charge"
    assert first["status"] == "VERIFIED" and first["createdAt"] == "2026-02-10T14:30:00Z"
    assert first["anchorId"].startswith("a_")
    assert data["windowSummaries"][1] == {
        "period": "2026-02",
        "totalCredits": 0,
        "totalDebits": -1500,
        "netChange": -1500,
        "deltasCount": 2,
    }
    proof = data["verificationProof"]
    assert proof["algorithm"] == "sha256" and proof["rootHash"] == data["latestCheckpoint"]
    assert proof["inclusionProof"]["anchorId"] == data["deltas"][-1]["anchorId"]
    resumed = httpx.get(
        f"{running.url}/api/v1/balance/derive/cust_derive",
        headers=running.headers,
        params={
            "startingBalance": 48500,
            "startingCheckpoint": data["latestCheckpoint"],
            "startingCheckpointType": "itemsRoot",
        },
    ).json()["data"]
    assert resumed["computedBalance"] == 48500 and resumed["deltas"] == []


def test_compare_seed_example_over_http(running: Running) -> None:
    _seed(running, "cust_12345")
    reply = httpx.post(
        f"{running.url}/api/v1/balance/compare",
        headers=running.headers,
        json={
            "customerId": "cust_12345",
            "yourBalance": 48500,
            "theirBalance": 49000,
            "startingBalance": 50000,
        },
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert (data["neutralBalance"], data["matchesYours"], data["matchesTheirs"]) == (48500, True, False)
    report = data["discrepancyReport"]
    assert report["amount"] == 500 and report["divergentParty"] == "theirs"
    window = report["windowsToReview"][0]
    assert (window["period"], window["expectedNet"], window["theirNet"], window["difference"]) == (
        "2026-02",
        -1500,
        -1000,
        500,
    )
    assert "February 2026" in report["recommendation"] and "500-unit debit" in report["recommendation"]


def test_bad_balance_requests_are_clear_4xx(running: Running) -> None:
    _seed(running, "cust_bad")
    cases = [
        ("GET", "/api/v1/balance/derive/nobody-here", None, {}, 404, "CUSTOMER_NOT_FOUND"),
        (
            "GET",
            "/api/v1/balance/derive/cust_bad",
            None,
            {"startingCheckpoint": "0x" + "00" * 32},
            404,
            "CHECKPOINT_NOT_FOUND",
        ),
        (
            "GET",
            "/api/v1/balance/derive/cust_bad",
            None,
            {"startingCheckpoint": "a_1", "period": "2026-01"},
            400,
            "INVALID_SCOPE_COMBINATION",
        ),
        ("GET", "/api/v1/balance/derive/cust_bad", None, {"startingBalance": "1.5"}, 400, "VALIDATION_ERROR"),
        ("GET", "/api/v1/balance/derive/cust_bad", None, {"limit": "0"}, 400, "VALIDATION_ERROR"),
        (
            "POST",
            "/api/v1/balance/compare",
            {"customerId": "cust_bad", "yourBalance": 1.5, "theirBalance": 1, "startingBalance": 0},
            {},
            400,
            "VALIDATION_ERROR",
        ),
        (
            "POST",
            "/api/v1/balance/compare",
            {"customerId": "cust_bad", "yourBalance": "1", "theirBalance": 1, "startingBalance": 0},
            {},
            400,
            "VALIDATION_ERROR",
        ),
    ]
    for method, path, body, params, status, code in cases:
        reply = httpx.request(
            method, f"{running.url}{path}", headers=running.headers, json=body, params=params
        )
        assert (reply.status_code, reply.json()["code"]) == (status, code), (path, params, reply.text)


def test_huge_balances_stay_exact_in_json(running: Running) -> None:
    _seed(running, "cust_huge")
    huge = 2**70 + 3
    reply = httpx.get(
        f"{running.url}/api/v1/balance/derive/cust_huge",
        params={"startingBalance": huge},
        headers=running.headers,
    )
    assert reply.status_code == 200
    assert f'"computedBalance":{huge - 1500}' in reply.text


def _lock_february(running: Running, customer: str) -> httpx.Response:
    return httpx.post(
        f"{running.url}/api/v1/balance/checkpoint",
        headers=running.headers,
        json={"customerId": customer, "period": "2026-02"},
    )


def _february_receipt(running: Running, customer: str) -> dict[str, Any]:
    url = f"{running.url}/api/v1/balance/receipt/{customer}"
    reply = httpx.get(url, params={"period": "2026-02"}, headers=running.headers)
    receipt: dict[str, Any] = reply.json()["data"]
    return receipt


def test_period_checkpoint_receipt_and_public_verify(running: Running) -> None:
    _seed(running, "cust_lock")
    lock = _lock_february(running, "cust_lock")
    assert lock.status_code == 201, lock.text
    checkpoint = lock.json()["data"]
    again = httpx.post(
        f"{running.url}/api/v1/balance/checkpoint",
        headers=running.headers,
        json={"customerId": "cust_lock", "period": "2026-02"},
    )
    assert again.status_code == 200 and again.json()["data"] == checkpoint
    assert (checkpoint["openingBalance"], checkpoint["closingBalance"], checkpoint["deltasCount"]) == (
        0,
        -1500,
        2,
    )
    listed = httpx.get(
        f"{running.url}/api/v1/balance/checkpoints",
        params={"customerId": "cust_lock"},
        headers=running.headers,
    ).json()["data"]
    assert [c["checkpointId"] for c in listed["checkpoints"]] == [checkpoint["checkpointId"]]
    receipt = _february_receipt(running, "cust_lock")
    assert receipt["proofRoot"] == checkpoint["proofRoot"] and receipt["finalBalance"] == -1500
    public = httpx.get(receipt["verificationApiUrl"])
    assert public.status_code == 200
    verified = public.json()["data"]
    assert verified["verified"] is True and verified["summary"]["recordCount"] == 2
    assert [r["amount"] for r in verified["records"]] == [-1000, -500]
    assert verified["summary"]["firstRecordAt"] == "2026-02-10T14:30:00Z"
    assert verified["summary"]["lastRecordAt"] == "2026-02-11T09:15:00Z"
    # What a client needs to check the capability without trusting the server:
    leaf_hashes = [bytes.fromhex(h) for h in verified["recompute"]["leafHashes"]]
    for record, digest in zip(verified["records"], leaf_hashes, strict=True):
        assert leaf_hash(encode_leaf(leaf_fields_from_json(record["leaf"]))) == digest
    nonce = bytes.fromhex(verified["recompute"]["nonce"])
    recomputed = hashlib.sha256(b"\x03" + nonce + root_from_leaf_hashes(leaf_hashes)).hexdigest()
    assert "0x" + recomputed == checkpoint["proofRoot"]
    # and each record is in the signed tree head the period was locked under
    key = httpx.get(f"{running.url}/api/v1/log/key").json()["data"]["verifierKey"]
    head = verify_checkpoint(verified["checkpoint"], key)
    assert head.size == verified["treeSize"] and "0x" + head.root.hex() == verified["treeRoot"]
    for record, digest in zip(verified["records"], leaf_hashes, strict=True):
        proof = [bytes.fromhex(node) for node in record["inclusionProof"]]
        verify_inclusion(digest, int(record["anchorId"][2:]), head.size, proof, head.root)
    # February is locked, and so is January before it (February's opening balance sums it)
    for key, occurred_at, said in (
        ("cust_lock-late", "2026-02-27T00:00:00Z", f"is locked by checkpoint {checkpoint['checkpointId']}"),
        (
            "cust_lock-jan",
            "2026-01-03T00:00:00Z",
            f"closed by checkpoint {checkpoint['checkpointId']}, the lock of 2026-02",
        ),
    ):
        item = {"key": key, "accountId": "cust_lock", "bits": 1, "occurredAt": occurred_at}
        refused = httpx.post(f"{running.url}/api/v1/writes", headers=running.headers, json={"items": [item]})
        assert refused.status_code == 409 and refused.json()["code"] == "PERIOD_LOCKED"
        assert said in refused.json()["message"], refused.text
    from_lock = httpx.get(
        f"{running.url}/api/v1/balance/derive/cust_lock",
        headers=running.headers,
        params={
            "startingCheckpoint": checkpoint["checkpointId"],
            "startingBalance": checkpoint["closingBalance"],
        },
    ).json()["data"]
    assert from_lock["computedBalance"] == -1500 and from_lock["deltas"] == []
    # under proofRoot too; under anchorId, which reads a delta's id, a 400 naming the type it needs
    for kind, status in (("proofRoot", 200), ("itemsRoot", 200), ("anchorId", 400), ("recordId", 400)):
        asked = httpx.get(
            f"{running.url}/api/v1/balance/derive/cust_lock",
            headers=running.headers,
            params={"startingCheckpoint": checkpoint["checkpointId"], "startingCheckpointType": kind},
        )
        assert asked.status_code == status, (kind, asked.text)
        if status == 400:
            assert "needs startingCheckpointType=itemsRoot" in asked.json()["message"]


def test_a_verified_delta_status_is_checked_from_its_own_reply(running: Running) -> None:
    """Its leaf, the leaf's hash, the inclusion proof and the signed tree head: with the log's
    key, nothing else is needed (before, the leaf came only from the proof bundle)."""
    _seed(running, "cust_status")
    derived = httpx.get(f"{running.url}/api/v1/balance/derive/cust_status", headers=running.headers)
    record_id = derived.json()["data"]["deltas"][2]["recordId"]
    status = httpx.get(f"{running.url}/api/v1/balance/delta/{record_id}", headers=running.headers).json()[
        "data"
    ]
    assert status["status"] == "VERIFIED" and status["delta"] == -1000
    leaf = leaf_fields_from_json(status["leaf"])
    assert (leaf.customer_id, leaf.delta, leaf.key) == ("cust_status", -1000, "cust_status-seed-feb-1")
    digest = leaf_hash(encode_leaf(leaf))
    assert digest.hex() == status["leafHash"]
    key = httpx.get(f"{running.url}/api/v1/log/key").json()["data"]["verifierKey"]
    head = verify_checkpoint(status["treeHead"]["checkpoint"], key)
    assert head.size == status["treeHead"]["treeSize"]
    proof = [bytes.fromhex(node) for node in status["inclusionProof"]]
    verify_inclusion(digest, status["leafIndex"], head.size, proof, head.root)


def test_customers_and_usage(running: Running) -> None:
    _seed(running, "cust_listed")
    listed = httpx.get(
        f"{running.url}/api/v1/balance/customers", params={"search": "listed"}, headers=running.headers
    ).json()["data"]
    assert [c["customerId"] for c in listed["customers"]] == ["cust_listed"]
    one = httpx.get(f"{running.url}/api/v1/balance/customers/cust_listed", headers=running.headers).json()[
        "data"
    ]
    assert one["balance"] == -1500 and one["deltaCount"] == 4
    assert (one["period"], one["deltasInScope"], one["deltaPage"], one["deltaLimit"]) == (None, 4, 1, 20)
    assert [d["delta"] for d in one["deltas"]] == [-500, -1000, -2000, 2000]  # the most recently sealed first
    assert [w["period"] for w in one["windowSummaries"]] == ["2026-01", "2026-02"]
    february = httpx.get(
        f"{running.url}/api/v1/balance/customers/cust_listed",
        params={"period": "2026-02", "deltaLimit": 1, "deltaPage": 2},
        headers=running.headers,
    ).json()["data"]
    assert february["balance"] == -1500  # the account's balance, whatever the month shown
    assert [w["period"] for w in february["windowSummaries"]] == ["2026-02"]
    assert (february["period"], february["deltasInScope"], february["deltaPage"]) == ("2026-02", 2, 2)
    assert [(d["delta"], d["reason"]) for d in february["deltas"]] == [(-1000, "Monthly subscription charge")]
    for params, message in (
        ({"deltaLimit": "0"}, "deltaLimit: must be between 1 and 1000, got 0"),
        ({"deltaPage": "1.5"}, 'deltaPage: must be an integer, got "1.5"'),
        ({"period": "2026-13"}, 'period: month must be 01 to 12, got "2026-13"'),
        ({"deltapage": "2"}, "deltapage: unknown query parameter; did you mean deltaPage? this route takes"),
    ):
        refused = httpx.get(
            f"{running.url}/api/v1/balance/customers/cust_listed", params=params, headers=running.headers
        )
        assert refused.status_code == 400 and refused.json()["message"].startswith(message), refused.text
    usage = httpx.get(f"{running.url}/api/v1/balance/usage", headers=running.headers).json()["data"]
    assert usage["plan"] == "unlimited" and usage["used"] >= 4
    # the tenant id a proof bundle's leaf carries, which a customer checks a bundle against
    derived = httpx.get(f"{running.url}/api/v1/balance/derive/cust_listed", headers=running.headers)
    anchor = derived.json()["data"]["deltas"][0]["anchorId"]
    bundle = httpx.get(f"{running.url}/api/v1/log/proof/bundle/{anchor}", headers=running.headers)
    assert bundle.json()["data"]["leaf"]["tenant"] == usage["tenantId"]


def test_a_receipt_links_to_the_public_url_when_one_is_set(tmp_path: Path) -> None:
    """Behind a proxy the URL a request came to is the proxy's inside one: TRUEUP_PUBLIC_URL is
    the one clients reach."""
    key = create_key(tmp_path, None)
    public = {"TRUEUP_PUBLIC_URL": "https://ledger.example.com/trueup/"}
    with ServerProcess(tmp_path, None, extra_env=public) as server:
        running = Running(server, key, tmp_path, None)
        _seed(running, "cust_public")
        lock = _lock_february(running, "cust_public")
        assert lock.status_code == 201, lock.text
        receipt = _february_receipt(running, "cust_public")
    root = lock.json()["data"]["proofRoot"]
    assert receipt["verifyUrl"] == f"https://ledger.example.com/trueup/api/v1/verify/{root}"
    assert receipt["verificationApiUrl"] == receipt["verifyUrl"]
