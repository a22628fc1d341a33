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

from trueup.proof import CheckpointSigner
from trueup.service.files import SecretFileError, write_private_file

__all__ = ["SigningKeyError", "load_or_create_signer", "load_signer"]


class SigningKeyError(SecretFileError):
    """The signing key file is missing, unreadable, or not an Ed25519 PKCS#8 PEM key."""


def load_signer(path: Path, origin: str) -> CheckpointSigner:
    """The signer for ``origin`` whose PKCS#8 PEM key is at ``path``; it must exist.

    Raises:
        SigningKeyError: naming the path and what is wrong with it.
    """
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path}") from None
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"cannot read the signing key at {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key")
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
