"""RFC 8785 canonical JSON: the RFC's own examples, and agreement with the rfc8785 package."""

from __future__ import annotations

import enum
import json
import struct
from collections import OrderedDict

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trueup.proof import MAX_SAFE_INTEGER, LeafEncodingError, canonical_json
from trueup.proof.canonical import format_number

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text (the same table is in
# cyberphone/json-canonicalization, the RFC authors' reference implementation).
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
    # cyberphone/json-canonicalization testdata/README.md samples.
    ("4340000000000001", "9007199254740994"),
    ("4340000000000002", "9007199254740996"),
]


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_serialise_as_rfc8785_appendix_b(bits: str, text: str) -> None:
    assert format_number(double(bits)) == text
    assert canonical_json([double(bits)]) == f"[{text}]".encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (-0.0, "0"),
        (100.0, "100"),
        (4.5, "4.5"),
        (2e-3, "0.002"),
        (1e30, "1e+30"),
        (1e-27, "1e-27"),
        (123456789012345680000.0, "123456789012345680000"),
        (0.1, "0.1"),
        (-1.5e-10, "-1.5e-10"),
    ],
)
def test_numbers_serialise_as_ecmascript_number_to_string(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinities_are_rejected(bits: str) -> None:
    with pytest.raises(LeafEncodingError, match="is not a JSON number"):
        canonical_json({"n": double(bits)})


def test_rfc8785_section_3_2_2_sample_canonicalises_exactly() -> None:
    # RFC 8785 §3.2.2; also cyberphone/json-canonicalization testdata values.json.
    parsed = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(parsed) == expected.encode("utf-8")
    assert canonical_json(parsed).hex().startswith("7b226c69")


def test_rfc8785_section_3_2_3_members_sort_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3: the emoji (a surrogate pair, 0xD83D...) sorts before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


def test_cyberphone_weird_sample_canonicalises_exactly() -> None:
    # cyberphone/json-canonicalization testdata input/weird.json -> output/weird.json.
    source = (
        '{"\\u20ac": "Euro Sign", "1": "One", "\\u0080": "Control\\u007f",'
        ' "\\ud83d\\ude02": "Smiley", "\\u00f6": "Latin Small Letter O With Diaeresis",'
        ' "\\ufb33": "Hebrew Letter Dalet With Dagesh", "</script>": "Browser Challenge"}'
    )
    expected = (
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ('"\\/', '"\\"\\\\/"'),
        ("\x7f\u2028\u2029é", '"\x7f\u2028\u2029é"'),
    ],
)
def test_strings_escape_exactly_as_json_stringify(value: str, text: str) -> None:
    assert canonical_json(value) == text.encode("utf-8")


def test_integers_are_limited_to_the_i_json_range() -> None:
    assert canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == b"[9007199254740991,-9007199254740991]"
    with pytest.raises(LeafEncodingError, match=r"^\$\.a\[1\]\.b: integer 9007199254740992 is outside"):
        canonical_json({"a": [0, {"b": MAX_SAFE_INTEGER + 1}]})
    with pytest.raises(LeafEncodingError, match="integer -9007199254740992 is outside"):
        canonical_json(-MAX_SAFE_INTEGER - 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "x"}, r"^\$: object key 1 is not a string$"),
        ({"a b": {1, 2}}, r'^\$\["a b"\]: set is not a JSON type$'),
        ([b"bytes"], r"^\$\[0\]: bytes is not a JSON type$"),
        ({"k": ["ok", "\ud800"]}, r"^\$\.k\[1\]: string contains the lone surrogate U\+D800"),
        ({"\udfff": 1}, "lone surrogate U\\+DFFF"),
    ],
)
def test_values_outside_i_json_are_rejected_with_their_path(value: object, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        canonical_json(value)  # type: ignore[arg-type]


class Colour(enum.IntEnum):
    RED = 1


class Name(enum.StrEnum):
    ALICE = "alice"


def test_subclasses_of_json_types_are_written_as_their_base_type() -> None:
    value = OrderedDict([("b", Colour.RED), ("a", Name.ALICE), ("c", (True, 1.5))])
    assert canonical_json(value) == b'{"a":"alice","b":1,"c":[true,1.5]}'  # type: ignore[arg-type]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=6), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
@example({"\U0001f600": 1, "\ufb33": 2, "\uffff": 3, "\ue000": 4})
@example([1e21, 1e-7, 5e-324, 1.7976931348623157e308, 333333333.3333333, -0.0, 100.0])
def test_canonical_json_agrees_with_the_rfc8785_package(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


@settings(max_examples=1000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_double_round_trips_through_its_canonical_text(value: float) -> None:
    text = format_number(value)
    assert float(text) == value or (value == 0 and float(text) == 0)
    assert text == rfc8785.dumps(value).decode()
    assert not text.endswith(".0")
    # ECMAScript writes plain decimals exactly for 1e-6 <= |value| < 1e21.
    assert ("e" in text) == (value != 0 and not 1e-6 <= abs(value) < 1e21)
