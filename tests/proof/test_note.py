"""C2SP signed notes, checked against the vectors of Go's golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trueup.proof import CheckpointError
from trueup.proof.checkpoint import private_key_from_seed
from trueup.proof.note import (
    format_verifier_key,
    key_id,
    open_note,
    parse_verifier_key,
    sign_note,
    split_note,
)

# golang.org/x/mod sumdb/note/note_test.go (TestNewSigner, TestSign, TestOpen).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    "nWLox33WWd1RvMc+QQ=\n"
)


def peter_private_key() -> Ed25519PrivateKey:
    # Go's signer key text ends in base64(0x01 || 32-byte Ed25519 seed).
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert raw[0] == 0x01
    return private_key_from_seed(raw[1:])


def test_signing_reproduces_go_sumdb_note_byte_for_byte() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_private_key()) == TEXT + "\n" + PETER_SIG


def test_verifier_key_format_matches_go() -> None:
    key = peter_private_key().public_key()
    assert format_verifier_key("PeterNeumann", key) == PETER_VKEY
    assert key_id("PeterNeumann", key).hex() == "c74f20a3"
    parsed = parse_verifier_key(PETER_VKEY)
    assert (parsed.name, parsed.key_id.hex()) == ("PeterNeumann", "c74f20a3")
    assert parsed.public_key.public_bytes_raw() == key.public_bytes_raw()


def test_a_note_opens_with_either_signers_key_and_ignores_the_other() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, parse_verifier_key(PETER_VKEY)) == TEXT
    assert open_note(note, parse_verifier_key(ENOCH_VKEY)) == TEXT


def test_a_note_without_the_trusted_key_is_rejected_as_unknown_key() -> None:
    with pytest.raises(
        CheckpointError,
        match=r"^unknown key: the note is signed by PeterNeumann\+c74f20a3, not by EnochRoot\+af0cfe78$",
    ):
        open_note(TEXT + "\n" + PETER_SIG, parse_verifier_key(ENOCH_VKEY))


def test_a_corrupted_signature_by_the_trusted_key_is_rejected() -> None:
    corrupted = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(CheckpointError, match=r"^bad signature: the signature by PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + corrupted, parse_verifier_key(PETER_VKEY))


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (TEXT, "no blank line before the signatures"),
        (TEXT + "\n", "the signature block must end with a newline"),
        (TEXT + "\n" + PETER_SIG[:-1], "the signature block must end with a newline"),
        ("\x01" + TEXT + "\n" + PETER_SIG, "contains control character U\\+0001"),
        ("\ud800" + TEXT + "\n" + PETER_SIG, "is not valid Unicode"),
        (
            TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
            "signature line 1 has a bad key name or base64",
        ),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "signature line 2 does not start with"),
        (TEXT + "\n" + PETER_SIG * 101, "more than 100 signatures"),
        (TEXT + "\n\u2014 PeterNeumann\n", "signature line 1 has no signature"),
        (TEXT + "\n\u2014 PeterNeumann AAAA\n", "signature line 1 is too short"),
        (TEXT + "\n\u2014 PeterNeumann !!!!\n", "signature line 1 has a bad key name or base64"),
        # The same bytes, but an unused bit of the last character set: no one may alter a
        # signature line and keep it valid.
        (TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n"), "signature line 1 has a bad key name or base64"),
    ],
)
def test_malformed_notes_are_rejected(note: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=f"^malformed note: .*{message}"):
        open_note(note, parse_verifier_key(PETER_VKEY))


def test_split_note_returns_the_text_and_unverified_signatures() -> None:
    text, signatures = split_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert text == TEXT
    assert [(s.name, s.key_id.hex(), len(s.signature)) for s in signatures] == [
        ("PeterNeumann", "c74f20a3", 64),
        ("EnochRoot", "af0cfe78", 64),
    ]


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("PeterNeumann+c74f20a3", "must be <name>\\+<hex key id>\\+<base64 key>"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "must not contain spaces"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not 8 lower-case hex"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match name"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "not valid base64"),
        # golang.org/x/mod TestNewVerifier: wrong key length and unknown algorithm.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not an Ed25519 key",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not an Ed25519 key"),
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_verifier_key(vkey)


def test_a_key_name_that_is_not_unicode_text_is_rejected() -> None:
    # A command line can carry one (undecodable bytes arrive as lone surrogates).
    with pytest.raises(CheckpointError, match="is not valid Unicode text"):
        parse_verifier_key("Peter\udcffNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_every_mangling_of_a_verifier_key_is_rejected() -> None:
    # As golang.org/x/mod TestNewVerifier: every proper substring and every one-byte change.
    accepted = []
    for i in range(len(PETER_VKEY)):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                accepted += _accepts(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        accepted += _accepts(PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :])
    assert accepted == []


def _accepts(vkey: str) -> list[str]:
    try:
        parse_verifier_key(vkey)
    except CheckpointError:
        return []
    return [vkey]


def test_signing_refuses_text_that_is_not_a_note_text() -> None:
    key = peter_private_key()
    with pytest.raises(CheckpointError, match="text must end with a newline"):
        sign_note("abc", "PeterNeumann", key)
    with pytest.raises(CheckpointError, match="must not contain spaces, '\\+' or controls"):
        sign_note(TEXT, "a+b", key)
    with pytest.raises(CheckpointError, match="control character U\\+0009"):
        sign_note("a\tb\n", "PeterNeumann", key)


@pytest.mark.parametrize(
    "point",
    [
        "01" + "00" * 31,  # the identity: a signature (R = identity, S = 0) verifies every message
        "00" * 32,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # sign bit set
    ],
)
def test_a_verifier_key_of_small_order_is_refused(point: str) -> None:
    """OpenSSL loads these points; under them anyone can sign, so a log that published one
    could disown every checkpoint."""
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(point))
    with pytest.raises(CheckpointError, match="small order"):
        parse_verifier_key(format_verifier_key("log.example/trueup", public_key))
