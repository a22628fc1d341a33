"""Idempotency keys: what a request with an ``Idempotency-Key`` claims, the reply stored under
the key, and the replay of that reply to a repeat of the request."""

from __future__ import annotations

from dataclasses import dataclass

from trueup.core.errors import IdempotencyMismatchError
from trueup.core.json_text import quoted
from trueup.storage.engine import Tx

__all__ = ["IdempotencyClaim", "StoredResponse", "replay"]


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The ``Idempotency-Key`` header of a request and a hash of what it asked for."""

    key: str
    route: str
    body_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str


def replay(tx: Tx, tenant_id: str, claim: IdempotencyClaim) -> StoredResponse | None:
    """The reply stored under ``claim``'s key, or ``None``; a 409 when the key was used for
    another request (route or body)."""
    row = tx.one(
        """SELECT route, body_hash, status_code, response FROM idempotency_keys
           WHERE tenant_id = ? AND idem_key = ?""",
        (tenant_id, claim.key),
    )
    if row is None:
        return None
    if row[0] != claim.route or bytes(row[1]) != claim.body_hash:
        raise IdempotencyMismatchError(
            f"Idempotency-Key {quoted(claim.key)} was already used with a different request; "
            "use a new key for a new request"
        )
    return StoredResponse(status_code=int(row[2]), body=str(row[3]))
