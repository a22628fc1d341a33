"""Strict JSON decoding for request bodies.

The standard decoder is lenient where a ledger must not be: it accepts ``NaN`` and
``Infinity`` (and turns ``1e400`` into infinity), silently keeps the last of two duplicate keys,
accepts strings no UTF-8 store can keep (an unpaired ``\\ud800``; PostgreSQL refuses ``\\u0000``
too) and recurses until the interpreter gives up. :func:`loads_strict` rejects each of those
with a :class:`ValidationError` that names the field and says what was wrong: a body is I-JSON
(RFC 7493) or it is refused, whatever field the text is in and whether or not it is used.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import chain
from typing import Any, NoReturn

from trueup.core.errors import ValidationError
from trueup.core.json_text import quoted

__all__ = ["check_text", "describe", "loads_strict", "read_as_written"]


class _DuplicateKeyInBodyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyInBodyError(key)
            seen.add(key)
    return result


class _DuplicatedObject:
    """An object that repeated ``key``, when a body is decoded again to name it: walked as its
    ``pairs``, then :class:`_Duplicate` (so a bad value in it is named first)."""

    __slots__ = ("key", "pairs")

    def __init__(self, key: str, pairs: list[tuple[str, Any]]) -> None:
        self.key = key
        self.pairs = pairs


class _Duplicate:
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _marking_hook(pairs: list[tuple[str, Any]]) -> Any:
    try:
        return _pairs_hook(pairs)
    except _DuplicateKeyInBodyError as exc:
        return _DuplicatedObject(exc.key, pairs)


def _reject_constant(name: str) -> Any:
    raise ValidationError("body", f"{name} is not valid JSON (RFC 8259 allows finite numbers only)")


class _NonFiniteNumberError(ValueError):
    """A number with a fraction or an exponent beyond a double's range (``1e400``)."""


class _SpelledFloat(float):
    """A decoded number with a fraction or an exponent that keeps its spelling, so an error
    message quotes what the client sent: ``1e3`` as ``1e3``, not as ``1000.0``."""

    __slots__ = ("text",)
    text: str


def read_as_written(value: float) -> bool:
    """Whether a number decoded with a fraction or an exponent is the number its spelling names:
    the double nearest to it, in its shortest form (how any reader writes it back, and how
    canonical JSON does), has the spelling's decimal value. ``0.1`` and ``1e20`` are;
    ``12345678901234567.0`` (read as ``12345678901234568``), ``0.10000000000000001`` (read as
    ``0.1``) and ``1e-400`` (read as ``0``) are not. A float not decoded here is taken as it is.
    Compared as decimal numbers (``Decimal`` of text is exact): never money, only its notes."""
    text = value.text if isinstance(value, _SpelledFloat) else None
    return text is None or Decimal(text) == Decimal(repr(float(value)))


def _finite_float(text: str) -> float:
    value = _SpelledFloat(text)
    if math.isinf(value):
        raise _NonFiniteNumberError(text)
    value.text = text
    return value


# The decoder calls parse_float only for numbers with a fraction or an exponent. Integers are
# exact in Python and each field judges its own range (an amount, a balance of 64 bits).
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_hook, parse_constant=_reject_constant, parse_float=_finite_float
)


class _LongInteger:
    """An integer literal longer than Python converts (``sys.get_int_max_str_digits``)."""

    __slots__ = ()


def _integer_or_long(text: str) -> int | _LongInteger:
    limit = sys.get_int_max_str_digits()
    return _LongInteger() if limit and len(text.lstrip("-")) > limit else int(text)


_LENIENT = json.JSONDecoder(
    object_pairs_hook=_marking_hook, parse_constant=_reject_constant, parse_int=_integer_or_long
)
"""Decodes a body the strict decoder refused for a number (beyond a double, or an integer
longer than Python converts) or a repeated key, to name its field: the walk finds it."""

# A NUL or a surrogate can only enter a decoded string through a \u escape (raw control
# characters are refused by the decoder; raw UTF-8 cannot encode a surrogate), so a body
# without one of these escapes needs no walk. A match may be a false alarm ("\\u0000" is a
# backslash and text); the walk decides.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _text_problem(value: str) -> str | None:
    """What makes ``value`` unstorable (a NUL, an unpaired surrogate), or ``None``."""
    if value.isascii():
        return "must not contain the NUL character" if "\x00" in value else None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate"
    return "must not contain the NUL character" if "\x00" in value else None


def check_text(value: str, field: str) -> None:
    """Refuse text that cannot be stored faithfully: NUL and unpaired surrogates."""
    problem = _text_problem(value)
    if problem is not None:
        raise ValidationError(field, problem)


def _field(trail: list[str | int]) -> str:
    """The name of the value at ``trail`` (keys and indexes from the document down), as the
    routes name fields: ``items[3].reason``; ``body`` for the document itself."""
    path = ""
    for step in trail:
        if isinstance(step, int):
            path += f"[{step}]"
        else:
            path = f"{path}.{step}" if path else step
        if len(path) > 120:
            break
    return path[:120] or "body"


_FINE = (int, bool, type(None))
"""Values with nothing to check (a float is checked for being finite, a string for its text)."""


def _check_values(document: Any) -> None:
    """:func:`check_text` on every string and key of ``document``, and every float finite,
    naming the first bad one in document order (``items[3].metadata key`` for a key of that
    object). A field's name is made only for the bad one, and numbers are passed over in bulk: a
    hostile body of 350,000 numbers and a NUL at its end was refused in 31 ms, where naming every
    value on the way took 165."""
    trail: list[str | int] = []  # the key or index of each container being walked but the outermost
    frames: list[Iterator[tuple[str | int, Any]]] = []  # each container's (key, value) pairs still to walk

    def enter(node: Any) -> bool:
        if isinstance(node, dict):
            frames.append(iter(node.items()))
        elif isinstance(node, _DuplicatedObject):
            frames.append(chain(node.pairs, [(node.key, _Duplicate(node.key))]))
        elif isinstance(node, list):
            # Numbers, booleans and nulls need nothing: they are passed over here, not one by one.
            frames.append(((i, child) for i, child in enumerate(node) if not isinstance(child, _FINE)))
        else:
            return False
        return True

    def check(node: Any, at: list[str | int]) -> None:
        if isinstance(node, str):
            check_text(node, _field(at))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValidationError(_field(at), "is a number beyond the range of a double (RFC 7493)")
        elif isinstance(node, _LongInteger):
            raise ValidationError(_field(at), _long_integer_problem())
        elif isinstance(node, _Duplicate):  # named by its object
            raise ValidationError(_field(at[:-1]), _duplicate_problem(node.key))

    if not enter(document):
        check(document, [])
        return
    while frames:
        for key, node in frames[-1]:
            # An object's key is named by its object (the key is what is bad). Plain ASCII text
            # without a NUL, nearly all of it, is passed over without a call.
            if isinstance(key, str) and not (key.isascii() and "\x00" not in key):
                check_text(key, f"{_field(trail)} key")
            if enter(node):
                trail.append(key)
                break
            if not (isinstance(node, str) and node.isascii() and "\x00" not in node):
                check(node, [*trail, key])
        else:
            frames.pop()
            if trail:
                trail.pop()


def _duplicate_problem(key: str) -> str:
    return f"duplicate key {quoted(key[:64])} in a JSON object"


def _long_integer_problem() -> str:
    return f"is an integer literal of more than {sys.get_int_max_str_digits():,} digits"


def _name_the_bad_value(text: str, problem: str) -> NoReturn:
    """Raise the error for a body holding a number beyond a double, an integer too long to
    convert or a repeated key, naming its field: decoded again without the checks, the walk
    finds it (or a bad value before it); ``problem`` is the message should the body not decode
    at all."""
    try:
        document = _decoded(_LENIENT.decode, text)
    except (ValueError, RecursionError):  # another fault after this one: name this one alone
        document = None
    if document is not None:
        _check_values(document)
    raise ValidationError("body", problem)


def _decoded(decode: Callable[[str], Any], text: str) -> Any:
    """``decode(text)``, and once more in a thread of its own should it nest too deeply here.

    The decoder's recursion guard counts the frames of the code that called it too, so the
    same body could be refused from a deep call (a body sent in chunks, through more layers)
    and accepted from a shallow one. A new thread starts from none: whether a body nests too
    deeply depends on the body alone (about 990 levels).
    """
    try:
        return decode(text)
    except RecursionError:
        pass
    decoded: list[Any] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            decoded.append(decode(text))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller, whatever it is
            failed.append(exc)

    thread = threading.Thread(target=run, name="trueup-json-depth", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return decoded[0]


def loads_strict(body: bytes) -> Any:
    """Decode ``body`` (UTF-8 JSON) or raise :class:`ValidationError` naming the problem.

    Nesting is bounded by the decoder's recursion guard in a thread of its own (about 990
    levels, whatever the caller's depth: :func:`_decoded`); the fields that are kept have
    tighter limits of their own (``metadata``: depth 8).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("body", f"is not valid UTF-8 (byte {exc.start})") from exc
    if text.startswith("\ufeff"):
        raise ValidationError("body", "must not start with a byte order mark")
    try:
        value = _decoded(_DECODER.decode, text)
    except _DuplicateKeyInBodyError as exc:
        _name_the_bad_value(text, _duplicate_problem(exc.key))
    except _NonFiniteNumberError:
        _name_the_bad_value(text, "has a number beyond the range of a double (RFC 7493)")
    except json.JSONDecodeError as exc:
        reason = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise ValidationError(
            "body", f"is not valid JSON: {reason} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise ValidationError("body", "nests arrays and objects too deeply") from exc
    except ValueError as exc:  # an integer literal longer than Python's digit limit
        if "digits" in str(exc):
            _name_the_bad_value(
                text, f"has an integer literal of more than {sys.get_int_max_str_digits():,} digits"
            )
        raise ValidationError("body", f"is not acceptable JSON: {exc}") from exc
    if _SUSPECT_ESCAPE.search(text) is not None:
        _check_values(value)
    return value


def describe(value: object) -> str:  # noqa: PLR0911 - one early return per JSON type
    """A short description of a JSON value for error messages: ``1.5``, ``"3"``, ``true``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = value.text if isinstance(value, _SpelledFloat) else repr(value)
        return text if len(text) <= 32 else text[:29] + "..."
    if isinstance(value, str):
        return quoted(value, 32)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
