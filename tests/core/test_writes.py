"""The writes body: every rule of DESIGN.md §2.1 names its field."""

from __future__ import annotations

import json
import re
import sys
import threading

import pytest

from trueup.core import strict_json
from trueup.core.deltas import DeltaLimits
from trueup.core.errors import ValidationError
from trueup.core.strict_json import loads_strict
from trueup.core.writes import parse_writes_body

LIMITS = DeltaLimits()


def item(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"key": "order-1", "accountId": "customer-001", "bits": 5}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def parse(*items: object) -> list:
    return parse_writes_body({"items": list(items)}, LIMITS)


def error_of(*items: object) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(*items)
    return caught.value.message


def test_seed_example_parses_with_reason_from_description() -> None:
    body = {
        "items": [
            {
                "key": "order-12345",
                "accountId": "customer-001",
                "bits": 1,
                "metadata": {"amount": 250.00, "currency": "USD", "description": "Monthly subscription"},
            },
            {
                "key": "order-12346",
                "accountId": "customer-002",
                "bits": 3,
                "metadata": {"amount": 750.00, "currency": "USD", "description": "Enterprise license"},
            },
        ]
    }
    parsed = parse_writes_body(body, LIMITS)
    assert [d.amount for d in parsed] == [1, 3]
    assert parsed[0].reason == "Monthly subscription"
    assert parsed[1].customer_id == "customer-002"
    assert parsed[0].occurred_at is None


@pytest.mark.parametrize("bits", [1.5, "3", True, 1e3, None, [1], {"a": 1}])
def test_bits_that_are_not_integers_are_refused_naming_the_item(bits: object) -> None:
    assert error_of(item(), item(key="k2", bits=bits)).startswith("items[1].bits: must be an integer")


def test_zero_and_out_of_range_bits_are_refused() -> None:
    assert "must not be zero" in error_of(item(bits=0))
    assert "between" in error_of(item(bits=1_000_000_001))
    assert "between" in error_of(item(bits=-(2**70)))
    assert parse(item(bits=-1_000_000_000))[0].amount == -1_000_000_000


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ("", "must not be empty"),
        ("a" * 129, "at most 128"),
        ("has space", "may contain only"),
        ("ümlaut", "may contain only"),
        (7, "must be a string"),
        (".", 'must not be "." or ".."'),  # dot segments: a client drops them from a URL
        ("..", 'must not be "." or ".."'),
    ],
)
def test_account_ids_follow_the_pattern(account: object, problem: str) -> None:
    message = error_of(item(accountId=account))
    assert message.startswith("items[0].accountId") and problem in message


def test_dots_are_refused_only_as_the_whole_id() -> None:
    assert [parse(item(accountId=account))[0].customer_id for account in ("...", ".a", "a..")] == [
        "...",
        ".a",
        "a..",
    ]


def test_keys_are_bounded_and_clean() -> None:
    assert "at most 256" in error_of(item(key="k" * 257))
    assert "must not be empty" in error_of(item(key=""))
    assert "NUL" in error_of(item(key="a\x00b"))
    assert "surrogate" in error_of(item(key="a\ud800"))
    assert parse(item(key="ключ-🔑"))[0].key == "ключ-🔑"


def test_items_must_be_a_non_empty_bounded_array() -> None:
    with pytest.raises(ValidationError, match="items: must hold at least one item"):
        parse_writes_body({"items": []}, LIMITS)
    with pytest.raises(ValidationError, match="items: is required"):
        parse_writes_body({}, LIMITS)
    with pytest.raises(ValidationError, match="at most 1000 items, got 1001"):
        parse_writes_body({"items": [item(key=str(i)) for i in range(1001)]}, LIMITS)
    with pytest.raises(ValidationError, match="body: must be a JSON object"):
        parse_writes_body([], LIMITS)


def test_missing_fields_are_named() -> None:
    assert error_of({"accountId": "a", "bits": 1}) == "items[0].key: is required"
    assert error_of({"key": "a", "bits": 1}) == "items[0].accountId: is required"
    assert error_of({"key": "a", "accountId": "b"}) == "items[0].bits: is required"


def test_metadata_depth_and_numbers_are_checked() -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(8):
        deep = {"d": deep}
    assert "nests deeper than 8" in error_of(item(metadata=deep))
    assert "±(2^53-1)" in error_of(item(metadata={"n": 2**60}))
    assert "must be an object" in error_of(item(metadata=[1, 2]))


@pytest.mark.parametrize(
    ("number", "held"),
    [
        ("12345678901234567.0", "1.2345678901234568e+16"),
        ("1.2345678901234567e16", "1.2345678901234568e+16"),
        ("9007199254740993.0", "9007199254740992.0"),
        ("0.10000000000000001", "0.1"),
        ("0.30000000000000000001", "0.3"),
        ("1e-400", "0.0"),
    ],
)
def test_a_metadata_number_a_double_holds_only_as_another_is_refused(number: str, held: str) -> None:
    """A number with a fraction or an exponent is stored (and hashed, and read back) as the
    double nearest to it: one that is not the number written would be another number, and two
    writes of the same key with different such numbers would be taken as repeats."""
    body = loads_strict(
        b'{"items": [{"key": "k", "accountId": "c", "bits": 1, "metadata": {"m": %s}}]}' % number.encode()
    )
    with pytest.raises(ValidationError) as caught:
        parse_writes_body(body, LIMITS)
    assert caught.value.message == (
        f"items[0].metadata.m: numbers in metadata must be read back as written, got {number}, "
        f"which a double holds only as {held}; send it as a string"
    )


@pytest.mark.parametrize(
    "number", ["0.1", "1e20", "1E-5", "-2.5", "5.0", "-0.0", "123.456e-2", "1.7976931348623157e308"]
)
def test_a_metadata_number_a_double_holds_as_written_is_taken(number: str) -> None:
    body = loads_strict(
        b'{"items": [{"key": "k", "accountId": "c", "bits": 1, "metadata": {"m": %s}}]}' % number.encode()
    )
    assert parse_writes_body(body, LIMITS)[0].metadata == {"m": float(number)}


def test_unknown_fields_are_ignored() -> None:
    assert parse(item(colour="blue"))[0].amount == 5


def test_occurred_at_is_canonicalised_to_utc() -> None:
    parsed = parse(item(occurredAt="2026-02-10T16:30:00+02:00"))[0]
    assert parsed.occurred_at == "2026-02-10T14:30:00.000000Z"
    assert "RFC 3339" in error_of(item(occurredAt="2026-02-10"))
    assert "RFC 3339" in error_of(item(occurredAt="2026-02-10T14:30:00"))


def test_occurred_at_ends_before_the_last_month_a_timestamp_can_name() -> None:
    # 9999-12 has no next month to end it: period queries and month totals could not bound it.
    last = parse(item(occurredAt="9999-11-30T23:59:59.999999Z"))[0]
    assert last.occurred_at == "9999-11-30T23:59:59.999999Z"
    assert error_of(item(occurredAt="9999-12-01T00:00:00Z")) == (
        'items[0].occurredAt: must be before 9999-12-01T00:00:00Z, got "9999-12-01T00:00:00Z"'
    )
    assert "must be before 9999-12-01" in error_of(item(occurredAt="9999-11-30T23:30:00-01:00"))


def test_strict_json_refuses_nan_duplicates_and_deep_nesting() -> None:
    with pytest.raises(ValidationError, match="NaN is not valid JSON"):
        loads_strict(b'{"a": NaN}')
    with pytest.raises(ValidationError, match="Infinity"):
        loads_strict(b'{"a": -Infinity}')
    with pytest.raises(ValidationError, match='duplicate key "a"'):
        loads_strict(b'{"a": 1, "a": 2}')
    nested: list[object] = []
    for _ in range(39):
        nested = [nested]
    assert loads_strict(b"[" * 40 + b"]" * 40) == nested
    with pytest.raises(ValidationError, match="too deeply"):
        loads_strict(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValidationError, match="not valid UTF-8"):
        loads_strict(b'{"a": "\xff"}')
    with pytest.raises(ValidationError, match=r"^body: is an integer literal of more than 4,300 digits$"):
        loads_strict(b"1" * 5000)
    long = b"-" + b"9" * 4301
    with pytest.raises(
        ValidationError, match=r"^items\[1\]\.bits: is an integer literal of more than 4,300 d"
    ):
        loads_strict(b'{"items": [{"bits": 1}, {"bits": ' + long + b"}]}")
    with pytest.raises(ValidationError, match=r"^yourBalance: is an integer literal"):  # the first in order
        loads_strict(b'{"yourBalance": ' + long + b', "theirBalance": 1e400}')
    with pytest.raises(ValidationError, match=r"^theirBalance: is a number beyond the range of a double"):
        loads_strict(b'{"theirBalance": 1e400, "yourBalance": ' + long + b"}")
    with pytest.raises(ValidationError, match=r"^body: has an integer literal of more than 4,300 digits$"):
        loads_strict(b'{"yourBalance": ' + long + b", }")  # not JSON after it: the number alone
    assert loads_strict(b'{"n": ' + b"9" * 4300 + b"}") == {"n": int("9" * 4300)}
    assert loads_strict(json.dumps({"n": 2**80}).encode()) == {"n": 2**80}
    with pytest.raises(
        ValidationError, match=r"^body: is not valid JSON: Invalid control character at line 1"
    ):
        loads_strict(b'{"a": "x\ty"}')


def test_a_number_with_a_fraction_or_an_exponent_is_quoted_as_sent() -> None:
    body = b'{"items": [{"key": "k", "accountId": "c", "bits": 1e3}], "x": [2.50, -0.0, 1E-2]}'
    document = loads_strict(body)
    assert document["x"] == [2.5, 0.0, 0.01]  # still a float to every other reader
    assert [strict_json.describe(v) for v in document["x"]] == ["2.50", "-0.0", "1E-2"]
    with pytest.raises(ValidationError, match=r"^items\[0\]\.bits: must be an integer, got 1e3$"):
        parse_writes_body(document, LIMITS)
    assert strict_json.describe(1000.0) == "1000.0"  # a float from elsewhere has no spelling


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"deltas": [{"delta": 1e400}]}', "deltas[0].delta"),
        (b'{"items": [{"metadata": {"x": [1, -1E+999]}}]}', "items[0].metadata.x[1]"),
        (("1" * 400 + ".5").encode(), "body"),
        # Short exponents overflow too, with a long enough mantissa.
        (b'{"a": 1' + b"0" * 210 + b"e99}", "a"),
        (b'{"a": ' + b"9" * 308 + b".9e1}", "a"),
    ],
)
def test_strict_json_refuses_numbers_beyond_a_double_and_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(
        ValidationError, match=re.escape(f"{field}: is a number beyond the range of a double")
    ):
        loads_strict(body)


def test_strict_json_names_a_bad_number_even_when_more_is_wrong_after_it() -> None:
    with pytest.raises(ValidationError, match=r"^body: has a number beyond the range of a double"):
        loads_strict(b'{"a": 1e400, ')  # no document to name it in
    # In an object that also repeats a key, the number comes first.
    with pytest.raises(ValidationError, match=r"^a: is a number beyond the range of a double"):
        loads_strict(b'{"a": 1e400, "a": 2}')


def test_strict_json_names_the_object_that_repeats_a_key() -> None:
    items = [{"key": f"k{i}", "accountId": "c", "bits": 1} for i in range(600)]
    text = json.dumps({"items": items}).replace('"k537", ', '"k537", "bits": 1, ', 1)
    with pytest.raises(ValidationError, match=r'^items\[537\]: duplicate key "bits" in a JSON object$'):
        loads_strict(text.encode())
    with pytest.raises(ValidationError, match=r'^body: duplicate key "a" in a JSON object$'):
        loads_strict(b'{"a": 1, "b": [], "a": 2}')
    with pytest.raises(ValidationError, match=r'^x\[1\]\.y: duplicate key "z" in a JSON object$'):
        loads_strict(b'{"x": [{}, {"y": {"z": 1, "z": 1}}]}')


def test_strict_json_nesting_depends_on_the_body_not_on_the_caller_s_depth() -> None:
    """The decoder's guard counts the caller's frames too: a body just under the limit from a
    shallow caller was refused from a deeper one (a chunked body, through more layers)."""

    def decode_from(frames: int, body: bytes) -> object:
        return loads_strict(body) if frames == 0 else decode_from(frames - 1, body)

    def nesting(value: object) -> int:  # without recursion: `==` on 960 levels needs the stack it tests
        levels = 0
        while isinstance(value, list):
            levels, value = levels + 1, value[0] if value else None
        return levels

    deep = b'{"items": [], "x": ' + b"[" * 960 + b"]" * 960 + b"}"
    for frames in (0, 100):
        decoded = decode_from(frames, deep)
        assert isinstance(decoded, dict) and decoded["items"] == [] and nesting(decoded["x"]) == 960
    for frames in (0, 100):
        with pytest.raises(ValidationError, match=r"^body: nests arrays and objects too deeply$"):
            decode_from(frames, b"[" * 2_000 + b"]" * 2_000)


def test_strict_json_keeps_what_a_double_holds_and_integers_as_they_are() -> None:
    assert loads_strict(b'[1e308, -2.5e-300, "e999", 1e-999]') == [1e308, -2.5e-300, "e999", 0.0]
    # Integers are exact; each field judges its own range (amounts, 64-bit balances).
    assert loads_strict(b"[" + b"9" * 400 + b"]") == [int("9" * 400)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (rb'{"url": "https://a.example/\ud800"}', r"^url: contains an unpaired UTF-16 surrogate$"),
        (
            rb'{"deltas": [{"customerId": "ok"}, {"customerId": "\udfff"}]}',
            r"^deltas\[1\]\.customerId: contains",
        ),
        (rb'{"a": {"b\u0000": 1}}', r"^a key: must not contain the NUL character$"),
        (rb'{"\ud800": 1}', r"^body key: contains an unpaired UTF-16 surrogate$"),
        (rb'["x", "\u0000"]', r"^\[1\]: must not contain the NUL character$"),
        (rb'"\ud83d"', r"^body: contains an unpaired UTF-16 surrogate$"),
        # The first bad field in document order is the one named.
        (rb'{"a": "\u0000", "b": "\ud800"}', r"^a: must not contain the NUL"),
        (rb'{"a": {"b": "\u0000"}, "c\u0000": 1}', r"^a\.b: must not contain the NUL"),
        (rb'[[1, {"a": [2, null, "\u00e9", "\u0000"]}], "\ud800"]', r"^\[0\]\[1\]\.a\[3\]: must not"),
        (rb'[{"a": [true, {"\u00e9\ud800": 1}]}]', r"^\[0\]\.a\[1\] key: contains an unpaired"),
        (rb'{"a": [1.5, {}, [], {"b": "x"}], "c": "\u0000"}', r"^c: must not contain the NUL"),
    ],
)
def test_strict_json_refuses_text_no_store_can_keep_and_names_the_field(body: bytes, message: str) -> None:
    # Unused fields too: a body is I-JSON (RFC 7493) or it is refused.
    with pytest.raises(ValidationError, match=message):
        loads_strict(body)


def test_strict_json_names_only_the_bad_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large hostile body costs a walk, not a name for each of its values."""
    named: list[object] = []
    real = strict_json._field
    monkeypatch.setattr(strict_json, "_field", lambda trail: named.append(trail) or real(trail))
    body = b'{"items": [' + b'1, "ok", {"k": "v"}, ' * 10_000 + rb'"\\u0000", "\u0000"]}'
    with pytest.raises(ValidationError, match=r"^items\[30001\]: must not contain the NUL"):
        loads_strict(body)
    assert len(named) == 1


def test_strict_json_keeps_escapes_that_are_text() -> None:
    # A surrogate pair is one character; an escaped backslash before "u0000" is text.
    assert loads_strict(rb'{"e": "\ud83d\ude00", "t": "\\u0000", "z": "\u00e9"}') == {
        "e": "\U0001f600",
        "t": "\\u0000",
        "z": "\u00e9",
    }


def test_strict_json_names_what_is_wrong_after_deep_nesting_whatever_the_caller_s_depth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decoded again in a thread of its own, a body's other faults (a NaN) are still named, and
    nothing escapes that thread."""
    body = b"[" + b"[" * 600 + b"]" * 600 + b", NaN]"
    escaped: list[object] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_type))

    def decode_from(frames: int) -> str:
        if frames:
            return decode_from(frames - 1)
        with pytest.raises(ValidationError) as refused:
            loads_strict(body)
        return str(refused.value)

    shallow = decode_from(0)
    assert shallow.startswith("body: NaN is not valid JSON")
    assert decode_from(sys.getrecursionlimit() - 500) == shallow
    assert escaped == []
