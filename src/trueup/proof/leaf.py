"""The canonical log leaf (DESIGN.md §3): what exactly gets hashed for one sealed delta.

Leaf bytes are the RFC 8785 canonical JSON of::

    {"v": 1, "tenant": ..., "customerId": ..., "key": ..., "delta": ...,
     "occurredAt": ..., "metadataDigest": ..., "salt": ...}

with members in RFC 8785 order (``customerId, delta, key, metadataDigest, occurredAt,
salt, tenant, v``). The 16-byte random salt, written as 32 lower-case hex digits, is stored
but never published: without it a root or proof reveals nothing about the delta, even to
someone guessing its fields. The leaf hash is ``SHA-256(0x00 || leaf bytes)`` (RFC 9162).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, NoReturn

from trueup.proof.canonical import MAX_SAFE_INTEGER, JSONValue, canonical_json, json_string, unique_members
from trueup.proof.errors import LeafEncodingError, shown

__all__ = [
    "LEAF_VERSION",
    "SALT_SIZE",
    "LeafFields",
    "decode_leaf",
    "encode_leaf",
    "format_occurred_at",
    "leaf_bytes",
    "leaf_fields_from_json",
    "leaf_fields_to_json",
    "metadata_digest",
]

LEAF_VERSION: Final = 1
"""Value of the ``v`` member of every leaf this code writes and accepts."""

SALT_SIZE: Final = 16
"""Salt length in bytes."""

# RFC 3339 §5.6 date-time, restricted to one spelling per instant: UTC ("Z"), and always
# exactly six fractional digits, so equal instants give equal leaf bytes.
_OCCURRED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_HEX_SALT = re.compile(r"[0-9a-f]{32}")
_JSON_KEYS: Final = frozenset(
    {"v", "tenant", "customerId", "key", "delta", "occurredAt", "metadataDigest", "salt"}
)


def _type_name(value: object) -> str:
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class LeafFields:
    """The fields of one leaf, validated on construction.

    Attributes:
        tenant: id of the tenant that owns the delta.
        customer_id: the customer (``accountId``/``customerId``) the delta applies to.
        key: the item's idempotency key, unique per tenant.
        delta: the signed amount in minor units; an int within ``±(2**53 - 1)`` (I-JSON).
        occurred_at: RFC 3339 UTC time with exactly six fractional digits, e.g.
            ``"2026-02-10T14:30:00.000000Z"`` (see :func:`format_occurred_at`).
        metadata_digest: lower-case hex SHA-256 of the canonical metadata
            (see :func:`metadata_digest`).
        salt: 16 random bytes, chosen by the caller when the delta is accepted.

    Raises:
        LeafEncodingError: naming the first field (by its JSON name) that is invalid.
    """

    tenant: str
    customer_id: str
    key: str
    delta: int
    occurred_at: str
    metadata_digest: str
    salt: bytes

    def __post_init__(self) -> None:
        """Check every field's type and format (see the class docstring)."""
        # Exact-type fast paths first: a leaf is built for every sealed delta.
        for name, value in (
            ("tenant", self.tenant),
            ("customerId", self.customer_id),
            ("key", self.key),
        ):
            if type(value) is not str and not isinstance(value, str):
                raise LeafEncodingError(f"leaf.{name}: must be a string, got {_type_name(value)}")
        delta = self.delta
        if type(delta) is not int and (not isinstance(delta, int) or isinstance(delta, bool)):
            raise LeafEncodingError(f"leaf.delta: must be an integer, got {_type_name(delta)}")
        if not -MAX_SAFE_INTEGER <= delta <= MAX_SAFE_INTEGER:
            raise LeafEncodingError(f"leaf.delta: {delta} is outside the I-JSON range ±(2**53 - 1)")
        problem = _text_problem(self.occurred_at, _occurred_at_problem)
        if problem:
            raise LeafEncodingError(f"leaf.occurredAt: {problem}")
        problem = _text_problem(self.metadata_digest, _digest_problem)
        if problem:
            raise LeafEncodingError(f"leaf.metadataDigest: {problem}")
        salt = self.salt
        if type(salt) is not bytes or len(salt) != SALT_SIZE:
            got = f"{len(salt)} bytes" if isinstance(salt, bytes) else _type_name(salt)
            raise LeafEncodingError(f"leaf.salt: must be {SALT_SIZE} bytes, got {got}")


def _text_problem(value: object, check: Callable[[str], str | None]) -> str | None:
    if type(value) is not str:
        return f"must be a string, got {_type_name(value)}"
    return check(value)


# Memoised: the same time and the same (often empty-metadata) digest recur across a batch.
@lru_cache(maxsize=4096)
def _occurred_at_problem(value: str) -> str | None:
    if not _OCCURRED_AT.fullmatch(value):
        return (
            "must be RFC 3339 UTC with six fractional digits like "
            f"2026-02-10T14:30:00.000000Z, got {shown(value)}"
        )
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return f"{shown(value)} is not a valid date and time"
    return None


@lru_cache(maxsize=4096)
def _digest_problem(value: str) -> str | None:
    if not _HEX_DIGEST.fullmatch(value):
        return f"must be 64 lower-case hex digits, got {shown(value)}"
    return None


def format_occurred_at(moment: datetime) -> str:
    """Return the leaf spelling of an aware datetime: UTC, microseconds, ``Z``.

    Example: ``2026-02-10T14:30:00.000000Z``.

    Raises:
        LeafEncodingError: if ``moment`` is naive (it names no instant).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise LeafEncodingError("leaf.occurredAt: a naive datetime names no instant")
    u = moment.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:"
        f"{u.second:02d}.{u.microsecond:06d}Z"
    )


def encode_leaf(fields: LeafFields) -> bytes:
    """Return the leaf bytes: RFC 8785 canonical JSON of the fields with ``"v": 1``.

    Equal to ``canonical_json(leaf_fields_to_json(fields))``, written directly because the
    member order is fixed (RFC 8785 §3.2.3) and the hex and time fields need no escaping.

    Raises:
        LeafEncodingError: if a string field holds a lone surrogate (not valid Unicode).
    """
    return leaf_bytes(
        fields.tenant,
        fields.customer_id,
        fields.key,
        fields.delta,
        fields.occurred_at,
        fields.metadata_digest,
        fields.salt,
    )


def leaf_bytes(
    tenant: str,
    customer_id: str,
    key: str,
    delta: int,
    occurred_at: str,
    metadata_digest: str,
    salt: bytes,
) -> bytes:
    """:func:`encode_leaf` of fields the caller already holds in their checked form.

    For the sequencer, which encodes a thousand stored (hence validated) deltas per seal; it
    skips :class:`LeafFields`' checks but two, not the encoding. Raises
    :class:`LeafEncodingError`, like :func:`encode_leaf`, for a lone surrogate and for an
    amount outside the I-JSON range (stored under a looser limit: a leaf no verifier would
    accept).
    """
    if not -MAX_SAFE_INTEGER <= delta <= MAX_SAFE_INTEGER:
        raise LeafEncodingError(f"leaf.delta: {delta} is outside the I-JSON range ±(2**53 - 1)")
    text = (
        f'{{"customerId":{json_string(customer_id)},"delta":{delta},'
        f'"key":{json_string(key)},"metadataDigest":"{metadata_digest}",'
        f'"occurredAt":"{occurred_at}","salt":"{salt.hex()}",'
        f'"tenant":{json_string(tenant)},"v":1}}'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Only the free-text fields can hold a lone surrogate; name the one that does.
        for name, value in (("customerId", customer_id), ("key", key), ("tenant", tenant)):
            if not _is_unicode(value):
                raise LeafEncodingError(
                    f"leaf.{name}: contains a lone surrogate, which is not valid Unicode"
                ) from exc
        raise LeafEncodingError("leaf: not valid Unicode") from exc  # pragma: no cover


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def leaf_fields_to_json(fields: LeafFields) -> dict[str, JSONValue]:
    """Return the leaf as its JSON object (salt as 32 lower-case hex digits, ``"v": 1``).

    This is the ``leaf`` member of a proof bundle; :func:`leaf_fields_from_json` inverts it.
    """
    return {
        "v": LEAF_VERSION,
        "tenant": fields.tenant,
        "customerId": fields.customer_id,
        "key": fields.key,
        "delta": fields.delta,
        "occurredAt": fields.occurred_at,
        "metadataDigest": fields.metadata_digest,
        "salt": fields.salt.hex(),
    }


def leaf_fields_from_json(obj: object) -> LeafFields:
    """Parse a leaf JSON object (as :func:`leaf_fields_to_json` writes it), strictly.

    Requires exactly the eight members, ``"v": 1``, and the types and formats of
    :class:`LeafFields`; the salt must be 32 lower-case hex digits.

    Raises:
        LeafEncodingError: naming the missing, unexpected or invalid member.
    """
    if not isinstance(obj, Mapping):
        raise LeafEncodingError(f"leaf: must be a JSON object, got {_type_name(obj)}")
    names = set(obj)
    if names != _JSON_KEYS:
        missing = sorted(_JSON_KEYS - names)
        extra = sorted(shown(name) for name in names - _JSON_KEYS)
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(extra)}"] if extra else []
        raise LeafEncodingError(f"leaf: {'; '.join(parts)}")
    version = obj["v"]
    if type(version) is not int or version != LEAF_VERSION:
        raise LeafEncodingError(f"leaf.v: must be {LEAF_VERSION}, got {shown(version)}")
    salt = obj["salt"]
    if not isinstance(salt, str) or not _HEX_SALT.fullmatch(salt):
        raise LeafEncodingError(f"leaf.salt: must be 32 lower-case hex digits, got {shown(salt)}")
    return LeafFields(
        tenant=obj["tenant"],
        customer_id=obj["customerId"],
        key=obj["key"],
        delta=obj["delta"],
        occurred_at=obj["occurredAt"],
        metadata_digest=obj["metadataDigest"],
        salt=bytes.fromhex(salt),
    )


def _reject_float(text: str) -> NoReturn:
    raise LeafEncodingError(f"leaf: non-integer number {text} (leaves hold integers only)")


def _reject_constant(text: str) -> NoReturn:
    raise LeafEncodingError(f"leaf: {text} is not JSON")


def decode_leaf(data: bytes) -> LeafFields:
    """Parse leaf bytes back into fields, accepting only what :func:`encode_leaf` writes.

    Checks: valid UTF-8 JSON object, no duplicate members, no non-integer numbers, the
    members and formats :func:`leaf_fields_from_json` requires, and finally that encoding
    the fields again gives exactly ``data`` (so there is one byte string per leaf).

    Raises:
        LeafEncodingError: naming the failed check.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LeafEncodingError(f"leaf: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        obj = json.loads(
            text,
            object_pairs_hook=unique_members("leaf", LeafEncodingError),
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise LeafEncodingError(f"leaf: not JSON ({exc.msg} at character {exc.pos})") from exc
    fields = leaf_fields_from_json(obj)
    if encode_leaf(fields) != data:
        raise LeafEncodingError("leaf: bytes are not in RFC 8785 canonical form")
    return fields


def metadata_digest(metadata: Mapping[str, JSONValue] | None) -> str:
    """Return the lower-case hex SHA-256 of the canonical JSON of ``metadata`` (``{}`` if None).

    Raises:
        LeafEncodingError: if the metadata is not I-JSON (see
            :func:`~trueup.proof.canonical.canonical_json`).
    """
    value: dict[str, JSONValue] = dict(metadata) if metadata else {}
    return hashlib.sha256(canonical_json(value)).hexdigest()
