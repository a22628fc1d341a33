"""Trueup's own Python client (trueup.sdk) against the real server, and against small real HTTP
servers on 127.0.0.1 that misbehave the ways a network or a dishonest server can."""

from __future__ import annotations

import copy
import decimal
import gzip
import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import free_port, local_server
from tests.proof.reference import load_vector
from trueup.cli.main import main
from trueup.proof import (
    EMPTY_ROOT,
    CheckpointError,
    CheckpointSigner,
    ConsistencyProofError,
    PeriodError,
    ProofError,
    TreeHead,
    canonical_json,
    node_hash,
    parse_verifier_key,
    private_key_from_seed,
    verify_checkpoint,
)
from trueup.sdk import Client, TrueupError, VerifiedPeriod


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    with Client(running.url, running.key) as opened:
        yield opened


def test_write_wait_derive_compare_lock_and_verify(client: Client, running: Running) -> None:
    customer = "client-cust-1"
    accepted = client.write(
        [
            {"key": "client-1", "accountId": customer, "bits": 2000, "occurredAt": "2026-01-05T10:00:00Z"},
            {"key": "client-2", "accountId": customer, "bits": -500, "occurredAt": "2026-02-10T10:00:00Z"},
        ]
    )
    assert accepted["itemCount"] == 2 and accepted["status"] == "queued"
    done = client.wait_verified(accepted["requestId"])
    assert done["status"] == "verified"
    anchors = [item["anchorId"] for item in done["items"]]

    derived = client.derive(customer, {"startingBalance": 10**20})  # exact at any size
    assert derived["computedBalance"] == 10**20 + 1500 and isinstance(derived["computedBalance"], int)
    verdict = client.compare(customer, 10**20 + 1500, 10**20 + 2000, {"startingBalance": 10**20})
    assert verdict["matchesYours"] is True and verdict["discrepancyReport"]["divergentParty"] == "theirs"
    locked = client.lock_period(customer, "2026-01")
    assert locked["closingBalance"] == 2000 and client.lock_period(customer, "2026-01") == locked
    listed = client.checkpoints({"customerId": customer})
    assert [c["checkpointId"] for c in listed["checkpoints"]] == [locked["checkpointId"]]

    pinned = client.log_key()
    january = client.verify_period(locked["proofRoot"], pinned)
    assert isinstance(january, VerifiedPeriod)  # what sdk.md names, from trueup.sdk
    assert (january.customer_id, january.period, january.record_count) == (customer, "2026-01", 1)
    assert (january.net_change, january.ending_balance) == (2000, 2000)
    proven = client.verify_delta(anchors[1], pinned)
    assert (proven.customer_id, proven.key, proven.delta) == (customer, "client-2", -500)
    assert proven.leaf_index == int(anchors[1].removeprefix("a_")) < proven.tree_size

    held = client.log_checkpoint()
    more = client.write([{"key": "client-3", "accountId": customer, "bits": 1}])
    client.wait_verified(more["requestId"])
    followed = client.follow(held, pinned)
    assert followed.head.size > verify_checkpoint(held, pinned).size  # client-3 was sealed since
    assert client.follow(followed.checkpoint, pinned).head == followed.head  # nothing new: same


def test_emit_and_status_by_record_and_anchor(client: Client) -> None:
    record = client.emit("client-cust-2", 700, "Credit", reference_id="client-ref-1")
    assert record["status"] == "QUEUED" and record["delta"] == 700
    assert client.emit("client-cust-2", 700, "Credit", reference_id="client-ref-1")["idempotent"] is True
    assert client.delta_status(record["recordId"])["recordId"] == record["recordId"]
    assert client.usage()["used"] >= 1


def test_a_deltas_status_gives_its_metadata_whose_digest_is_in_its_leaf(client: Client) -> None:
    """What the leaf commits to by digest can be checked by whoever is given the status."""
    metadata = {
        "invoice": "INV-7",
        "lines": [1.5, -0.0, 10**15],
        "note": "caf\u00e9",
        "b": None,
        "a": {"z": 1},
    }
    accepted = client.write(
        [
            {"key": "client-meta-1", "accountId": "client-cust-meta", "bits": 5, "metadata": metadata},
            {"key": "client-meta-2", "accountId": "client-cust-meta", "bits": 6},
        ]
    )
    done = client.wait_verified(accepted["requestId"])
    with_metadata, without = (client.delta_status(item["anchorId"]) for item in done["items"])
    assert with_metadata["metadata"] == metadata
    digest = hashlib.sha256(canonical_json(with_metadata["metadata"])).hexdigest()
    assert with_metadata["leaf"]["metadataDigest"] == digest
    assert without["metadata"] is None
    assert without["leaf"]["metadataDigest"] == hashlib.sha256(b"{}").hexdigest()


def test_errors_carry_the_servers_code_status_and_message(client: Client, running: Running) -> None:
    with pytest.raises(TrueupError) as bad:
        client.write([{"key": "client-bad", "accountId": "c", "bits": 1.5}])
    assert (bad.value.status, bad.value.code) == (400, "VALIDATION_ERROR")
    assert bad.value.message.startswith("items[0].bits: must be an integer")
    with pytest.raises(TrueupError) as unknown:
        client.derive("client-nobody")
    assert (unknown.value.status, unknown.value.code) == (404, "CUSTOMER_NOT_FOUND")
    with Client(running.url, "pk_live_wrong.key") as stranger, pytest.raises(TrueupError) as refused:
        stranger.usage()
    assert (refused.value.status, refused.value.code) == (401, "INVALID_API_KEY")
    # An id holding "/" or "?" stays one path segment (its slash encoded): it names no other
    # route, and the server refuses the encoded slash by name (no id holds one).
    with pytest.raises(TrueupError) as odd:
        client.write_status("req_x/../../balance/usage?")
    assert (odd.value.status, odd.value.code) == (400, "VALIDATION_ERROR")
    assert odd.value.message.startswith("path: must not contain an encoded slash (%2F)")
    # Each names its request by the reply's X-Request-Id (the server's log lines name it too).
    ids = [error.value.http_request_id for error in (bad, unknown, refused, odd)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", str(rid)) for rid in ids) and len(set(ids)) == 4, ids


def test_the_same_idempotency_key_replays_the_first_reply(client: Client) -> None:
    items = [{"key": "client-idem-1", "accountId": "client-cust-3", "bits": 5}]
    first = client.write(items, idempotency_key="client-idem")
    assert client.write(items, idempotency_key="client-idem") == first
    with pytest.raises(TrueupError) as other:
        client.write([{**items[0], "bits": 6}], idempotency_key="client-idem")
    assert (other.value.status, other.value.code) == (409, "IDEMPOTENCY_MISMATCH")


def test_every_item_of_a_write_is_reached_through_its_status(client: Client) -> None:
    """A write's status lists 100 items unless told otherwise: the SDK pages it as the route does."""
    items = [{"key": f"client-page-{i}", "accountId": "client-cust-page", "bits": i + 1} for i in range(150)]
    accepted = client.write(items)
    first = client.wait_verified(accepted["requestId"])
    assert (first["itemCount"], len(first["items"])) == (150, 100)
    whole = client.wait_verified(accepted["requestId"], limit=1000)
    assert [item["anchorId"] for item in whole["items"][:100]] == [
        item["anchorId"] for item in first["items"]
    ]
    rest = client.write_status(accepted["requestId"], offset=100)
    assert [item["anchorId"] for item in rest["items"]] == [item["anchorId"] for item in whole["items"][100:]]
    assert len(whole["items"]) == 150


@pytest.mark.parametrize("key", ["", "   ", "a\nb", "\u00e9t\u00e9", "k" * 256, " x", "x\t"])
def test_an_idempotency_key_the_server_would_refuse_is_refused_before_sending(key: str) -> None:
    """Sent, a line break or a non-ASCII letter failed inside the HTTP library, which read as no
    reply and was retried; an empty key was replaced by a new one, and a retry was no retry. A
    space or tab at either end the HTTP library refused too, and the error said "send it again"."""
    with (
        Client(f"http://127.0.0.1:{free_port()}", "pk_live_a.b", retries=0) as client,
        pytest.raises(ValueError, match=r"^idempotency_key must (be|not begin)"),
    ):
        client.write([{"key": "k", "accountId": "c", "bits": 1}], idempotency_key=key)


def test_a_value_json_cannot_hold_is_a_value_error_before_sending() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "pk_live_a.b", retries=0) as client,
        pytest.raises(ValueError, match=r"^the request cannot be sent as JSON: .*Decimal"),
    ):
        client.write([{"key": "k", "accountId": "c", "bits": decimal.Decimal(1)}])


def test_a_write_that_got_no_reply_says_which_key_makes_its_retry_safe() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "pk_live_a.b", retries=0) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.emit("c", 5, "no reference id")
    key = failed.value.idempotency_key
    assert failed.value.code == "CONNECTION_ERROR" and key is not None and key.startswith("trueup-sdk-")
    assert failed.value.message.endswith(
        f"it may or may not have been stored: send it again with idempotency_key={key!r} to store it once"
    )


def test_compare_refuses_more_that_would_replace_an_argument(client: Client) -> None:
    with pytest.raises(ValueError, match=r"^more must not give theirBalance, yourBalance: pass it as"):
        client.compare("c", 1, 2, {"yourBalance": 3, "theirBalance": 4, "startingBalance": 0})


def test_a_reply_to_the_checkpoint_route_that_is_no_signed_note_is_a_bad_reply() -> None:
    def proxy_page(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "text/html"}, b"<html>hi</html>"

    with local_server(proxy_page) as url, Client(url) as client, pytest.raises(TrueupError) as bad:
        client.log_checkpoint()
    assert (bad.value.status, bad.value.code) == (200, "BAD_REPLY")
    assert bad.value.message == "not a signed checkpoint: '<html>hi</html>'"


# -- small real servers that misbehave (tests.e2e.server.local_server) ---------------------------


def test_a_write_is_sent_again_with_the_same_bytes_and_key_until_it_is_answered() -> None:
    seen: list[tuple[str | None, bytes]] = []
    replies = [
        (503, {"Retry-After": "0"}, {"success": False, "code": "SERVICE_UNAVAILABLE", "message": "busy"}),
        (202, {}, {"success": True, "code": "IDEMPOTENCY_PENDING", "retryAfterSeconds": 0}),
        (202, {}, {"success": True, "statusCode": 202, "data": {"requestId": "req_1", "itemCount": 1}}),
    ]

    def handle(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        seen.append((request.headers.get("Idempotency-Key"), body))
        status, headers, document = replies[len(seen) - 1]
        return status, headers, json.dumps(document).encode()

    with local_server(handle) as url, Client(url, "pk_live_a.b") as client:
        reply = client.write([{"key": "k", "accountId": "c", "bits": 10**20}])
    assert reply == {"requestId": "req_1", "itemCount": 1}
    assert len(seen) == 3 and len(set(seen)) == 1  # one key, one body, three times
    key, body = seen[0]
    assert key is not None and key.startswith("trueup-sdk-")
    assert json.loads(body) == {"items": [{"key": "k", "accountId": "c", "bits": 10**20}]}


def test_no_reply_is_a_connection_error_after_the_retries() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "pk_live_a.b", retries=1) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.usage()
    assert failed.value.code == "CONNECTION_ERROR" and failed.value.status is None


def test_a_tampered_bundle_fails_verification_here(client: Client, running: Running) -> None:
    accepted = client.write([{"key": "client-tamper", "accountId": "client-cust-4", "bits": 40}])
    anchor = client.wait_verified(accepted["requestId"])["items"][0]["anchorId"]
    genuine = client.proof_bundle(anchor)
    pinned = client.log_key()

    def lying(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        forged = {**genuine, "leaf": {**genuine["leaf"], "delta": 4000}}  # ten times the amount
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"success": True, "data": forged}).encode(),
        )

    with (
        local_server(lying) as url,
        Client(url, running.key) as liar,
        pytest.raises(ProofError, match="leaf"),
    ):
        liar.verify_delta(anchor, pinned)

    def doubled(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        # The genuine bundle with a second "delta" before the first: json.loads keeps the last.
        text = json.dumps({"success": True, "data": genuine}).replace(
            '"delta": ', '"delta": 4000, "delta": ', 1
        )
        return 200, {"Content-Type": "application/json"}, text.encode()

    with (
        local_server(doubled) as url,
        Client(url, running.key) as liar,
        pytest.raises(ProofError, match="duplicate member 'delta'"),
    ):
        liar.verify_delta(anchor, pinned)
    assert client.verify_delta(anchor, pinned).delta == 40


def test_a_proxys_200_page_to_a_verification_is_no_reply_of_the_servers() -> None:
    """A captive portal answering 200 proves nothing either way: ``BAD_REPLY`` without a body
    (what ``trueup verify-period`` reads as "nothing checked"), not a failed proof. A JSON
    object that holds no bundle or period is the server's, and fails the check."""
    pinned = CheckpointSigner(private_key_from_seed(b"\x07" * 32), "localhost/trueup").verifier_key()
    root = "0x" + "ab" * 32

    def portal(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "text/html"}, b"<html>sign in to the network</html>"

    def empty(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, b'{"success": true, "data": "none"}'

    with local_server(portal) as url, Client(url, "pk_live_a.b") as client:
        for verify in (
            lambda: client.verify_delta("a_1", pinned),
            lambda: client.verify_period(root, pinned),
        ):
            with pytest.raises(TrueupError) as bad:
                verify()
            assert (bad.value.code, bad.value.status, bad.value.body) == ("BAD_REPLY", 200, None)
            assert "not a Trueup reply: '<html>sign in" in str(bad.value)
    with local_server(empty) as url, Client(url, "pk_live_a.b") as client:
        with pytest.raises(ProofError, match="bundle"):
            client.verify_delta("a_1", pinned)
        with pytest.raises(ProofError, match="holds no period"):
            client.verify_period(root, pinned)


def test_a_consistency_proof_that_does_not_hold_fails_here(client: Client, running: Running) -> None:
    pinned = client.log_key()
    first = client.write([{"key": "client-fork", "accountId": "client-cust-5", "bits": 1}])
    client.wait_verified(first["requestId"])  # the log has a signed head by now
    held = client.log_checkpoint()
    accepted = client.write(
        [{"key": f"client-fork-{i}", "accountId": "client-cust-5", "bits": 1} for i in range(3)]
    )
    client.wait_verified(accepted["requestId"])
    size = verify_checkpoint(held, pinned).size
    with Client(running.url) as public:  # the consistency proof is public: no key needed
        genuine = public._get("/api/v1/log/proof/consistency", {"from": size})
    assert genuine["proof"], "a proof from a non-empty tree to a larger one has nodes"

    def forking(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        proof = list(genuine["proof"])
        proof[-1] = ("0" if proof[-1][0] != "0" else "1") + proof[-1][1:]  # one node changed
        reply = {"success": True, "data": {**genuine, "proof": proof}}
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    with local_server(forking) as url, Client(url) as liar, pytest.raises(ProofError):
        liar.follow(held, pinned)

    def shouting(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        # The genuine proof in upper-case hex: the same bytes, not the wire's form.
        reply = {"success": True, "data": {**genuine, "proof": [node.upper() for node in genuine["proof"]]}}
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    with (
        local_server(shouting) as url,
        Client(url) as liar,
        pytest.raises(ProofError, match="64 lower-case hex"),
    ):
        liar.follow(held, pinned)
    assert client.follow(held, pinned).head.size == genuine["to"]


@pytest.mark.parametrize(
    ("newest", "why"),
    [
        (TreeHead(3, b"\x03" * 32, 2000), "newest signed checkpoint has 3 leaves, fewer than the 5"),
        (TreeHead(5, b"\x06" * 32, 2000), "trees of equal size 5 have different roots"),
    ],
)
def test_a_log_cut_back_or_rewritten_that_gives_no_proof_fails_here(newest: TreeHead, why: str) -> None:
    """The server answers that it has no head of the size held (its 404) instead of a proof:
    its newest checkpoint, signed by the pinned key, shows the log was not only appended to."""
    signer = CheckpointSigner(private_key_from_seed(b"\x07" * 32), "localhost/trueup")
    held = signer.sign("localhost/trueup", TreeHead(5, b"\x05" * 32, 1000))

    def cut_back(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if urlsplit(request.path).path == "/api/v1/log/checkpoint":
            return 200, {"Content-Type": "text/plain"}, signer.sign("localhost/trueup", newest).encode()
        message = "no signed tree head of size 5"  # the server's words
        reply = {"success": False, "statusCode": 404, "code": "NOT_FOUND", "message": message}
        return 404, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    with (
        local_server(cut_back) as url,
        Client(url) as liar,
        pytest.raises(ConsistencyProofError, match=why),
    ):
        liar.follow(held, signer.verifier_key())

    grown = signer.sign("localhost/trueup", TreeHead(9, b"\x09" * 32, 3000))

    def regrown(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if urlsplit(request.path).path == "/api/v1/log/checkpoint":
            return 200, {}, grown.encode()
        return cut_back(request, body)

    # Larger, with no head of the size held: a log keeps every head it signed, so this one was
    # restored from an earlier copy and grew again (a 404 was taken as the server's word).
    with (
        local_server(regrown) as url,
        Client(url) as liar,
        pytest.raises(
            ConsistencyProofError,
            match=r"no signed tree head of the 5 leaves of the checkpoint held "
            r"\(no signed tree head of size 5\), while its newest signed checkpoint has 9",
        ) as rejected,
    ):
        liar.follow(held, signer.verifier_key())
    assert rejected.value.rejected_checkpoint == grown

    # Other refusals stay the server's word: a 400, or a 404 that is not about the head held
    # (a proxy that routes the path nowhere).
    for status, code, message in (
        (400, "VALIDATION_ERROR", "from: bad"),
        (404, "NOT_FOUND", "no route GET /api/v1/log/proof/consistency"),
    ):

        def refusing(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
            if urlsplit(request.path).path == "/api/v1/log/checkpoint":
                return 200, {}, grown.encode()
            reply = {"success": False, "statusCode": status, "code": code, "message": message}  # noqa: B023
            return status, {"Content-Type": "application/json"}, json.dumps(reply).encode()  # noqa: B023

        with local_server(refusing) as url, Client(url) as other, pytest.raises(TrueupError) as refused:
            other.follow(held, signer.verifier_key())
        assert (refused.value.status, refused.value.code, refused.value.message) == (status, code, message)


def test_a_newer_head_signed_back_in_time_fails_here() -> None:
    """The log never signs a larger head with an earlier time (docs/verification.md,
    "Checkpoints"): one that does, though proven consistent, is refused; the same head signed
    later is followed."""
    signer = CheckpointSigner(private_key_from_seed(b"\x08" * 32), "localhost/trueup")
    held = signer.sign("localhost/trueup", TreeHead(0, EMPTY_ROOT, 5000))  # every tree extends it

    def newest_at(timestamp_ms: int) -> Callable[..., tuple[int, dict[str, str], bytes]]:
        note = signer.sign("localhost/trueup", TreeHead(3, b"\x03" * 32, timestamp_ms))
        data = {"from": 0, "to": 3, "checkpoint": note, "proof": []}
        reply = json.dumps({"success": True, "data": data}).encode()
        return lambda request, body: (200, {"Content-Type": "application/json"}, reply)

    with (
        local_server(newest_at(4999)) as url,
        Client(url) as liar,
        pytest.raises(CheckpointError, match="carries an earlier time, 4999 ms, than the 5000 ms"),
    ):
        liar.follow(held, signer.verifier_key())
    with local_server(newest_at(5000)) as url, Client(url) as server:
        assert server.follow(held, signer.verifier_key()).head.size == 3


def test_a_log_with_no_signed_head_yet_is_an_error_not_a_note() -> None:
    def empty(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        reply = {"success": False, "statusCode": 404, "code": "NOT_FOUND", "message": "no head yet"}
        return 404, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    with local_server(empty) as url, Client(url) as client, pytest.raises(TrueupError) as missing:
        client.log_checkpoint()
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")


def test_dot_ids_stay_one_path_segment(client: Client) -> None:
    """HTTP clients drop "." and ".." from paths: sent as they are, they would name another
    route. Such ids are refused on write, but the route must be the one asked for."""
    for odd in (".", ".."):
        with pytest.raises(TrueupError) as unknown:
            client.derive(odd)
        assert (unknown.value.status, unknown.value.code) == (404, "CUSTOMER_NOT_FOUND")


def test_a_malformed_consistency_reply_is_a_proof_error(client: Client, running: Running) -> None:
    first = client.write([{"key": "client-shape", "accountId": "client-cust-6", "bits": 1}])
    client.wait_verified(first["requestId"])
    pinned, held = client.log_key(), client.log_checkpoint()
    for data in ({"proof": []}, {"checkpoint": held, "proof": "ab"}, {"checkpoint": held, "proof": ["zz"]}):

        def shaped(
            request: BaseHTTPRequestHandler, body: bytes, data: object = data
        ) -> tuple[int, dict[str, str], bytes]:
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"success": True, "data": data}).encode(),
            )

        with local_server(shaped) as url, Client(url) as liar, pytest.raises(ProofError):
            liar.follow(held, pinned)


def test_a_consistency_reply_with_a_member_given_twice_is_refused(client: Client, running: Running) -> None:
    """A second ``checkpoint`` or ``proof`` in a consistency reply (which json.loads resolves to
    the last) would leave one member unchecked: a fork's signed checkpoint beside the real one,
    say. The reply is refused, by follow and by check_same_log alike."""
    first = client.write([{"key": "client-twice", "accountId": "client-cust-twice", "bits": 1}])
    client.wait_verified(first["requestId"])
    pinned, held = client.log_key(), client.log_checkpoint()
    more = client.write([{"key": "client-twice-2", "accountId": "client-cust-twice", "bits": 2}])
    client.wait_verified(more["requestId"])
    with Client(running.url) as public:
        genuine = public._get("/api/v1/log/proof/consistency", {"from": held.splitlines()[1]})
    newer = verify_checkpoint(genuine["checkpoint"], parse_verifier_key(pinned))
    older = verify_checkpoint(held, parse_verifier_key(pinned))
    assert older.size < newer.size
    checkpoint, proof = json.dumps(genuine["checkpoint"]), json.dumps(genuine["proof"])
    for doubled, member in (
        (f'"checkpoint": {json.dumps(held)}, "checkpoint": {checkpoint}, "proof": {proof}', "checkpoint"),
        (f'"checkpoint": {checkpoint}, "proof": [], "proof": {proof}', "proof"),
    ):
        body = f'{{"success": true, "data": {{{doubled}}}}}'.encode()

        def twice(
            request: BaseHTTPRequestHandler, _: bytes, body: bytes = body
        ) -> tuple[int, dict[str, str], bytes]:
            return 200, {"Content-Type": "application/json"}, body

        message = rf"^the consistency reply: duplicate member '{member}'$"
        with local_server(twice) as url, Client(url) as liar:
            with pytest.raises(ProofError, match=message):
                liar.follow(held, pinned)
            with pytest.raises(ProofError, match=message):
                liar.check_same_log(newer, older)


_Forge = Callable[[dict[str, Any], int], None]
"""Changes a period's page (given its offset) in place."""


def test_a_period_is_checked_page_by_page_and_a_forged_page_fails_here(
    client: Client, running: Running
) -> None:
    customer = "client-cust-period"
    amounts = [300, -120, 45, 1000, -7]
    accepted = client.write(
        [
            {
                "key": f"client-p-{i}",
                "accountId": customer,
                "bits": bits,
                "occurredAt": f"2026-03-0{i + 1}T08:00:00Z",
            }
            for i, bits in enumerate(amounts)
        ]
        + [{"key": "client-p-april", "accountId": customer, "bits": 9, "occurredAt": "2026-04-01T08:00:00Z"}]
    )
    client.wait_verified(accepted["requestId"])
    root = client.lock_period(customer, "2026-03")["proofRoot"]
    pinned = client.log_key()
    checked = client.verify_period(root, pinned, page_size=2)  # three pages
    assert (checked.record_count, checked.net_change) == (5, sum(amounts))
    assert checked.proof_root.hex() == root.removeprefix("0x") and checked.tenant.startswith("ten_")
    with pytest.raises(ValueError, match="page_size"):
        client.verify_period(root, pinned, page_size=0)
    # A month without records: its proof root commits to no customer, month or balance.
    empty = client.lock_period(customer, "2026-05")["proofRoot"]
    with pytest.raises(PeriodError, match="proves nothing"):
        client.verify_period(empty, pinned)
    april = client.lock_period(customer, "2026-04")["proofRoot"]
    # April starts where March ends, which after= checks: March verified too, one log.
    chained = client.verify_period(april, pinned, after=root)
    assert (chained.period, chained.starting_balance, chained.ending_balance) == (
        "2026-04",
        sum(amounts),
        sum(amounts) + 9,
    )
    with pytest.raises(PeriodError, match="the previous period is 2026-04, not the month before 2026-03"):
        client.verify_period(root, pinned, after=april)
    with pytest.raises(ProofError, match="after must be 64 hex digits"):
        client.verify_period(april, pinned, after="0x12")
    with pytest.raises(
        PeriodError, match=rf"^the period of the month before \({empty}\): summary.recordCount: 0;"
    ):
        client.verify_period(root, pinned, after=empty)  # the failure is said of the period it is of
    unknown = "0x" + "ab" * 32
    with pytest.raises(
        TrueupError, match=rf"^404 ROOT_NOT_FOUND: the period of the month before \({unknown}\): "
    ):
        client.verify_period(april, pinned, after=unknown)

    with Client(running.url) as public:  # the period is public under its proof root
        public_april = public._get(f"/api/v1/verify/{april}")
        genuine = {
            offset: public._get(f"/api/v1/verify/{root}", {"limit": 2, "offset": offset})
            for offset in (0, 2, 4)
        }

    def recount(page: dict[str, Any], count: int) -> None:  # every page: they must agree
        page["summary"]["recordCount"] = page["recordsTotal"] = page["recompute"]["leafHashesTotal"] = count

    def hashes_total(page: dict[str, Any], offset: int) -> None:  # the one count left as it was
        if offset == 2:
            page["recompute"]["leafHashesTotal"] = 99

    def failed(page: dict[str, Any], offset: int) -> None:
        if offset == 4:
            page["records"][0]["status"] = "FAILED"

    def ten_times(page: dict[str, Any], offset: int) -> None:
        if offset == 2:
            page["records"][0]["amount"] *= 10

    def dropped(page: dict[str, Any], offset: int) -> None:  # a record and its hash, counts to match
        recount(page, 4)
        if offset == 2:
            page["records"].pop()
            page["recompute"]["leafHashes"].pop()

    def interior(page: dict[str, Any], offset: int) -> None:
        # Two leaf hashes replaced by their parent node recompute the same proof root: one
        # record fewer, its neighbour standing for both, and counts to match.
        recount(page, 4)
        if offset == 2:
            first, second = (bytes.fromhex(h) for h in page["recompute"]["leafHashes"])
            page["recompute"]["leafHashes"] = [node_hash(first, second).hex()]
            page["records"] = page["records"][:1]

    def richer(page: dict[str, Any], offset: int) -> None:
        page["summary"]["netChange"] += 1
        page["summary"]["endingBalance"] += 1

    def elsewhere(page: dict[str, Any], offset: int) -> None:  # a genuine period, another root
        page.clear()
        page.update(public_april)

    def endless(page: dict[str, Any], offset: int) -> None:  # the client would fetch forever
        recount(page, 10**15)

    def unstorable(page: dict[str, Any], offset: int) -> None:
        if offset == 2:
            page["records"][0]["leaf"]["customerId"] = "\ud800"

    forgeries: list[tuple[_Forge, str]] = [
        (ten_times, r"^page 2\.records\[0\]\.amount: 450 is not the leaf's 45$"),
        (dropped, r"^records: 3 in all, not the summary's recordCount 4$"),
        (interior, r"^page 2\.recompute\.leafHashes\[0\]: is not the hash"),
        (richer, r"^summary\.netChange: 1219 is not the records' sum 1218$"),
        (elsewhere, r"^page 1\.proofRoot: 0x[0-9a-f]{64} is not the root asked for$"),
        (
            endless,
            r"^page 1\.summary\.recordCount: 1000000000000000 is more than the signed tree's \d+ leaves$",
        ),
        (unstorable, r"^page 2\.records\[0\]\.leaf\.customerId: "),
        (hashes_total, r"^page 2\.recompute\.leafHashesTotal: is not the summary's recordCount 5$"),
        (failed, r"^page 3\.records\[0\]\.status: 'FAILED' is not VERIFIED, as a sealed leaf's$"),
    ]
    for forge, message in forgeries:
        asked: list[int] = []

        def lying(
            request: BaseHTTPRequestHandler, body: bytes, forge: _Forge = forge, asked: list[int] = asked
        ) -> tuple[int, dict[str, str], bytes]:
            offset = int(parse_qs(urlsplit(request.path).query)["offset"][0])
            asked.append(offset)
            page = copy.deepcopy(genuine[offset])
            forge(page, offset)
            reply = {"success": True, "data": page}
            return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

        with local_server(lying) as url, Client(url) as liar, pytest.raises(ProofError, match=message):
            liar.verify_period(root, pinned, page_size=2)
        if forge is ten_times:  # refused as it came: the page after it was never asked for
            assert asked == [0, 2]

    def doubled(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        # A second "summary" before the genuine one: json.loads would keep the last.
        text = json.dumps({"success": True, "data": genuine[0]}).replace(
            '"summary": ', '"summary": {}, "summary": ', 1
        )
        return 200, {"Content-Type": "application/json"}, text.encode()

    with (
        local_server(doubled) as url,
        Client(url) as liar,
        pytest.raises(PeriodError, match="duplicate member 'summary'"),
    ):
        liar.verify_period(root, pinned, page_size=2)


_ERROR = {"success": False, "statusCode": 429, "code": "RATE_LIMITED", "message": "slow down"}


@pytest.mark.parametrize(
    ("status", "headers", "content"),
    [
        # a body that is not what its Content-Encoding says
        (200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"not gzip"),
        # advice past the largest float, on a reply that is retried and on one that is not
        (429, {"Content-Type": "application/json"}, b'{"retryAfterSeconds": 1' + b"0" * 400 + b"}"),
        (404, {"Content-Type": "application/json"}, b'{"retryAfterSeconds": 1' + b"0" * 400 + b"}"),
        # a Retry-After of a digit that is not ASCII ("\u00b2".isdigit() is true)
        (429, {"Content-Type": "application/json", "Retry-After": "\u00b2"}, json.dumps(_ERROR).encode()),
    ],
)
def test_a_malformed_reply_is_a_trueup_error_not_a_crash(
    status: int, headers: dict[str, str], content: bytes
) -> None:
    def malformed(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return status, headers, content

    with (
        local_server(malformed) as url,
        Client(url, "pk_live_a.b", retries=0) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.usage()
    assert failed.value.code in ("BAD_REPLY", "HTTP_ERROR", "RATE_LIMITED")


@pytest.mark.parametrize(
    ("status", "content", "code"),
    [
        (504, b"<html><body>504 Gateway Time-out</body></html>", "BAD_REPLY"),
        (502, b'{"message": "upstream went away"}', "HTTP_ERROR"),
        (500, b'{"success": false, "code": "INTERNAL_ERROR", "message": "internal error"}', "INTERNAL_ERROR"),
    ],
    ids=["proxy-page", "proxy-json", "server-500"],
)
def test_a_write_answered_by_no_reply_of_the_server_may_have_been_stored(
    status: int, content: bytes, code: str
) -> None:
    """A proxy's page after it forwarded a write (or the server's own 500) says nothing of
    whether the write was stored: the error says it may have been, and names the key that makes
    sending it again safe, as for no reply at all."""

    def proxy(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return (
            status,
            {"Content-Type": "text/html" if content.startswith(b"<") else "application/json"},
            content,
        )

    with local_server(proxy) as url, Client(url, "pk_live_a.b", retries=0) as client:
        with pytest.raises(TrueupError) as failed:
            client.emit("c", 1000, "top-up")
        with pytest.raises(TrueupError) as given:
            client.write([{"key": "k", "accountId": "c", "bits": 1}], idempotency_key="mine-1")
    key = failed.value.idempotency_key
    assert key is not None and key.startswith("trueup-sdk-")
    assert (failed.value.code, failed.value.status) == (code, status)
    assert failed.value.message.endswith(
        f"; it may or may not have been stored: send it again with idempotency_key={key!r} to store it once"
    )
    assert given.value.idempotency_key == "mine-1" and "idempotency_key='mine-1'" in given.value.message


def test_a_base_url_or_a_wait_the_client_cannot_use_is_a_value_error() -> None:
    """Sent, a URL without http(s) and a host looked like a server down (CONNECTION_ERROR after
    the retries), and a NaN timeout never timed out."""
    for url in ("notaurl", "ftp://host", "http://host?x=1", "http://host#f", "http://"):
        with pytest.raises(ValueError, match=r"^base_url must be an http:// or https:// URL"):
            Client(url)
    with Client("http://127.0.0.1:1") as client:
        for wait in ({"timeout": math.nan}, {"timeout": -1.0}, {"poll": math.inf}):
            with pytest.raises(ValueError, match="must be a finite number of seconds, 0 or more"):
                client.wait_verified("req_x", **wait)


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Content-Type": "application/json"}, b'{"success": true, "data": {"pad": "' + b"x" * 5000 + b'"}}'),
        # 5 KB on the wire that inflate to 5 MB
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(b" " * 5_000_000)),
    ],
    ids=["long", "inflating"],
)
def test_a_reply_longer_than_max_reply_bytes_is_not_read_further(
    headers: dict[str, str], content: bytes
) -> None:
    def long(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {**headers, "X-Request-Id": "long-1"}, content

    with (
        local_server(long) as url,
        Client(url, "pk_live_a.b", retries=0, max_reply_bytes=4096) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.usage()
    assert (failed.value.code, failed.value.status, failed.value.body) == ("BAD_REPLY", 200, None)
    assert failed.value.message.endswith("longer than 4096 bytes")
    assert failed.value.http_request_id == "long-1"


_WHOLE = b'{"success": true, "data": {}}'


def _zeros_gzipped(megabytes: int) -> bytes:
    """A gzip stream of ``megabytes`` MiB of zeros: about a thousandth of that on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "content", "message"),
    [
        # 64 MiB from 64 KB, never inflated whole
        ("gzip", _zeros_gzipped(64), "longer than 1048576 bytes"),
        (
            "gzip, gzip",
            gzip.compress(gzip.compress(b"{}")),
            "in a content coding the client did not ask for: 'gzip, gzip'",
        ),
        ("br", b"\x0b\x00\x80{}\x03", "in a content coding the client did not ask for: 'br'"),
        ("gzip", gzip.compress(b"{}")[:-12], "whose gzip stream ends early"),  # cut short
        # whole JSON, but the checksum that proves it never came, or bytes after the stream
        ("gzip", gzip.compress(b'{"success": true, "data": {}}')[:-8], "whose gzip stream ends early"),
        (
            "gzip",
            gzip.compress(b'{"success": true, "data": {}}') + b"junk",
            "with bytes after its gzip stream",
        ),
    ],
    ids=["a bomb", "stacked codings", "a coding not asked for", "cut short", "no trailer", "bytes after"],
)
def test_only_gzip_is_inflated_and_never_past_max_reply_bytes(
    coding: str, content: bytes, message: str
) -> None:
    seen: list[str | None] = []

    def coded(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        seen.append(request.headers.get("Accept-Encoding"))
        return 200, {"Content-Type": "application/json", "Content-Encoding": coding}, content

    with local_server(coded) as url, Client(url, retries=0, max_reply_bytes=1 << 20) as client:
        with pytest.raises(TrueupError) as failed:
            client.usage()
        assert failed.value.code == "BAD_REPLY" and failed.value.message.endswith(message)
    assert seen == ["gzip"]


def test_a_reply_as_long_as_max_reply_bytes_is_read() -> None:
    content = b'{"success": true, "data": {"pad": "' + b"x" * 5000 + b'"}}'

    def long(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, content

    with local_server(long) as url, Client(url, retries=0, max_reply_bytes=len(content)) as client:
        assert client.usage() == {"pad": "x" * 5000}


def test_a_reply_read_whole_keeps_its_headers_and_decoded_body() -> None:
    """The reply is read in pieces and put together again: what the client reads of it (the
    decoded body, the advice and id headers, a header that is not ASCII) is as before."""
    document = {"success": False, "code": "RATE_LIMITED", "message": "slow d\u00f6wn"}

    def zipped(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Retry-After": "3"}
        return 429, {**headers, "X-Request-Id": "zip-1"}, gzip.compress(json.dumps(document).encode())

    with (
        local_server(zipped) as url,
        Client(url, "pk_live_a.b", retries=0) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.usage()
    error = failed.value
    assert (error.status, error.code, error.message) == (429, "RATE_LIMITED", "slow d\u00f6wn")
    assert (error.retry_after, error.http_request_id) == (3.0, "zip-1")


@pytest.mark.parametrize(
    ("status", "headers", "document"),
    [
        # a proxy's 429 or 503: the advice in the header only, the body JSON or not
        (429, {"Retry-After": "7"}, {"success": False, "code": "RATE_LIMITED", "message": "slow down"}),
        (503, {"Retry-After": "7", "Content-Type": "text/html"}, None),
        # a write still in flight after the retries: the advice in the body of a 202
        (202, {}, {"success": True, "code": "IDEMPOTENCY_PENDING", "retryAfterSeconds": 7}),
        # advice that is no wait (negative, endless): the header's, as the retries read it
        (429, {"Retry-After": "7"}, {"success": False, "code": "RATE_LIMITED", "retryAfterSeconds": -1}),
        (429, {"Retry-After": "7"}, {"success": False, "code": "RATE_LIMITED", "retryAfterSeconds": 10**400}),
    ],
)
def test_the_servers_advice_on_when_to_retry_is_in_the_error_wherever_it_came(
    status: int, headers: dict[str, str], document: dict[str, Any] | None
) -> None:
    def advising(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return status, headers, b"<html>busy</html>" if document is None else json.dumps(document).encode()

    with (
        local_server(advising) as url,
        Client(url, "pk_live_a.b", retries=0) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.write([{"key": "k", "accountId": "c", "bits": 1}])
    assert (failed.value.status, failed.value.retry_after) == (status, 7.0)


def test_endless_advice_is_no_advice_to_the_retries_either(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retries and ``retry_after`` read the advice alike: an endless ``retryAfterSeconds``
    gives way to ``Retry-After``. The waits are recorded, not slept."""
    waits: list[float] = []
    monkeypatch.setattr("trueup.sdk.client.time.sleep", waits.append)
    document = {"success": False, "code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": 10**400}

    def advising(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 503, {"Retry-After": "1"}, json.dumps(document).encode()

    with (
        local_server(advising) as url,
        Client(url, "pk_live_a.b", retries=2) as client,
        pytest.raises(TrueupError) as failed,
    ):
        client.usage()
    assert (waits, failed.value.retry_after) == ([1.0, 1.0], 1.0)


def test_an_empty_reply_is_empty_whatever_its_coding_says() -> None:
    """A proxy's 503 with no body, marked gzip: retried on its advice as before, not BAD_REPLY."""
    replies = iter([(503, {"Retry-After": "0", "Content-Encoding": "gzip"}, b""), (200, {}, _WHOLE)])

    def proxy(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return next(replies)

    with local_server(proxy) as url, Client(url, "pk_live_a.b", retries=1) as client:
        assert client.usage() == {}


def test_verify_period_says_a_reply_it_cannot_decode_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def garbled(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"not gzip"

    with local_server(garbled) as url:
        code = main(["verify-period", "0x" + "ab" * 32, "--key", _ANY_KEY, "--url", url])
    assert code == 3  # a reply that cannot be read checks nothing, as no reply does
    out = capsys.readouterr().out
    assert out.startswith("NOT CHECKED: the server could not be asked for the period: '200 BAD_REPLY: ")
    assert out.count("\n") == 1


def test_a_log_key_reply_without_the_key_is_a_trueup_error() -> None:
    def keyless(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, b'{"success": true, "data": {}}'

    with local_server(keyless) as url, Client(url) as client, pytest.raises(TrueupError) as failed:
        client.log_key()
    assert failed.value.code == "BAD_REPLY"


_ANY_KEY = CheckpointSigner(private_key_from_seed(b"\x07" * 32), "localhost/trueup").verifier_key()


def test_verify_delta_held_asks_for_the_held_tree_and_keeps_a_fork_as_evidence() -> None:
    """A server answering the held size with a tree of another root, signed by the pinned key:
    a fork, raised with the server's note as ``rejected_checkpoint``; one answering with another
    size did not give what was asked."""
    vector = load_vector("bundle_v1.json")
    bundle: dict[str, Any] = vector["bundles"][0]
    key = load_vector("checkpoint_v1.json")
    signer = CheckpointSigner(private_key_from_seed(bytes.fromhex(key["ed25519Seed"])), key["keyName"])
    pinned = vector["verifierKey"]
    head = verify_checkpoint(bundle["checkpoint"], pinned)
    asked: list[str] = []

    def answer(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        asked.append(request.path)
        reply = json.dumps({"success": True, "data": bundle}).encode()
        return 200, {"Content-Type": "application/json"}, reply

    anchor = bundle["anchorId"]
    with local_server(answer) as url, Client(url, "pk_live_a.b") as client:
        genuine = client.verify_delta(anchor, pinned, held=bundle["checkpoint"])
        assert (genuine.tree_size, genuine.root) == (head.size, head.root)
        assert asked[-1] == f"/api/v1/log/proof/bundle/{anchor}?treeSize={head.size}"
        forked = signer.sign(key["keyName"], TreeHead(head.size, b"\x07" * 32, head.timestamp_ms))
        with pytest.raises(ProofError, match="two histories") as fork:
            client.verify_delta(anchor, pinned, held=forked)
        assert fork.value.rejected_checkpoint == bundle["checkpoint"]
        larger = signer.sign(key["keyName"], TreeHead(head.size + 3, b"\x07" * 32, head.timestamp_ms))
        answered = f"the bundle of the tree of size {head.size} when asked for the held size {head.size + 3}"
        with pytest.raises(ProofError, match=answered):
            client.verify_delta(anchor, pinned, held=larger)
        assert asked[-1].endswith(f"?treeSize={head.size + 3}")
        # The empty tree (what a new log signs first) holds no delta: nothing to ask.
        count = len(asked)
        empty = signer.sign(key["keyName"], TreeHead(0, EMPTY_ROOT, head.timestamp_ms))
        with pytest.raises(ProofError, match="the held checkpoint is of the empty tree, which holds no"):
            client.verify_delta(anchor, pinned, held=empty)
        assert len(asked) == count
        # A held note the pinned key did not sign is refused before anything is asked.
        other = CheckpointSigner(private_key_from_seed(b"\x01" * 32), key["keyName"])
        count = len(asked)
        with pytest.raises(CheckpointError):
            client.verify_delta(anchor, pinned, held=other.sign(key["keyName"], head))
        assert len(asked) == count
