"""PacSpace's official Python SDK (pacspace-sdk 0.7.0) against the real server: base_url only."""

from __future__ import annotations

import httpx
import pytest
from pacspace_sdk import PacSpace
from pacspace_sdk.errors import PacSpaceError

from tests.e2e.conftest import Running
from tests.e2e.server import wait_until


@pytest.fixture
def sdk(running: Running) -> PacSpace:
    return PacSpace(running.key, base_url=running.url, max_retries=0)


def test_emit_wait_status_derive_compare_checkpoint_usage_verify(sdk: PacSpace) -> None:
    customer = "sdk-cust-1"
    emitted = sdk.balance.emit(customer, 700, "Credit", {"referenceId": "sdk-ref-1"})
    assert emitted["status"] == "QUEUED" and emitted["recordId"].startswith("rec_")
    assert emitted["delta"] == 700 and emitted["referenceId"] == "sdk-ref-1"
    waited = sdk.balance.emit_and_wait(customer, -200, "Debit", {"pollInterval": 50, "timeout": 30_000})
    assert waited["status"] == "VERIFIED" and waited["anchorId"].startswith("a_")
    status = sdk.balance.delta_status(emitted["recordId"])
    assert status["status"] in ("QUEUED", "VERIFIED")
    by_anchor = sdk.balance.delta_status(waited["anchorId"])
    assert by_anchor["recordId"] == waited["recordId"]
    sdk.balance.wait_for_verified(emitted["recordId"], {"pollInterval": 50, "timeout": 30_000})

    derived = sdk.balance.derive(customer, {"startingBalance": 1000})
    assert derived["computedBalance"] == 1500 and derived["deltasCount"] == 2
    assert all(delta["status"] == "VERIFIED" for delta in derived["deltas"])
    resumed = sdk.balance.derive(
        customer, {"startingBalance": 1500, "startingCheckpoint": derived["latestCheckpoint"]}
    )
    assert resumed["computedBalance"] == 1500 and resumed["deltas"] == []
    this_month = sdk.balance.derive_current_month(customer)
    assert this_month["computedBalance"] == 500

    verdict = sdk.balance.compare(customer, {"yours": 1500, "theirs": 1700}, {"startingBalance": 1000})
    assert verdict["matchesYours"] is True and verdict["matchesTheirs"] is False
    assert verdict["discrepancyReport"]["divergentParty"] == "theirs"

    usage = sdk.balance.usage()
    assert usage["used"] >= 2 and usage["plan"] == "unlimited"

    verified = sdk.verify(derived["latestCheckpoint"])
    assert verified["verified"] is True
    assert sdk.verify(derived["latestCheckpoint"], "db")["verified"] is True
    for source in ("chain", "both"):  # no chain here: refused, not answered from the database
        with pytest.raises(PacSpaceError) as unanchored:
            sdk.verify(derived["latestCheckpoint"], source)
        assert unanchored.value.status_code == 400
        assert f'source: must be db (the default), got "{source}"' in str(unanchored.value)

    listing = sdk.balance.customers({"search": "sdk-cust"})
    assert [c["customerId"] for c in listing["customers"]] == [customer]


def test_checkpoint_and_list_checkpoints_through_the_sdk(sdk: PacSpace, running: Running) -> None:
    customer = "sdk-cust-2"
    reply = httpx.post(
        f"{running.url}/api/v1/writes",
        headers=running.headers,
        json={
            "items": [
                {"key": "sdk2-1", "accountId": customer, "bits": 40, "occurredAt": "2026-01-03T00:00:00Z"}
            ]
        },
    )
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
    locked = sdk.balance.checkpoint(customer, {"period": "2026-01"})
    assert locked["checkpointId"].startswith("chk_") and locked["closingBalance"] == 40
    assert locked["status"] == "VERIFIED" and locked["locked"] is True
    listed = sdk.balance.list_checkpoints({"customerId": customer})
    assert [c["checkpointId"] for c in listed["checkpoints"]] == [locked["checkpointId"]]
    receipt = sdk.balance.invoice_proof(customer, {"period": "2026-01"})
    assert receipt["proofRoot"] == locked["proofRoot"] and receipt["verificationApiUrl"]
    # A month as the SDK's scope options name it: the lock, the receipt and the listing.
    february = {"timePreset": "custom", "startDate": "2026-02-01", "endDate": "2026-03-01"}
    locked_february = sdk.balance.checkpoint(customer, february)
    assert locked_february["period"] == "2026-02" and locked_february["closingBalance"] == 40
    january = {"timePreset": "custom", "startDate": "2026-01-01", "endDate": "2026-02-01"}
    assert sdk.balance.invoice_proof(customer, january)["proofRoot"] == locked["proofRoot"]
    in_february = sdk.balance.list_checkpoints({"customerId": customer, **february})
    assert [c["period"] for c in in_february["checkpoints"]] == ["2026-02"]
    from_mid_january = {"customerId": customer, "startDate": "2026-01-15", "endDate": "2026-03-01"}
    assert [c["period"] for c in sdk.balance.list_checkpoints(from_mid_january)["checkpoints"]] == [
        "2026-01",
        "2026-02",
    ]
    this_month = sdk.balance.list_checkpoints({"customerId": customer, "timePreset": "current_month"})
    assert this_month["checkpoints"] == [] and this_month["total"] == 0
    with pytest.raises(PacSpaceError) as unsupported:  # an option of PacSpace's that Trueup has not
        sdk.balance.checkpoint(customer, {"period": "2026-03", "mode": "fingerprint"})
    assert unsupported.value.status_code == 400 and "mode: unknown field" in str(unsupported.value)
    with pytest.raises(PacSpaceError) as partial:
        sdk.balance.invoice_proof(customer, {"startDate": "2026-01-10", "endDate": "2026-02-01"})
    assert partial.value.status_code == 400
    detail = sdk.balance.customer(customer, {"period": "2026-01", "deltaPage": 1, "deltaLimit": 5})
    assert detail["balance"] == 40 and [d["delta"] for d in detail["deltas"]] == [40]
    assert [w["period"] for w in detail["windowSummaries"]] == ["2026-01"]
    period = sdk.verify(locked["proofRoot"])
    assert period["summary"]["endingBalance"] == 40


def test_sdk_errors_are_mapped_not_unexpected(sdk: PacSpace) -> None:
    with pytest.raises(PacSpaceError) as missing:
        sdk.balance.derive("never-written")
    assert missing.value.status_code == 404
    with pytest.raises(PacSpaceError) as bad:
        sdk.balance.emit("sdk-cust-3", 1.5, "fraction")
    assert bad.value.status_code == 400
    assert "Unexpected response format" not in str(bad.value)


def test_emit_batch_reports_each_delta(running: Running) -> None:
    reply = httpx.post(
        f"{running.url}/api/v1/balance/delta/batch",
        headers=running.headers,
        json={
            "deltas": [
                {"customerId": "batch-1", "delta": 5, "reason": "ok", "referenceId": "batch-ref-1"},
                {"customerId": "batch-1", "delta": 0, "reason": "zero"},
                {"customerId": "bad id", "delta": 5, "reason": "bad"},
                {"customerId": "batch-1", "delta": 5, "reason": "ok", "referenceId": "batch-ref-1"},
            ]
        },
    )
    assert reply.status_code == 202, reply.text
    data = reply.json()["data"]
    assert (data["totalQueued"], data["totalFailed"]) == (2, 2)
    statuses = [r["status"] for r in data["results"]]
    assert statuses == ["QUEUED", "FAILED", "FAILED", "QUEUED"]
    assert "deltas[1].delta: must not be zero" in data["results"][1]["error"]
    assert data["results"][3]["recordId"] == data["results"][0]["recordId"]
    conflict = httpx.post(
        f"{running.url}/api/v1/balance/delta/batch",
        headers=running.headers,
        json={
            "deltas": [
                {"customerId": "batch-1", "delta": 0, "reason": "invalid"},
                {"customerId": "batch-1", "delta": 6, "reason": "changed", "referenceId": "batch-ref-1"},
            ]
        },
    ).json()["data"]
    assert conflict["results"][1]["code"] == "DUPLICATE_KEY"
    assert conflict["results"][1]["error"].startswith(
        'deltas[1]: referenceId "batch-ref-1" already exists with different delta, reason;'
    )
    oversized = httpx.post(
        f"{running.url}/api/v1/balance/delta/batch",
        headers=running.headers,
        json={
            "deltas": [
                {"customerId": "batch-2", "delta": 1, "reason": "ok"},
                {"customerId": "batch-2", "delta": 2, "reason": "big", "metadata": {"x": "a" * 5000}},
            ]
        },
    )
    assert oversized.status_code == 202, oversized.text
    rows = oversized.json()["data"]["results"]
    assert [r["status"] for r in rows] == ["QUEUED", "FAILED"]
    assert rows[1]["error"].startswith("deltas[1].metadata: must be at most 4096 bytes")
    assert conflict["results"][1]["error"].startswith("deltas[1]:")
