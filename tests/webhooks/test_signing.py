"""Delivery signatures: the fixed vectors (tests/vectors/webhook_v1.json) checked by our
verify_webhook and by PacSpace's own SDK, and every check verify_webhook makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pacspace_sdk import Webhooks
from pacspace_sdk.errors import WebhookVerificationError as SDKVerificationError

import trueup
from trueup.webhooks.signing import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookVerificationError,
    delivery_headers,
    sign_payload,
    signature_header,
    verify_webhook,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "webhook_v1.json").read_text("utf-8"))
NOW = VECTORS["now"]
# The SDK reads the clock itself; a tolerance wider than the vectors' age lets it check them.
SDK_TOLERANCE = 10**10


def _headers(vector: dict[str, Any]) -> dict[str, str]:
    return {SIGNATURE_HEADER: vector["signature"], TIMESTAMP_HEADER: vector["timestamp"]}


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [vector["name"] for vector in vectors]


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=_ids(VECTORS["valid"]))
def test_valid_vectors_are_reproduced_by_the_signer(vector: dict[str, Any]) -> None:
    secrets = vector.get("signing_secrets", [vector["secret"]])
    assert signature_header(secrets, int(vector["timestamp"]), vector["body"]) == vector["signature"]
    assert (
        sign_payload(secrets[0], vector["timestamp"], vector["body"].encode())
        == (vector["signature"].split(", ")[0])
    )


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=_ids(VECTORS["valid"]))
def test_valid_vectors_pass_our_verifier_and_the_sdk(vector: dict[str, Any]) -> None:
    ours = verify_webhook(vector["secret"], _headers(vector), vector["body"].encode(), now=NOW)
    assert ours == json.loads(vector["body"])
    theirs = Webhooks(vector["secret"]).verify(
        vector["signature"], vector["timestamp"], vector["body"], tolerance=SDK_TOLERANCE
    )
    assert theirs == ours


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=_ids(VECTORS["invalid"]))
def test_invalid_vectors_fail_our_verifier_and_the_sdk(vector: dict[str, Any]) -> None:
    with pytest.raises(WebhookVerificationError, match=SIGNATURE_HEADER):
        verify_webhook(vector["secret"], _headers(vector), vector["body"], now=NOW)
    with pytest.raises(SDKVerificationError):
        Webhooks(vector["secret"]).verify(
            vector["signature"], vector["timestamp"], vector["body"], tolerance=SDK_TOLERANCE
        )


def test_verify_webhook_is_exported_from_the_package() -> None:
    assert trueup.verify_webhook is verify_webhook
    assert trueup.WebhookVerificationError is WebhookVerificationError


def test_header_names_are_matched_in_any_case() -> None:
    vector = VECTORS["valid"][0]
    lower = {key.lower(): value for key, value in _headers(vector).items()}
    envelope = verify_webhook(vector["secret"], lower, vector["body"], now=NOW)
    assert envelope["event"] == "verification.completed"


def test_a_stale_timestamp_is_refused_naming_the_tolerance() -> None:
    vector = VECTORS["valid"][0]
    with pytest.raises(WebhookVerificationError, match=r"301s away from now, more than the 300s"):
        verify_webhook(vector["secret"], _headers(vector), vector["body"], now=int(vector["timestamp"]) + 301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(vector["secret"], _headers(vector), vector["body"], now=int(vector["timestamp"]) - 301)


def test_a_timestamp_in_milliseconds_is_read_as_the_sdk_reads_it() -> None:
    secret, body, millis = "whsec_x", '{"id":"evt_1"}', 1_767_225_600_123
    headers = {SIGNATURE_HEADER: sign_payload(secret, millis, body), TIMESTAMP_HEADER: str(millis)}
    assert verify_webhook(secret, headers, body, now=1_767_225_600)["id"] == "evt_1"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, f"{SIGNATURE_HEADER}: header is missing"),
        ({SIGNATURE_HEADER: "v1=00"}, f"{TIMESTAMP_HEADER}: header is missing"),
        ({SIGNATURE_HEADER: "v1=00", TIMESTAMP_HEADER: "soon"}, "must be Unix time in seconds"),
        ({SIGNATURE_HEADER: "sha256=00", TIMESTAMP_HEADER: str(NOW)}, "holds no v1= signature"),
    ],
)
def test_missing_or_malformed_headers_name_the_header(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        verify_webhook("whsec_x", headers, "{}", now=NOW)


def test_a_body_that_is_not_a_json_object_is_refused_after_the_signature_checks() -> None:
    headers = {SIGNATURE_HEADER: sign_payload("whsec_x", NOW, "[1]"), TIMESTAMP_HEADER: str(NOW)}
    with pytest.raises(WebhookVerificationError, match="body: must be a JSON object"):
        verify_webhook("whsec_x", headers, "[1]", now=NOW)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="secret: is required"):
        verify_webhook("", {}, "{}", now=NOW)


def test_delivery_headers_carry_event_type_and_id_and_sign_with_every_secret() -> None:
    headers = delivery_headers(["whsec_new", "whsec_old"], "evt_1", "delta.verified", NOW, b"{}")
    assert headers[EVENT_HEADER] == "delta.verified"
    assert headers[EVENT_ID_HEADER] == "evt_1"
    assert headers[TIMESTAMP_HEADER] == str(NOW)
    new, old = headers[SIGNATURE_HEADER].split(", ")
    assert new == sign_payload("whsec_new", NOW, b"{}")
    assert old == sign_payload("whsec_old", NOW, b"{}")
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], NOW, b"{}")
