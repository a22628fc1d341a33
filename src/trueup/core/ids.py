"""Identifier formats: API keys, write requests, records and anchors.

Identifiers are generated from random bytes handed in by the caller (core reads no
randomness itself) and parsed strictly; a malformed id is simply "not found".
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

__all__ = [
    "MAX_ITEMS_CEILING",
    "NO_LEAF",
    "ApiKeyParts",
    "anchor_id",
    "format_api_key",
    "idempotency_key_value",
    "incident_id",
    "is_key_id",
    "new_key_id",
    "new_request_id",
    "parse_anchor_id",
    "parse_api_key",
    "parse_record_id",
    "random_token",
    "record_id",
]

_KEY_ID = r"[a-z2-7]{16}"  # 10 random bytes in random_token's alphabet: new_key_id
_API_KEY = re.compile(rf"^pk_(live|test)_({_KEY_ID})\.([A-Za-z0-9_-]{{43}})$")
# One spelling per record, as anchors. An item index has at most 7 digits (TRUEUP_MAX_ITEMS is
# at most MAX_ITEMS_CEILING); an anchor id, as many as a leaf index can have in 64 bits, and a
# longer one names no leaf (found nowhere, rather than malformed).
_RECORD = re.compile(r"^rec_([a-z2-7]{20})_(0|[1-9][0-9]{0,6})$")
_ANCHOR = re.compile(r"^a_(0|[1-9][0-9]{0,39})$")
MAX_ITEMS_CEILING = 1_000_000
"""The most items a write may be configured to take (``TRUEUP_MAX_ITEMS``)."""
NO_LEAF = 2**63 - 1
"""A leaf index no log reaches: what an anchor id beyond 64 bits stands for."""


@dataclass(frozen=True, slots=True)
class ApiKeyParts:
    """A syntactically valid API key split into its parts; ``secret`` is never stored."""

    env: str
    key_id: str
    secret: str


def random_token(entropy: bytes) -> str:
    """Lower-case base32 without padding: 5 bits a character, safe in URLs and paths."""
    return base64.b32encode(entropy).decode("ascii").rstrip("=").lower()


def new_key_id(entropy: bytes) -> str:
    """A 16-character public key id from 10 random bytes."""
    if len(entropy) != 10:
        raise ValueError("a key id takes 10 random bytes")
    return random_token(entropy)


def format_api_key(env: str, key_id: str, secret: bytes) -> str:
    """``pk_<env>_<id>.<secret>`` with a 32-byte secret in URL-safe base64 (43 characters)."""
    if env not in ("live", "test") or len(secret) != 32:
        raise ValueError("env must be live or test and the secret 32 bytes")
    encoded = base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")
    return f"pk_{env}_{key_id}.{encoded}"


def is_key_id(text: str) -> bool:
    """Whether ``text`` is a key id as :func:`new_key_id` makes them (the ``<id>`` of
    ``pk_live_<id>.<secret>``)."""
    return re.fullmatch(_KEY_ID, text) is not None


def parse_api_key(text: str) -> ApiKeyParts | None:
    """The parts of a well-formed key, or ``None``."""
    match = _API_KEY.fullmatch(text)
    if match is None:
        return None
    return ApiKeyParts(env=match.group(1), key_id=match.group(2), secret=match.group(3))


_SORTABLE_BASE32 = "234567abcdefghijklmnopqrstuvwxyz"
"""The characters of :func:`random_token` in ASCII order, so encoded numbers sort as numbers."""
_TOKEN_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # noqa: S105 - an alphabet, not a secret
"""The characters of :func:`random_token` in the order of their values (RFC 4648, lower case)."""
# Every 10-bit number as its two characters in either alphabet, for new_request_id.
_SORTABLE_PAIRS = tuple(a + b for a in _SORTABLE_BASE32 for b in _SORTABLE_BASE32)
_TOKEN_PAIRS = tuple(a + b for a in _TOKEN_BASE32 for b in _TOKEN_BASE32)


def new_request_id(entropy: bytes, at_ms: int) -> str:
    """``req_`` + 20 base32 characters: 9 for the acceptance time, 11 (55 bits) random.

    Ids of requests accepted one after another sort one after another, so the indexes keyed
    by request id grow at their right edge: a group commit or a seal touches a few pages of
    them instead of one page per request (and the pages it touches stay in cache).
    ``at_ms`` is milliseconds since the Unix epoch (45 bits last until the year 3084).
    """
    if len(entropy) != 7:
        raise ValueError("a request id takes 7 random bytes")
    if not 0 <= at_ms < 1 << 45:
        raise ValueError("at_ms is out of range")
    # Two characters at a time from tables, as this runs once per write request: the time in
    # the sortable alphabet, then the first 55 bits of the entropy as random_token writes them.
    pairs = _SORTABLE_PAIRS
    prefix = pairs[at_ms >> 35] + pairs[(at_ms >> 25) & 1023] + pairs[(at_ms >> 15) & 1023]
    prefix += pairs[(at_ms >> 5) & 1023] + _SORTABLE_BASE32[at_ms & 31]
    bits, tokens = int.from_bytes(entropy) >> 1, _TOKEN_PAIRS
    token = tokens[bits >> 45] + tokens[(bits >> 35) & 1023] + tokens[(bits >> 25) & 1023]
    token += tokens[(bits >> 15) & 1023] + tokens[(bits >> 5) & 1023] + _TOKEN_BASE32[bits & 31]
    return "req_" + prefix + token


def record_id(request_id: str, index: int) -> str:
    """The record id of item ``index`` of a write request: ``rec_<request token>_<index>``.

    Known from the moment of acceptance and derived, so no extra index is needed to find it.
    """
    return f"rec_{request_id.removeprefix('req_')}_{index}"


def parse_record_id(text: str) -> tuple[str, int] | None:
    """``(request_id, item_index)`` of a record id, or ``None`` when malformed."""
    match = _RECORD.fullmatch(text)
    if match is None:
        return None
    return "req_" + match.group(1), int(match.group(2))


def anchor_id(leaf_index: int) -> str:
    """``a_<leaf index>``: the id of one sealed delta."""
    return f"a_{leaf_index}"


def parse_anchor_id(text: str) -> int | None:
    """The leaf index of an anchor id, or ``None`` when malformed; :data:`NO_LEAF` for one
    beyond what a 64-bit leaf index holds."""
    match = _ANCHOR.fullmatch(text)
    return None if match is None else min(int(match.group(1)), NO_LEAF)


def incident_id(entropy: bytes) -> str:
    """``err_`` and the hex of ``entropy`` (8 bytes: 16 digits): the id by which a 500's or a
    failed group commit's reply and the server's log line name one failure."""
    return "err_" + entropy.hex()


def idempotency_key_value(header: str) -> str | None:
    """The ``Idempotency-Key`` a header value names, or ``None`` when it names none the API
    takes (1-255 printable characters). RFC 9110 §5.5: whitespace around a field value is not
    part of it (a parser leaves it at the end), so a retry whose key a client or proxy sent with
    a space after it is the same key. The server reads the header with this, and the Python
    client checks a key with it before sending one."""
    key = header.strip(" \t")
    return key if 1 <= len(key) <= 255 and key.isprintable() else None
