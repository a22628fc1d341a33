"""Compact JSON text of replies: orjson, with exact integers beyond 64 bits by fallback."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps"]


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
