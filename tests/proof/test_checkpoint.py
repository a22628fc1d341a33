"""Checkpoints: the fixed vectors in tests/vectors/checkpoint_v1.json and every rejection."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, derive_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from trueup.proof import (
    CheckpointError,
    CheckpointSigner,
    TreeHead,
    checkpoint_body,
    parse_checkpoint,
    parse_checkpoint_body,
    parse_verifier_key,
    private_key_from_pem,
    private_key_from_seed,
    private_key_to_pem,
    verify_checkpoint,
)
from trueup.proof.note import sign_note

from .reference import load_vector

VECTOR = load_vector("checkpoint_v1.json")
SIGNER = CheckpointSigner(private_key_from_seed(bytes.fromhex(VECTOR["ed25519Seed"])), VECTOR["keyName"])
VKEY = VECTOR["verifierKey"]
CHECKPOINTS = VECTOR["checkpoints"]
GOOD = CHECKPOINTS[0]["note"]


def head_of(case: dict[str, Any]) -> TreeHead:
    return TreeHead(
        size=case["treeSize"], root=bytes.fromhex(case["rootHash"]), timestamp_ms=case["timestampMs"]
    )


def test_signer_key_matches_the_vector() -> None:
    assert SIGNER.public_key.public_bytes_raw().hex() == VECTOR["publicKey"]
    assert SIGNER.key_id.hex() == VECTOR["keyId"]
    assert SIGNER.verifier_key() == VKEY
    assert SIGNER.name == VECTOR["keyName"]
    assert repr(SIGNER) == f"CheckpointSigner(name='trueup.example/log', key_id={VECTOR['keyId']})"


@pytest.mark.parametrize("case", CHECKPOINTS, ids=lambda c: f"size-{c['treeSize']}")
def test_signing_reproduces_the_vector_checkpoint_exactly(case: dict[str, Any]) -> None:
    head = head_of(case)
    assert checkpoint_body(case["origin"], head) == case["body"]
    assert SIGNER.sign(case["origin"], head) == case["note"]


@pytest.mark.parametrize("case", CHECKPOINTS, ids=lambda c: f"size-{c['treeSize']}")
def test_the_vector_checkpoint_verifies_and_parses_to_its_head(case: dict[str, Any]) -> None:
    assert verify_checkpoint(case["note"], VKEY) == head_of(case)
    assert verify_checkpoint(case["note"], parse_verifier_key(VKEY), origin=case["origin"]) == head_of(case)
    assert parse_checkpoint(case["note"]) == (case["origin"], head_of(case))


def test_the_note_has_the_c2sp_layout() -> None:
    body, signature = GOOD.split("\n\n")
    assert body.split("\n") == [
        "trueup.example/log",
        "8",
        base64.b64encode(bytes.fromhex(CHECKPOINTS[0]["rootHash"])).decode(),
        "timestamp 1770733800000",
    ]
    name, encoded = signature.removeprefix("\u2014 ").removesuffix("\n").split(" ")
    assert name == "trueup.example/log"
    assert base64.b64decode(encoded)[:4].hex() == VECTOR["keyId"]
    assert len(base64.b64decode(encoded)) == 4 + 64


def _retyped(line: int, value: str) -> str:
    body, signature = GOOD.split("\n\n")
    lines = body.split("\n")
    lines[line] = value
    return "\n".join(lines) + "\n\n" + signature


OTHER_ROOT = base64.b64encode(bytes(32)).decode()


def _resigned(change: Callable[[bytes], bytes]) -> str:
    # The checkpoint with its signature line's decoded bytes (key id || signature) changed.
    body, line = GOOD.split("\n\n")
    prefix, encoded = line.removesuffix("\n").rsplit(" ", 1)
    raw = change(base64.b64decode(encoded))
    return f"{body}\n\n{prefix} {base64.b64encode(raw).decode()}\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (_retyped(1, "9"), "^bad signature: "),
        (_retyped(2, OTHER_ROOT), "^bad signature: "),
        (_retyped(3, "timestamp 1770733800001"), "^bad signature: "),
        (_retyped(0, "evil.example/log"), "^bad signature: "),
        (_resigned(lambda sig: sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]), "^bad signature: "),
        (_resigned(lambda sig: bytes([sig[0] ^ 1]) + sig[1:]), "^unknown key: "),
        (_resigned(lambda sig: sig[:-1]), "^bad signature: "),
        (GOOD.replace("\u2014 trueup.example/log ", "\u2014 trueup.example/logs "), "^unknown key: "),
        (GOOD.replace("\n\n", "\n"), "^malformed note: no blank line"),
        (GOOD.replace("\u2014", "--"), "^malformed note: signature line 1 does not start"),
    ],
)
def test_a_tampered_checkpoint_is_rejected_naming_the_failed_check(note: str, message: str) -> None:
    assert note != GOOD
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(note, VKEY)


def test_a_checkpoint_signed_by_another_key_is_rejected() -> None:
    other = CheckpointSigner(private_key_from_seed(bytes(32)), VECTOR["keyName"])
    note = other.sign("trueup.example/log", head_of(CHECKPOINTS[0]))
    with pytest.raises(CheckpointError, match=r"^unknown key: the note is signed by trueup\.example/log\+"):
        verify_checkpoint(note, VKEY)


def test_a_checkpoint_from_another_origin_is_rejected_when_the_origin_is_pinned() -> None:
    note = SIGNER.sign("other.example/log", head_of(CHECKPOINTS[0]))
    assert verify_checkpoint(note, VKEY).size == 8
    with pytest.raises(CheckpointError, match=r"origin 'other\.example/log' is not the expected origin"):
        verify_checkpoint(note, VKEY, origin="trueup.example/log")


ROOT_B64 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"log\n8\n{ROOT_B64}\n", "expected 4 lines \\(origin, size, root, timestamp\\), got 3"),
        (f"log\n08\n{ROOT_B64}\ntimestamp 1\n", "size line '08' is not a decimal tree size"),
        (f"log\n-1\n{ROOT_B64}\ntimestamp 1\n", "size line '-1' is not a decimal tree size"),
        (f"log\n\u0668\n{ROOT_B64}\ntimestamp 1\n", "is not a decimal tree size"),
        (f"log\n{2**64}\n{ROOT_B64}\ntimestamp 1\n", "is not a decimal tree size"),
        ("log\n8\nAAAA\ntimestamp 1\n", "root line 'AAAA' is not the base64 of a 32-byte hash"),
        ("log\n8\n%%%%\ntimestamp 1\n", "root line '%%%%' is not base64"),
        (f"log\n8\n{ROOT_B64[:-1]}B\ntimestamp 1\n", "is not the base64 of a 32-byte hash"),
        (f"log\n8\n{ROOT_B64}\ntimestamp 01\n", "expected 'timestamp <milliseconds>'"),
        # Past 4,300 digits int() raises a ValueError of its own: refused before it is called.
        (f"log\n{'1' * 5000}\n{ROOT_B64}\ntimestamp 1\n", "is not a decimal tree size"),
        (f"log\n8\n{ROOT_B64}\ntimestamp {'1' * 5000}\n", "expected 'timestamp <milliseconds>'"),
        (f"log\n8\n{ROOT_B64}\ntime 1\n", "expected 'timestamp <milliseconds>'"),
        (f"log\n8\n{ROOT_B64}\ntimestamp 1", "text must end with a newline"),
        (f"\n8\n{ROOT_B64}\ntimestamp 1\n", "origin must be a non-empty line"),
        (f"log\n8\n{ROOT_B64}\ntimestamp 1\n\n", "an extension line must not be empty"),
        (f"log\n8\n{ROOT_B64}\ntimestamp 1\nother\n\n", "an extension line must not be empty"),
        (f"log\n8\n{ROOT_B64}\nother\ntimestamp 1\n", "expected 'timestamp <milliseconds>'"),
    ],
)
def test_malformed_checkpoint_text_is_rejected(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint_body(body)


def test_extension_lines_after_the_timestamp_are_signed_and_ignored() -> None:
    """C2SP tlog-checkpoint: "Any following lines are extension lines, opaque and OPTIONAL"."""
    key = private_key_from_seed(bytes.fromhex(VECTOR["ed25519Seed"]))
    note = sign_note(f"log\n8\n{ROOT_B64}\ntimestamp 7\nwitnessed-by other\n", SIGNER.name, key)
    assert verify_checkpoint(note, VKEY) == TreeHead(size=8, root=base64.b64decode(ROOT_B64), timestamp_ms=7)
    forged = note.replace("witnessed-by other", "witnessed-by nobody")
    with pytest.raises(CheckpointError):
        verify_checkpoint(forged, VKEY)


def test_a_well_signed_but_malformed_checkpoint_is_rejected() -> None:
    key = private_key_from_seed(bytes.fromhex(VECTOR["ed25519Seed"]))
    note = sign_note(f"log\n8\n{ROOT_B64}\n", SIGNER.name, key)
    with pytest.raises(CheckpointError, match=r"^malformed checkpoint: expected 4 lines"):
        verify_checkpoint(note, VKEY)


@pytest.mark.parametrize(
    ("size", "root", "timestamp", "message"),
    [
        (-1, bytes(32), 0, "tree size must be an integer"),
        (2**64, bytes(32), 0, "tree size must be an integer"),
        (True, bytes(32), 0, "tree size must be an integer"),
        (0, bytes(31), 0, "root hash must be 32 bytes"),
        (0, bytes(32), -1, "timestamp must be a non-negative integer"),
        (0, bytes(32), 1.5, "timestamp must be a non-negative integer"),
    ],
)
def test_tree_heads_reject_impossible_values(size: int, root: bytes, timestamp: int, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        TreeHead(size=size, root=root, timestamp_ms=timestamp)


@pytest.mark.parametrize("origin", ["", "two\nlines", "tab\there"])
def test_signing_refuses_an_origin_that_is_not_one_line(origin: str) -> None:
    with pytest.raises(CheckpointError, match="origin must be a non-empty line"):
        SIGNER.sign(origin, head_of(CHECKPOINTS[0]))


def test_signer_rejects_an_invalid_key_name() -> None:
    with pytest.raises(CheckpointError, match="must not contain spaces"):
        CheckpointSigner(private_key_from_seed(bytes(32)), "has space")


def test_private_key_round_trips_through_pkcs8_pem() -> None:
    pem = private_key_to_pem(private_key_from_seed(bytes.fromhex(VECTOR["ed25519Seed"])))
    assert pem.decode() == VECTOR["privateKeyPem"]
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = private_key_from_pem(pem)
    assert CheckpointSigner(loaded, VECTOR["keyName"]).verifier_key() == VKEY


def test_loading_a_key_that_is_not_ed25519_pem_fails_clearly() -> None:
    with pytest.raises(CheckpointError, match="not an unencrypted PEM private key"):
        private_key_from_pem(b"not a key")
    p256 = derive_private_key(12345, SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(CheckpointError, match=r"^signing key is a PEM private key, but not an Ed25519 one$"):
        private_key_from_pem(p256)
    with pytest.raises(CheckpointError, match="seed must be 32 bytes"):
        private_key_from_seed(bytes(31))
