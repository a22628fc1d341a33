"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``"— <key name> <base64(key id || signature)>\\n"`` (an em dash, U+2014). The
signature covers the text including its final newline. Keys are named, and identified by
a 4-byte key id; a verifier key is written ``<name>+<hex key id>+<base64(0x01 || public
key)>`` as in Go's ``golang.org/x/mod/sumdb/note``, whose test vectors this module passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trueup.proof.errors import CheckpointError, shown

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_SIGNATURES",
    "NoteSignature",
    "VerifierKey",
    "check_key_name",
    "format_verifier_key",
    "key_id",
    "open_note",
    "parse_verifier_key",
    "sign_note",
    "split_note",
]

ED25519_SIGNATURE_TYPE: Final = 0x01
"""signed-note §Signature types: the identifier byte of Ed25519 signatures."""

MAX_SIGNATURES: Final = 100
"""Most signature lines accepted in one note (signed-note §Format asks for a limit ≥ 16)."""

_SIGNATURE_PREFIX: Final = "\u2014 "  # signed-note §Format: em dash, space
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class VerifierKey(NamedTuple):
    """A parsed verifier key: who signs, its 4-byte key id, and its Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


class NoteSignature(NamedTuple):
    """One signature line of a note, not yet verified: key name, key id, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


def check_key_name(name: str) -> None:
    """Check a key name: non-empty, no Unicode spaces, no ``+``, no control characters.

    Raises:
        CheckpointError: naming the rule ``name`` breaks.
    """
    # signed-note §Format: key names MUST be non-empty and MUST NOT contain Unicode spaces
    # or plus (U+002B); the note as a whole may not contain control characters.
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"key name must be a non-empty string, got {shown(name)}")
    if "+" in name or any(char.isspace() or char < " " for char in name):
        raise CheckpointError(f"key name {shown(name)} must not contain spaces, '+' or controls")
    try:
        name.encode("utf-8")  # signed-note §Format: notes MUST be valid UTF-8
    except UnicodeEncodeError:
        raise CheckpointError(f"key name {shown(name)} is not valid Unicode text") from None


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """Return the 4-byte key id of an Ed25519 key named ``name``.

    signed-note §Ed25519 signatures: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
    """
    raw = public_key.public_bytes_raw()
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + raw).digest()[:4]


def format_verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the verifier key text ``<name>+<hex key id>+<base64(0x01 || public key)>``.

    Raises:
        CheckpointError: if ``name`` is not a valid key name.
    """
    check_key_name(name)
    encoded = base64.b64encode(bytes([ED25519_SIGNATURE_TYPE]) + public_key.public_bytes_raw())
    return f"{name}+{key_id(name, public_key).hex()}+{encoded.decode('ascii')}"


_SMALL_ORDER = frozenset(
    bytes.fromhex(point)
    for point in (
        "00" * 32,  # order 4
        "01" + "00" * 31,  # the identity, order 1
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "ec" + "ff" * 30 + "7f",  # p - 1, order 2
        "ed" + "ff" * 30 + "7f",  # p, the non-canonical 0
        "ee" + "ff" * 30 + "7f",  # p + 1, the non-canonical 1
    )
)
"""Ed25519 public keys of small order, the sign bit cleared (libsodium's blocklist)."""


def _canonical_b64decode(encoded: str) -> bytes:
    """Standard base64 that is the encoding of what it decodes to: the unused bits of its last
    character zero, so that no one can alter a note's signature line and keep it valid."""
    raw = base64.b64decode(encoded, validate=True)
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise ValueError("not canonical base64")
    return raw


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse a verifier key written by :func:`format_verifier_key`.

    Raises:
        CheckpointError: if the text is not three ``+``-separated parts, the name is invalid,
            the key id is not 8 lower-case hex digits, the key is not base64 of ``0x01`` and
            32 bytes, or the key id does not belong to that name and key.
    """
    # signed-note: names never contain "+", but base64 may; split at the first two only.
    parts = text.strip().split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3:
        raise CheckpointError("verifier key must be <name>+<hex key id>+<base64 key>")
    name, id_hex, encoded = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise CheckpointError(f"verifier key id {shown(id_hex)} is not 8 lower-case hex digits")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("verifier key is not valid base64") from exc
    if len(raw) != 33 or raw[0] != ED25519_SIGNATURE_TYPE:
        raise CheckpointError("verifier key is not an Ed25519 key (0x01 and 32 bytes)")
    if raw[1:32] + bytes([raw[32] & 0x7F]) in _SMALL_ORDER:
        # OpenSSL loads these, and under them one signature (or one in eight) verifies every
        # message: a log that published one could later disown any checkpoint it signed.
        raise CheckpointError("verifier key is a point of small order, under which anyone can sign")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError as exc:
        raise CheckpointError("verifier key is not a valid Ed25519 public key") from exc
    if key_id(name, public_key).hex() != id_hex:
        raise CheckpointError(f"verifier key id {id_hex} does not match name {shown(name)} and key")
    return VerifierKey(name, bytes.fromhex(id_hex), public_key)


def _check_text(text: str, what: str) -> None:
    # signed-note §Format: valid UTF-8 and no ASCII control characters other than newline.
    control = _CONTROL.search(text)
    if control:
        raise CheckpointError(
            f"malformed note: {what} contains control character U+{ord(control.group()):04X}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointError(f"malformed note: {what} is not valid Unicode") from exc


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` with an Ed25519 key named ``name``; return the signed note.

    The text must be non-empty, end with a newline and hold no control characters other
    than newlines. Ed25519 is deterministic: the same inputs give the same note.

    Raises:
        CheckpointError: if the text or the name breaks the signed-note format.
    """
    check_key_name(name)
    if not text.endswith("\n"):
        raise CheckpointError("malformed note: text must end with a newline")
    _check_text(text, "text")
    public_key = private_key.public_key()
    signature = private_key.sign(text.encode("utf-8"))
    encoded = base64.b64encode(key_id(name, public_key) + signature).decode("ascii")
    return f"{text}\n{_SIGNATURE_PREFIX}{name} {encoded}\n"


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its (unverified) signature lines.

    The text ends at the last blank line (signed-note §Format) and keeps its final newline.

    Raises:
        CheckpointError: ``malformed note: ...`` for any break of the format: control
            characters, no blank line, a signature block not ending in a newline, a line not
            starting with the em dash, a bad key name or base64, fewer than 5 signature
            bytes, or more than :data:`MAX_SIGNATURES` lines.
    """
    if not isinstance(note, str):
        raise CheckpointError(f"malformed note: expected text, got {type(note).__name__}")
    _check_text(note, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise CheckpointError("malformed note: the signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError(f"malformed note: signature line {number} does not start with '\u2014 '")
        name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space:
            raise CheckpointError(f"malformed note: signature line {number} has no signature")
        try:
            check_key_name(name)
            raw = _canonical_b64decode(encoded)
        except (CheckpointError, binascii.Error, ValueError) as exc:
            raise CheckpointError(
                f"malformed note: signature line {number} has a bad key name or base64"
            ) from exc
        if len(raw) < 5:
            raise CheckpointError(f"malformed note: signature line {number} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str, key: VerifierKey) -> str:
    """Verify ``note`` against ``key`` and return its text (with its final newline).

    Signatures by other keys are ignored (signed-note §Signatures: verifiers MUST ignore
    unknown keys); a signature whose name and key id match ``key`` must verify, else the
    whole note is rejected.

    Raises:
        CheckpointError: ``malformed note: ...`` (see :func:`split_note`), ``unknown key:
            ...`` when no signature line is by ``key``, or ``bad signature: ...``.
    """
    text, signatures = split_note(note)
    matching = [s for s in signatures if s.name == key.name and s.key_id == key.key_id]
    if not matching:
        found = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise CheckpointError(
            f"unknown key: the note is signed by {found}, not by {key.name}+{key.key_id.hex()}"
        )
    message = text.encode("utf-8")
    for signature in matching:
        try:
            key.public_key.verify(signature.signature, message)
        except InvalidSignature as exc:
            raise CheckpointError(
                f"bad signature: the signature by {key.name}+{key.key_id.hex()} does not "
                "verify over the note text"
            ) from exc
    return text
