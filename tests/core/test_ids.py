"""Identifier formats: request ids sort by acceptance time and stay valid record-id tokens."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trueup.core.ids import (
    MAX_ITEMS_CEILING,
    NO_LEAF,
    idempotency_key_value,
    new_request_id,
    parse_anchor_id,
    parse_record_id,
    random_token,
    record_id,
)

_MS = st.integers(min_value=0, max_value=(1 << 45) - 1)
_ENTROPY = st.binary(min_size=7, max_size=7)


@given(_MS, _MS, _ENTROPY, _ENTROPY)
def test_request_ids_sort_in_acceptance_order(a_ms: int, b_ms: int, a: bytes, b: bytes) -> None:
    first, second = new_request_id(a, a_ms), new_request_id(b, b_ms)
    if a_ms < b_ms:
        assert first < second
    elif a_ms > b_ms:
        assert first > second
    else:
        assert first[:13] == second[:13]


@given(_MS, _ENTROPY, st.integers(min_value=0, max_value=MAX_ITEMS_CEILING - 1))
def test_request_ids_make_parseable_record_ids(at_ms: int, entropy: bytes, index: int) -> None:
    request_id = new_request_id(entropy, at_ms)
    assert len(request_id) == 24
    assert request_id.startswith("req_")
    assert parse_record_id(record_id(request_id, index)) == (request_id, index)


def test_a_record_id_has_one_spelling() -> None:
    request_id = new_request_id(b"1234567", 1_764_000_000_000)
    token = request_id.removeprefix("req_")
    assert parse_record_id(f"rec_{token}_0") == (request_id, 0)
    assert parse_record_id(f"rec_{token}_10") == (request_id, 10)
    assert parse_record_id(f"rec_{token}_{MAX_ITEMS_CEILING - 1}") == (request_id, MAX_ITEMS_CEILING - 1)
    for other in (f"rec_{token}_00", f"rec_{token}_01", f"rec_{token}_+1", f"rec_{token}_{10**7}"):
        assert parse_record_id(other) is None, other


def test_an_anchor_id_beyond_64_bits_names_no_leaf_rather_than_being_malformed() -> None:
    assert parse_anchor_id("a_0") == 0
    assert parse_anchor_id(f"a_{2**63 - 2}") == 2**63 - 2
    assert parse_anchor_id("a_9223372036854775808") == NO_LEAF == 2**63 - 1
    assert parse_anchor_id("a_" + "9" * 40) == NO_LEAF
    for malformed in ("a_", "a_01", "a_-1", "a_1.0", "a_" + "9" * 41, "b_1"):
        assert parse_anchor_id(malformed) is None, malformed


def test_the_random_part_differs_within_one_millisecond() -> None:
    ids = {new_request_id(os.urandom(7), 1_764_000_000_000) for _ in range(1_000)}
    assert len(ids) == 1_000
    assert len({request_id[:13] for request_id in ids}) == 1


@pytest.mark.parametrize(
    ("entropy", "at_ms"), [(b"123456", 0), (b"12345678", 0), (b"1234567", -1), (b"1234567", 1 << 45)]
)
def test_request_id_inputs_are_checked(entropy: bytes, at_ms: int) -> None:
    with pytest.raises(ValueError, match=r"request id|at_ms"):
        new_request_id(entropy, at_ms)


_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"


@given(_MS, _ENTROPY)
def test_request_ids_spell_the_time_then_the_entropy(at_ms: int, entropy: bytes) -> None:
    # The spelling every stored id has: 9 sortable base32 characters of the time, most
    # significant first, then the first 11 characters of the entropy's random token.
    time_part = "".join(_SORTABLE[(at_ms >> shift) & 31] for shift in range(40, -1, -5))
    assert new_request_id(entropy, at_ms) == "req_" + time_part + random_token(entropy)[:11]


def test_request_ids_at_the_edges_of_their_inputs() -> None:
    assert new_request_id(bytes(7), 0) == "req_222222222aaaaaaaaaaa"
    assert new_request_id(b"\xff" * 7, (1 << 45) - 1) == "req_zzzzzzzzz77777777777"


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("k", "k"),
        ("retry-1 \t", "retry-1"),  # whitespace around a field value is not part of it
        (" a b ", "a b"),
        ("k" * 255, "k" * 255),
        ("caf\u00e9", "caf\u00e9"),  # printable; the client sends ASCII only, as HTTP carries it
        ("", None),
        ("   ", None),
        ("k" * 256, None),
        ("a\nb", None),
        ("a\x00b", None),
    ],
)
def test_an_idempotency_key_is_1_to_255_printable_characters_without_the_spaces_around(
    header: str, key: str | None
) -> None:
    assert idempotency_key_value(header) == key
