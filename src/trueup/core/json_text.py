"""Compact JSON text of replies: orjson, with exact integers beyond 64 bits by fallback; and
text quoted as a JSON string, as error messages show a value a client gave."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "printable", "quoted"]


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


def quoted(text: str, longest: int | None = None) -> str:
    """``text`` as a JSON string, the way error messages show a value: ``"abc"``, cut to its
    first ``longest - 3`` characters and ``...`` when it is longer than ``longest``; with JSON's
    escapes for a double quote and a backslash, and a ``\\uXXXX`` escape for every character
    that does not print (controls, DEL, format characters such as a right-to-left override,
    separators other than the space, an unpaired surrogate, which UTF-8 cannot carry): what the
    client sent is shown, never hidden or acted on by a terminal. Other characters stay as they
    are (``é``, not ``\\u00e9``)."""
    if longest is not None and len(text) > longest:
        text = text[: longest - 3] + "..."
    return printable(json.dumps(text, ensure_ascii=False))  # escapes the quote, the backslash and C0


def printable(text: str) -> str:
    """``text`` with a ``\\uXXXX`` escape for every character that does not print (as
    :func:`quoted` shows them): a log line that holds what a client sent stays one line, and a
    terminal showing it acts on none of it."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else _escaped(character) for character in text)


def _escaped(character: str) -> str:
    code = ord(character)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: JSON writes it as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
