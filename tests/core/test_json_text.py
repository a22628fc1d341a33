"""Reply JSON: for what replies hold, orjson's text is the standard encoder's, big integers included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trueup.core.json_text import dumps

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
