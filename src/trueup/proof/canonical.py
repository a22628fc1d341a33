"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

Canonical JSON is what gets hashed (leaf bytes, metadata digests), so two parties holding
the same data always compute the same hash. The rules, RFC 8785 §3.2:

- no whitespace; object members sorted by their names as UTF-16 code units (§3.2.3);
- strings escaped exactly as ECMAScript ``JSON.stringify`` does (§3.2.2.2): ``\\"``, ``\\\\``,
  ``\\b \\f \\n \\r \\t``, other controls below U+0020 as ``\\u00xx`` (lower-case hex),
  everything else (including U+007F and non-ASCII) as is, then UTF-8;
- numbers as ECMAScript ``Number.prototype.toString`` writes them (§3.2.2.3);
- values restricted to I-JSON (RFC 7493): no NaN or infinities, no lone surrogates, and
  integers exactly representable as IEEE 754 doubles, i.e. within ``±(2**53 - 1)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Final, TypeAlias

from trueup.proof.errors import LeafEncodingError, ProofError, shown

__all__ = [
    "MAX_SAFE_INTEGER",
    "JSONValue",
    "ObjectPairsHook",
    "canonical_json",
    "format_number",
    "hex_hash",
    "json_string",
    "unique_members",
]

JSONValue: TypeAlias = "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
"""A JSON value as Python holds it: dict (str keys), list or tuple, str, int, float, bool, None."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer I-JSON allows (RFC 7493 §2.2); the smallest is its negation."""

# RFC 8785 §3.2.2.2 is ECMAScript JSON.stringify's QuoteJSONString: `"` and `\` escaped,
# \b \f \n \r \t by name, the other controls U+0000-U+001F as \u00xx in lower-case hex,
# every other code point (U+007F and all non-ASCII included) written as is. CPython's C
# string encoder for json.dumps(ensure_ascii=False) does exactly this.
json_string = encode_basestring


class _LocatedError(LeafEncodingError):
    # An error whose JSON path is filled in as it propagates out of nested containers.
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def canonical_json(value: JSONValue) -> bytes:
    """Return the RFC 8785 canonical UTF-8 encoding of ``value``.

    Accepts dict (str keys only), list, tuple, str, int, float, bool and None, and their
    subclasses (an ``IntEnum`` is written as its integer value).

    Raises:
        LeafEncodingError: naming the JSON path (``$.items[2].amount``) of a value that is
            not I-JSON: an unsupported type, a non-string key, NaN or an infinity, an integer
            outside ``±(2**53 - 1)``, or a string with a lone surrogate.
    """
    out: list[str] = []
    try:
        _write(value, out)
    except _LocatedError as exc:
        path = "$" + "".join(reversed(exc.path))
        raise LeafEncodingError(f"{path}: {exc.problem}") from exc
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # RFC 8785 §3.2.2.2 / I-JSON: strings must be valid Unicode; find where.
        path, char = next(_lone_surrogates(value, "$"), ("$", text[exc.start]))
        raise LeafEncodingError(
            f"{path}: string contains the lone surrogate U+{ord(char):04X}, which is not valid Unicode"
        ) from exc


def _write(value: JSONValue, out: list[str]) -> None:
    # Exact-type dispatch first: this runs for every value of every leaf and metadata.
    kind = type(value)
    if kind is str:
        out.append(json_string(value))  # type: ignore[arg-type]  # kind is str
    elif value is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if value else "false")
    elif kind is int:
        out.append(_format_int(value))  # type: ignore[arg-type]  # kind is int
    elif kind is dict:
        _write_object(value, out)  # type: ignore[arg-type]  # kind is dict
    elif kind is list or kind is tuple:
        _write_array(value, out)  # type: ignore[arg-type]  # kind is list or tuple
    elif kind is float:
        out.append(format_number(value))  # type: ignore[arg-type]  # kind is float
    else:
        _write_subclass(value, out)


def _write_subclass(value: object, out: list[str]) -> None:
    # Subclasses of the JSON types (IntEnum, StrEnum, OrderedDict, ...), written as their base.
    if isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(_format_int(int(value)))
    elif isinstance(value, float):
        out.append(format_number(float(value)))
    elif isinstance(value, str):
        out.append(json_string(value))
    elif isinstance(value, dict):
        _write_object(value, out)
    elif isinstance(value, (list, tuple)):
        _write_array(value, out)
    else:
        raise _LocatedError(f"{type(value).__name__} is not a JSON type")


def _format_int(value: int) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    raise _LocatedError(f"integer {value} is outside the I-JSON range ±(2**53 - 1)")


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _write_object(value: dict[str, JSONValue], out: list[str]) -> None:
    for name in value:
        if type(name) is not str and not isinstance(name, str):
            raise _LocatedError(f"object key {shown(name)} is not a string")
    # RFC 8785 §3.2.3: sort member names by their UTF-16 code units. Code point order is
    # the same unless a name holds a character above U+FFFF, which ASCII names never do.
    names = sorted(value)
    if not all(name.isascii() for name in names):
        names.sort(key=_utf16_key)
    out.append("{")
    first = True
    for name in names:
        if not first:
            out.append(",")
        first = False
        out.append(json_string(name))
        out.append(":")
        try:
            _write(value[name], out)
        except _LocatedError as exc:
            exc.path.append(_member_path(name))
            raise
    out.append("}")


def _member_path(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json_string(name)}]"


def _write_array(value: Sequence[JSONValue], out: list[str]) -> None:
    out.append("[")
    for position, item in enumerate(value):
        if position:
            out.append(",")
        try:
            _write(item, out)
        except _LocatedError as exc:
            exc.path.append(f"[{position}]")
            raise
    out.append("]")


def format_number(value: float) -> str:
    """Return the RFC 8785 §3.2.2.3 text of a finite double: ECMAScript Number::toString.

    ``-0.0`` gives ``"0"``; integral values have no fraction (``100.0`` gives ``"100"``);
    exponents appear for magnitudes of ``1e21`` and above or below ``1e-6``
    (``1e+21``, ``1e-7``).

    Raises:
        LeafEncodingError: for NaN and the infinities, which JSON cannot express.
    """
    if not math.isfinite(value):
        raise _LocatedError(f"{shown(value)} is not a JSON number")
    if value == 0:
        return "0"  # ECMAScript: both +0 and -0 print as "0"
    # repr() gives the shortest digit string that round-trips, choosing the one nearest
    # the exact value when several exist: the digits s and length k ECMA-262 asks for.
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # value = s * 10**(n - k) with s the k significant digits (ECMA-262 Number::toString).
    n = exponent - len(fraction) + (len(digits) - k) + k
    if k <= n <= 21:
        body = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        body = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + stripped
    else:
        e = n - 1
        mark = "+" if e >= 0 else "-"
        head = stripped if k == 1 else stripped[0] + "." + stripped[1:]
        body = f"{head}e{mark}{abs(e)}"
    return sign + body


def _lone_surrogates(value: object, path: str) -> Iterator[tuple[str, str]]:
    # Slow path for error messages only: where is the first string with a lone surrogate?
    if isinstance(value, str):
        for char in value:
            if "\ud800" <= char <= "\udfff":
                yield path, char
                return
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _lone_surrogates(name, f"{path} (key)")
            yield from _lone_surrogates(item, path + _member_path(name))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            yield from _lone_surrogates(item, f"{path}[{position}]")


ObjectPairsHook: TypeAlias = Callable[[list[tuple[str, object]]], dict[str, object]]


def unique_members(what: str, error: type[ProofError]) -> ObjectPairsHook:
    """A ``json.loads`` ``object_pairs_hook`` that refuses an object with a member given twice
    (the standard decoder keeps the last, another parser may keep the first), raising
    ``error`` with ``"<what>: duplicate member '<name>'"``."""

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for name, value in pairs:
            if name in result:
                raise error(f"{what}: duplicate member {shown(name)}")
            result[name] = value
        return result

    return hook


_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def hex_hash(value: object, where: str, error: type[ProofError]) -> bytes:
    """A SHA-256 hash as the wire writes it, 64 lower-case hex digits, or ``error`` naming
    ``where`` (upper case and spaces, which ``bytes.fromhex`` takes, are refused)."""
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise error(f"{where}: must be 64 lower-case hex digits, got {shown(value)}")
    return bytes.fromhex(value)
