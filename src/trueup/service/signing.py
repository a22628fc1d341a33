"""The log's Ed25519 signing key: created on first start (0600) or loaded from a path.

Policy: signing fails closed. If the key cannot be read, the server does not start; a seal
is never stored without its signature.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trueup.proof import CheckpointSigner, ProofError, parse_checkpoint, verify_checkpoint
from trueup.service.files import SecretFileError, write_private_file

__all__ = ["SigningKeyError", "check_log_signer", "load_or_create_signer", "load_signer"]


_RESTORE_KEY = "restore the key file from a backup of this data directory"
"""What to do about a key file that is there but damaged: a key made anew would sign another log."""


class SigningKeyError(SecretFileError):
    """The signing key file is missing, unreadable, or not an Ed25519 PKCS#8 PEM key."""


def load_signer(path: Path, origin: str) -> CheckpointSigner:
    """The signer for ``origin`` whose PKCS#8 PEM key is at ``path``; it must exist.

    Raises:
        SigningKeyError: naming the path and what is wrong with it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path}") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key at {path}: {exc}") from None
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # cryptography's own message is a paragraph with a link; what is wrong is the file.
        what = (
            "the file is empty"
            if not data.strip()
            else f"its {len(data)} bytes are not an unencrypted PEM private key (cut short, or another file)"
        )
        raise SigningKeyError(f"cannot read the signing key at {path}: {what}; {_RESTORE_KEY}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key; {_RESTORE_KEY}")
    return CheckpointSigner(loaded, origin)


def load_or_create_signer(path: Path, origin: str) -> CheckpointSigner:
    """The signer for ``origin`` whose PKCS#8 PEM key is at ``path`` (created if missing)."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):  # another process created it first
            write_private_file(path, pem)
    return load_signer(path, origin)


def check_log_signer(signer: CheckpointSigner, path: Path, origin: str, checkpoint: str, size: int) -> None:
    """Refuse ``signer`` (the key at ``path``, named ``origin``) unless it signed ``checkpoint``,
    the log's newest (of ``size`` leaves): every process and command of one log needs its key
    file and origin.

    Raises:
        SigningKeyError: saying which: the checkpoints name another origin, or another key signed.
    """
    try:
        signed_origin, _ = parse_checkpoint(checkpoint)
    except ProofError:
        signed_origin = origin  # verify_checkpoint below names what is wrong with it
    if signed_origin != origin:
        raise SigningKeyError(
            f"the signing key at {path} with origin {origin!r} did not sign this log's newest checkpoint: "
            f"its checkpoints name the origin {signed_origin!r} (set TRUEUP_LOG_ORIGIN={signed_origin}: "
            "every process and command of one log needs the same origin)"
        )
    try:
        verify_checkpoint(checkpoint, signer.verifier_key(), origin=origin)
    except ProofError as exc:
        raise SigningKeyError(
            f"the signing key at {path} with origin {origin!r} did not sign this log's newest checkpoint "
            f"(tree size {size}: {exc}); every process of one log needs its key file and origin"
        ) from None
