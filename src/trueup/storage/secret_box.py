"""Secrets the server must read back, kept in the database sealed with AES-256-GCM.

A webhook endpoint's ``whsec_…`` secret signs every delivery, so it cannot be stored as a hash
the way an API key is; and the reply of an endpoint's creation, kept under its
``Idempotency-Key`` so that a retry gets the same endpoint, holds that secret too. Both are
stored sealed under a key derived from the API key pepper (``<data dir>/key-pepper``, which
every process of one database already holds and which is checked against the database's): a
copy of the database alone (a backup, a dump, a replica) does not give anyone the secrets that
sign deliveries.

A sealed value is ``sealed:v1:`` and the URL-safe base64 of a random 12-byte nonce, the
ciphertext and its 16-byte tag. The associated data binds it to where it is kept (an endpoint's
id, a tenant's idempotency key), so a sealed value moved to another row does not open. A value
without the prefix is one an older Trueup stored in clear; :meth:`SecretBox.open` returns it as
it is, and the server seals those as it starts (:meth:`WebhookStore.seal_clear_secrets`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trueup.storage.errors import StorageError

__all__ = ["SEALED_PREFIX", "SecretBox", "SecretBoxError", "is_sealed", "required_box"]

SEALED_PREFIX = "sealed:v1:"
_NONCE_BYTES = 12
_KEY_LABEL = b"trueup sealed secrets v1"
"""What the pepper's HMAC is taken of to make the sealing key: a key of its own, never the
pepper itself, which hashes API keys."""


class SecretBoxError(StorageError):
    """A sealed value did not open: it was changed or moved, or this process has another key
    pepper than the one it was sealed with."""


def is_sealed(stored: str) -> bool:
    """Whether ``stored`` is a sealed value (not one kept in clear by an older Trueup)."""
    return stored.startswith(SEALED_PREFIX)


def required_box(box: SecretBox | None, what: str) -> SecretBox:
    """``box``, or a :class:`StorageError` saying that ``what`` needs the key pepper, which
    this process was not given (a store opened without the services)."""
    if box is None:
        raise StorageError(f"{what} are sealed with the key pepper, which this process was not given")
    return box


class SecretBox:
    """Seals and opens the secrets of one database, under a key derived from its pepper."""

    def __init__(self, pepper: bytes) -> None:
        key = hmac.new(pepper, _KEY_LABEL, hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, secret: str, context: str) -> str:
        """``secret`` sealed for the place ``context`` names (it must be named alike to open)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), context.encode("utf-8"))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, context: str) -> str:
        """The secret ``stored`` holds: opened if sealed, as it is if kept in clear.

        Raises :class:`SecretBoxError` when a sealed value does not open for ``context``."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, ValueError) as exc:
            raise SecretBoxError(
                f"a secret sealed in the database for {context} does not open with this process's "
                "key pepper: it was changed in the database, or key-pepper is not the one it was "
                "sealed with"
            ) from exc
        return plain.decode("utf-8")
