"""The canonical leaf: fixed vectors (tests/vectors/leaf_v1.json) and strict decoding."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from trueup.proof import (
    LeafEncodingError,
    LeafFields,
    canonical_json,
    decode_leaf,
    encode_leaf,
    format_occurred_at,
    leaf_bytes,
    leaf_fields_from_json,
    leaf_fields_to_json,
    leaf_hash,
    metadata_digest,
)

from .reference import load_vector

VECTORS = load_vector("leaf_v1.json")["vectors"]


def fields_of(vector: dict[str, Any]) -> LeafFields:
    f = vector["fields"]
    return LeafFields(
        tenant=f["tenant"],
        customer_id=f["customerId"],
        key=f["key"],
        delta=f["delta"],
        occurred_at=f["occurredAt"],
        metadata_digest=f["metadataDigest"],
        salt=bytes.fromhex(f["salt"]),
    )


GOOD = fields_of(VECTORS[0])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_leaf_vector_encodes_to_its_bytes_and_hash(vector: dict[str, Any]) -> None:
    fields = fields_of(vector)
    leaf = encode_leaf(fields)
    assert leaf == bytes.fromhex(vector["leafBytes"])
    assert leaf == vector["leafText"].encode("utf-8")
    assert leaf_hash(leaf).hex() == vector["leafHash"]
    assert leaf == canonical_json(leaf_fields_to_json(fields)) == rfc8785.dumps(leaf_fields_to_json(fields))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_leaf_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    assert decode_leaf(bytes.fromhex(vector["leafBytes"])) == fields_of(vector)
    assert leaf_fields_from_json(leaf_fields_to_json(fields_of(vector))) == fields_of(vector)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_leaf_vector_metadata_digest_is_the_hash_of_its_canonical_json(vector: dict[str, Any]) -> None:
    assert canonical_json(vector["metadata"] or {}).decode("utf-8") == vector["metadataCanonical"]
    assert metadata_digest(vector["metadata"]) == vector["fields"]["metadataDigest"]


def test_leaf_members_are_in_rfc8785_order() -> None:
    text = encode_leaf(GOOD).decode()
    names = ["customerId", "delta", "key", "metadataDigest", "occurredAt", "salt", "tenant", "v"]
    positions = [text.index(f'"{name}":') for name in names]
    assert positions == sorted(positions)
    assert text.endswith(',"v":1}')


def test_absent_and_empty_metadata_have_the_same_digest() -> None:
    assert (
        metadata_digest(None)
        == metadata_digest({})
        == ("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    )


def test_occurred_at_is_formatted_in_utc_with_microseconds() -> None:
    moment = datetime(2026, 2, 10, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert format_occurred_at(moment) == "2026-02-10T14:30:00.000000Z"
    with pytest.raises(LeafEncodingError, match="naive datetime"):
        format_occurred_at(datetime(2026, 2, 10))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant": 5}, r"^leaf\.tenant: must be a string, got int$"),
        ({"customer_id": None}, r"^leaf\.customerId: must be a string, got NoneType$"),
        ({"delta": True}, r"^leaf\.delta: must be an integer, got bool$"),
        ({"delta": 1.0}, r"^leaf\.delta: must be an integer, got float$"),
        ({"delta": 2**53}, r"^leaf\.delta: 9007199254740992 is outside the I-JSON range"),
        ({"occurred_at": "2026-02-10T14:30:00Z"}, r"^leaf\.occurredAt: must be RFC 3339 UTC"),
        ({"occurred_at": "2026-02-10T14:30:00.000000+00:00"}, r"^leaf\.occurredAt: must be"),
        ({"occurred_at": "2026-02-30T14:30:00.000000Z"}, r"is not a valid date and time$"),
        ({"occurred_at": "2026-02-10T14:30:00.00000\u0661Z"}, r"^leaf\.occurredAt: must be RFC 3339"),
        ({"occurred_at": "2026-02-10T24:00:00.000000Z"}, r"is not a valid date and time$"),
        ({"metadata_digest": "AB" * 32}, r"^leaf\.metadataDigest: must be 64 lower-case hex"),
        ({"salt": b"\x00" * 15}, r"^leaf\.salt: must be 16 bytes, got 15 bytes$"),
        ({"salt": "00" * 16}, r"^leaf\.salt: must be 16 bytes, got str$"),
    ],
)
def test_invalid_fields_are_rejected_naming_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        dataclasses.replace(GOOD, **change)  # type: ignore[arg-type]


def test_a_lone_surrogate_in_a_text_field_is_named() -> None:
    with pytest.raises(LeafEncodingError, match=r"^leaf\.key: contains a lone surrogate"):
        encode_leaf(dataclasses.replace(GOOD, key="bad\udc00"))


def test_leaf_fields_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GOOD.delta = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (b"\xff", r"^leaf: not UTF-8"),
        (b"{", r"^leaf: not JSON"),
        (b"[]", r"^leaf: must be a JSON object, got list$"),
        (b'{"v":1}', r"^leaf: missing customerId, delta, key, metadataDigest, occurredAt, salt, tenant$"),
        (b'{"delta":1.5}', r"^leaf: non-integer number 1.5"),
        (b'{"delta":NaN}', r"^leaf: NaN is not JSON$"),
        (b'{"v":1,"v":1}', r"^leaf: duplicate member 'v'$"),
    ],
)
def test_malformed_leaf_bytes_are_rejected(leaf: bytes, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        decode_leaf(leaf)


def _mutated(**changes: object) -> bytes:
    obj: dict[str, object] = dict(leaf_fields_to_json(GOOD))
    obj.update(changes)
    return rfc8785.dumps(obj)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (_mutated(v=2), r"^leaf\.v: must be 1, got 2$"),
        (_mutated(v=True), r"^leaf\.v: must be 1, got True$"),
        (_mutated(extra="x"), r"^leaf: unexpected 'extra'$"),
        (_mutated(salt="00" * 15), r"^leaf\.salt: must be 32 lower-case hex digits"),
        (_mutated(salt="AA" * 16), r"^leaf\.salt: must be 32 lower-case hex digits"),
        (_mutated(delta="5"), r"^leaf\.delta: must be an integer, got str$"),
        (encode_leaf(GOOD).replace(b'"v":1', b'"v": 1'), r"^leaf: bytes are not in RFC 8785 canonical form$"),
        (encode_leaf(GOOD).replace(b"cust_42", b"cust\\u005f42"), r"^leaf: bytes are not in RFC 8785"),
        (b'{"v":1,' + encode_leaf(GOOD)[1:-7] + b"}", r"^leaf: bytes are not in RFC 8785"),
    ],
)
def test_leaf_bytes_must_be_exactly_what_encode_leaf_writes(leaf: bytes, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        decode_leaf(leaf)


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    tenant=text,
    customer_id=text,
    key=text,
    delta=st.integers(-(2**53) + 1, 2**53 - 1),
    moment=st.datetimes(timezones=st.just(UTC)),
    digest=st.binary(min_size=32, max_size=32),
    salt=st.binary(min_size=16, max_size=16),
)
def test_any_leaf_round_trips_and_matches_the_rfc8785_package(
    tenant: str,
    customer_id: str,
    key: str,
    delta: int,
    moment: datetime,
    digest: bytes,
    salt: bytes,
) -> None:
    fields = LeafFields(
        tenant=tenant,
        customer_id=customer_id,
        key=key,
        delta=delta,
        occurred_at=format_occurred_at(moment),
        metadata_digest=digest.hex(),
        salt=salt,
    )
    leaf = encode_leaf(fields)
    assert leaf == rfc8785.dumps(leaf_fields_to_json(fields))
    assert decode_leaf(leaf) == fields


@pytest.mark.parametrize("delta", [2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 2**63])
def test_the_sequencers_fast_encoding_agrees_with_encode_leaf_on_the_amount_range(delta: int) -> None:
    fields = fields_of(VECTORS[0])
    args = (fields.tenant, fields.customer_id, fields.key, delta, fields.occurred_at, fields.metadata_digest)
    if abs(delta) <= 2**53 - 1:
        assert leaf_bytes(*args, fields.salt) == encode_leaf(replace(fields, delta=delta))
        return
    with pytest.raises(LeafEncodingError, match=r"^leaf\.delta: -?\d+ is outside the I-JSON range"):
        leaf_bytes(*args, fields.salt)
    with pytest.raises(LeafEncodingError, match=r"^leaf\.delta: -?\d+ is outside the I-JSON range"):
        encode_leaf(replace(fields, delta=delta))
