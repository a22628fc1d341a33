"""Reply JSON: for what replies hold, orjson's text is the standard encoder's, big integers included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trueup.core.json_text import dumps, printable, quoted

_SCALARS = st.none() | st.booleans() | st.integers() | st.text()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _standard(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@given(_VALUES)
def test_the_text_is_the_standard_encoders(value: Any) -> None:
    assert dumps(value) == _standard(value)


def test_integers_beyond_64_bits_stay_exact() -> None:
    big = {"delta": 2**64 + 1, "balance": -(2**70), "note": "ünïcode \u2028 \x00"}
    assert dumps(big) == _standard(big)
    assert json.loads(dumps(big))["delta"] == 2**64 + 1


@given(st.text())
def test_quoted_text_is_a_json_string_of_it_that_prints(text: str) -> None:
    shown = quoted(text)
    assert json.loads(shown) == text
    assert shown.isprintable() and shown.encode("utf-8")
    if text.isprintable():
        assert shown == json.dumps(text, ensure_ascii=False)


def test_quoted_escapes_quotes_backslashes_and_what_does_not_print() -> None:
    assert quoted("abc") == '"abc"'
    assert quoted('a"b\\c') == '"a\\"b\\\\c"'
    assert quoted("\t\n\x00\x1f") == '"\\t\\n\\u0000\\u001f"'
    assert quoted("caf\u00e9 \U0001f600") == '"caf\u00e9 \U0001f600"'  # printable: as it is
    # DEL, a C1 control, a no-break space, a right-to-left override, a line separator, a tag
    assert quoted("x\x7f\x85\u00a0\u202e\u2028\U000e0041y") == (
        '"x\\u007f\\u0085\\u00a0\\u202e\\u2028\\udb40\\udc41y"'
    )


def test_an_unpaired_surrogate_is_quoted_as_its_escape() -> None:
    shown = quoted("a\ud800b\U0001f600")
    assert shown == '"a\\ud800b\U0001f600"'
    assert shown.encode("utf-8") and json.loads(shown) == "a\ud800b\U0001f600"


def test_quoted_text_longer_than_asked_is_cut_with_an_ellipsis() -> None:
    assert quoted("a" * 40, 40) == '"' + "a" * 40 + '"'
    assert quoted("a" * 41, 40) == '"' + "a" * 37 + '..."'
    assert quoted('"' * 10, 5) == '"\\"\\"..."'


def test_printable_text_is_left_alone_and_the_rest_escaped() -> None:
    assert printable("GET /api/v1/writes é") == "GET /api/v1/writes é"
    assert printable("a\nb\x1b[2Kc\u2028d\u0085e\u202ef\tg") == (
        "a\\u000ab\\u001b[2Kc\\u2028d\\u0085e\\u202ef\\u0009g"
    )
