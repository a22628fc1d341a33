"""Compact JSON text of replies: orjson, with exact integers beyond 64 bits by fallback; and
text quoted as a JSON string, as error messages show a value a client gave."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps", "quoted"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> bytes:
    """Serialise ``value`` compactly as UTF-8; integers of any size stay exact (JSON has no
    integer limit). For what replies hold (text, integers, booleans, null, lists and objects
    with text keys) the text is the standard encoder's with ``(",", ":")`` separators and
    ``ensure_ascii=False``, at a fraction of the cost. Floats may be spelled differently
    (``1e-7`` for ``1e-07``), and orjson writes NaN as ``null``; no reply carries one."""
    try:
        return orjson.dumps(value)
    except TypeError:
        # orjson refuses integers outside 64 bits; the standard encoder writes them exactly.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def quoted(text: str) -> str:
    """``text`` as a JSON string, the way error messages show a value: ``"abc"``, with JSON's
    escapes for a double quote, a backslash and control characters, other characters as they
    are (``json.dumps(text, ensure_ascii=False)``). An unpaired surrogate, which UTF-8 cannot
    carry, is written as its ``\\uXXXX`` escape, so the message can still be sent."""
    shown = json.dumps(text, ensure_ascii=False)
    if shown.isascii():
        return shown
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", shown)
