"""Signed tree heads as C2SP checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is a signed note (:mod:`trueup.proof.note`) whose text is::

    <origin>\\n
    <tree size, decimal>\\n
    <base64 of the 32-byte RFC 9162 root>\\n
    timestamp <unix time in milliseconds>\\n

The last line is our one extension line (tlog-checkpoint §Note text allows extension
lines): it dates the tree head for derive's ``verificationProof.timestamp``. Trueup writes no
other; a reader requires ``timestamp`` as the first and takes any further ones (non-empty, as
the spec requires) without reading them, as the spec lets a verifier do. The signing
time is passed in by the caller; nothing here reads a clock. Key files are read and
written by the caller too; this module only converts keys to and from bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trueup.proof.errors import CheckpointError, shown
from trueup.proof.merkle.hashing import HASH_SIZE
from trueup.proof.note import (
    VerifierKey,
    check_key_name,
    format_verifier_key,
    key_id,
    open_note,
    parse_verifier_key,
    sign_note,
    split_note,
)

__all__ = [
    "MAX_TREE_SIZE",
    "CheckpointSigner",
    "TreeHead",
    "checkpoint_body",
    "parse_checkpoint",
    "parse_checkpoint_body",
    "parse_verifier_key",
    "private_key_from_pem",
    "private_key_from_seed",
    "private_key_to_pem",
    "verify_checkpoint",
]

MAX_TREE_SIZE: Final = 2**64 - 1
"""Largest tree size a checkpoint may state (RFC 9162 sizes are uint64)."""

# tlog-checkpoint §Note text: "ASCII decimal ... with no leading zeroes". At most 20 digits
# (2**64 - 1 has 20): longer ones are refused before int() sees them, which raises its own
# ValueError past 4,300 digits.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_TIMESTAMP = re.compile(r"timestamp (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A tree head: ``size`` leaves, their RFC 9162 ``root`` (32 bytes), signed at ``timestamp_ms``.

    ``timestamp_ms`` is Unix time in milliseconds, as the sequencer passed it when sealing.

    Raises:
        CheckpointError: for a negative or too large size, a root that is not 32 bytes, or a
            negative timestamp.
    """

    size: int
    root: bytes
    timestamp_ms: int

    def __post_init__(self) -> None:
        """Check the ranges listed in the class docstring."""
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size must be an integer in [0, 2**64), got {shown(self.size)}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        if type(self.timestamp_ms) is not int or self.timestamp_ms < 0:
            raise CheckpointError(
                f"timestamp must be a non-negative integer of milliseconds, got {shown(self.timestamp_ms)}"
            )


def _check_origin(origin: str) -> None:
    # tlog-checkpoint §Note text: the origin MUST be non-empty; being a line of a signed
    # note it cannot hold a newline or another control character either.
    if not isinstance(origin, str) or not origin or any(char < " " for char in origin):
        raise CheckpointError(f"checkpoint origin must be a non-empty line, got {shown(origin)}")


def checkpoint_body(origin: str, head: TreeHead) -> str:
    """Return the checkpoint text (the part that is signed) for ``head`` of log ``origin``.

    Raises:
        CheckpointError: if ``origin`` is empty or holds a control character.
    """
    _check_origin(origin)
    root = base64.b64encode(head.root).decode("ascii")
    return f"{origin}\n{head.size}\n{root}\ntimestamp {head.timestamp_ms}\n"


def parse_checkpoint_body(text: str) -> tuple[str, TreeHead]:
    """Parse checkpoint text as :func:`checkpoint_body` writes it; return ``(origin, head)``.

    Strict: the size in decimal without leading zeros, the root as canonical base64 of 32
    bytes, and the ``timestamp <ms>`` extension line; after it, other extension lines (each
    non-empty) are allowed and ignored.

    Raises:
        CheckpointError: naming the line that is malformed.
    """
    if not text.endswith("\n"):
        raise CheckpointError("malformed checkpoint: text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 4:
        raise CheckpointError(
            f"malformed checkpoint: expected 4 lines (origin, size, root, timestamp), got {len(lines)}"
        )
    if "" in lines[4:]:
        raise CheckpointError("malformed checkpoint: an extension line must not be empty")
    origin, size_line, root_line, timestamp_line = lines[:4]
    _check_origin(origin)
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise CheckpointError(
            f"malformed checkpoint: size line {shown(size_line)} is not a decimal tree size "
            "without leading zeros"
        )
    try:
        root = base64.b64decode(root_line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"malformed checkpoint: root line {shown(root_line)} is not base64") from exc
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_line:
        raise CheckpointError(
            f"malformed checkpoint: root line {shown(root_line)} is not the base64 of a {HASH_SIZE}-byte hash"
        )
    match = _TIMESTAMP.fullmatch(timestamp_line)
    if not match:
        raise CheckpointError(
            f"malformed checkpoint: expected 'timestamp <milliseconds>', got {shown(timestamp_line)}"
        )
    return origin, TreeHead(size=int(size_line), root=root, timestamp_ms=int(match.group(1)))


def parse_checkpoint(note_text: str) -> tuple[str, TreeHead]:
    """Parse a signed checkpoint WITHOUT checking any signature; return ``(origin, head)``.

    For display and routing only; use :func:`verify_checkpoint` before trusting the head.

    Raises:
        CheckpointError: if the note or the checkpoint text is malformed.
    """
    text, _ = split_note(note_text)
    return parse_checkpoint_body(text)


def verify_checkpoint(
    note_text: str, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> TreeHead:
    """Verify a signed checkpoint against a trusted verifier key; return its tree head.

    ``verifier_key`` is the ``name+keyid+key`` text (or its parsed form). The note must
    carry a valid signature by that key name and key id; if ``origin`` is given, the
    checkpoint's origin line must equal it.

    Raises:
        CheckpointError: with the failed check: a malformed verifier key, ``malformed
            note``, ``unknown key`` (no signature by that key), ``bad signature``,
            ``malformed checkpoint`` (size, root or timestamp line), or an origin mismatch.
    """
    key = verifier_key if isinstance(verifier_key, VerifierKey) else parse_verifier_key(verifier_key)
    text = open_note(note_text, key)
    found_origin, head = parse_checkpoint_body(text)
    if origin is not None and found_origin != origin:
        raise CheckpointError(
            f"checkpoint origin {shown(found_origin)} is not the expected origin {shown(origin)}"
        )
    return head


class CheckpointSigner:
    """Signs tree heads as checkpoints with one Ed25519 key under one key name.

    The key name is the ``<key name>`` of the signature line and of the verifier key;
    C2SP recommends it equal the checkpoint origin (the server's log name).
    """

    __slots__ = ("_key_id", "_name", "_private_key", "_public_key")

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        """Create a signer.

        Raises:
            CheckpointError: if ``name`` is not a valid signed-note key name.
        """
        check_key_name(name)
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._name = name
        self._key_id = key_id(name, self._public_key)

    @property
    def name(self) -> str:
        """The key name written on signature lines."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key id of this name and key."""
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key that verifies this signer's checkpoints."""
        return self._public_key

    def sign(self, origin: str, head: TreeHead) -> str:
        """Return the signed checkpoint note for ``head`` of log ``origin`` (deterministic).

        Raises:
            CheckpointError: if ``origin`` is empty or holds a control character.
        """
        return sign_note(checkpoint_body(origin, head), self._name, self._private_key)

    def verifier_key(self) -> str:
        """Return the verifier key text ``name+<hex key id>+<base64(0x01 || key)>`` to publish."""
        return format_verifier_key(self._name, self._public_key)

    def __repr__(self) -> str:
        """Show the key name and id, never the private key."""
        return f"CheckpointSigner(name={self._name!r}, key_id={self._key_id.hex()})"


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """Return the Ed25519 private key of a 32-byte seed (RFC 8032 §5.1.5).

    Raises:
        CheckpointError: if ``seed`` is not 32 bytes.
    """
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise CheckpointError("an Ed25519 seed must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    """Return the key as unencrypted PKCS #8 PEM (the caller writes it with mode 0600)."""
    return private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS #8 PEM Ed25519 private key.

    Raises:
        CheckpointError: if the data is not PEM, is encrypted, or is not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CheckpointError("signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError("signing key is a PEM private key, but not an Ed25519 one")
    return key
