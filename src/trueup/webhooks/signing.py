"""Signing and verifying webhook deliveries (standard library only).

A delivery's body is the event envelope as JSON text, sent as it was stored, byte for byte.
Its signature is ``v1=`` + the lower-case hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed
with the endpoint's whole secret (``whsec_…``, UTF-8), where ``timestamp`` is the Unix time in
seconds of the attempt, sent as ``X-PacSpace-Timestamp``. For 24 hours after a secret is
rotated, ``X-PacSpace-Signature`` carries two signatures, ``v1=<new>, v1=<previous>``; a
receiver accepts the delivery when any one matches its secret. This is the scheme PacSpace's
SDK checks (``Webhooks.verify``); the vectors in ``tests/vectors/webhook_v1.json`` pin it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "EVENT_HEADER",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookVerificationError",
    "delivery_headers",
    "sign_payload",
    "signature_header",
    "verify_webhook",
]

SIGNATURE_HEADER = "X-PacSpace-Signature"
TIMESTAMP_HEADER = "X-PacSpace-Timestamp"
EVENT_HEADER = "X-Webhook-Event"
EVENT_ID_HEADER = "X-Event-ID"

_SCHEME = "v1="
_MILLISECONDS_FROM = 1_000_000_000_000  # a timestamp this large is in milliseconds


class WebhookVerificationError(ValueError):
    """A delivery failed a check; the message names the check (header, timestamp, signature)."""


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign_payload(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """``v1=`` + hex HMAC-SHA256(secret, ``"{timestamp}.{body}"``); ``timestamp`` in seconds."""
    message = str(timestamp).encode("utf-8") + b"." + _as_bytes(body)
    return _SCHEME + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes | str) -> str:
    """The ``X-PacSpace-Signature`` value: one signature per secret, current secret first."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign a delivery")
    return ", ".join(sign_payload(secret, timestamp, body) for secret in secrets)


def delivery_headers(
    secrets: Sequence[str], event_id: str, event_type: str, timestamp: int, body: bytes | str
) -> dict[str, str]:
    """Every header of one delivery attempt (``Content-Type`` included)."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(secrets, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        EVENT_HEADER: event_type,
        EVENT_ID_HEADER: event_id,
    }


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() != wanted:
            continue
        if isinstance(value, (list, tuple)):
            return str(value[0]) if value else None
        return None if value is None else str(value)
    return None


def verify_webhook(
    secret: str,
    headers: Mapping[str, Any],
    body: bytes | str,
    tolerance: int = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery and return its decoded envelope ``{id, event, timestamp, data}``.

    ``headers`` are the request's headers (any case); ``body`` the raw request body, exactly
    as received. The timestamp must be within ``tolerance`` seconds of ``now`` (default: the
    current time) in either direction, which bounds replays. Comparisons are constant-time.

    Raises :class:`WebhookVerificationError` naming the failed check.
    """
    if not secret:
        raise WebhookVerificationError("secret: is required (the whsec_… value shown once)")
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        raise WebhookVerificationError(f"{SIGNATURE_HEADER}: header is missing")
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not stamp:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER}: header is missing")
    stamp = stamp.strip()
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER}: must be Unix time in seconds, got {stamp[:40]!r}"
        ) from None
    seconds = timestamp // 1000 if abs(timestamp) >= _MILLISECONDS_FROM else timestamp
    current = time.time() if now is None else now
    age = abs(int(current) - seconds)
    if age > tolerance:
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER}: {age}s away from now, more than the {tolerance}s tolerance "
            "(a replay, or a clock out of sync)"
        )
    raw = _as_bytes(body)
    expected = sign_payload(secret, stamp, raw)
    candidates = [part.strip() for part in signature.split(",") if part.strip().startswith(_SCHEME)]
    if not candidates:
        raise WebhookVerificationError(f"{SIGNATURE_HEADER}: holds no v1= signature")
    # Check every candidate, so the time taken does not tell which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii", "replace"))
    if not matched:
        raise WebhookVerificationError(
            f"{SIGNATURE_HEADER}: no signature matches this secret and body "
            "(use the raw request body and the endpoint's current or previous secret)"
        )
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookVerificationError(f"body: is not JSON ({exc})") from exc
    if not isinstance(envelope, dict):
        raise WebhookVerificationError("body: must be a JSON object")
    return envelope
