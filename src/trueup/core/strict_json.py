"""Strict JSON decoding for request bodies.

The standard decoder is lenient where a ledger must not be: it accepts ``NaN`` and
``Infinity``, silently keeps the last of two duplicate keys and recurses until the
interpreter gives up. :func:`loads_strict` rejects each of those with a
:class:`ValidationError` that says what was wrong.
"""

from __future__ import annotations

import json
from typing import Any

from trueup.core.errors import ValidationError

__all__ = ["describe", "loads_strict"]


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


def _reject_constant(name: str) -> Any:
    raise ValidationError("body", f"{name} is not valid JSON (RFC 8259 allows finite numbers only)")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)


def loads_strict(body: bytes) -> Any:
    """Decode ``body`` (UTF-8 JSON) or raise :class:`ValidationError` naming the problem.

    Nesting is bounded by the decoder's recursion guard (about a thousand levels); the
    fields that are kept have tighter limits of their own (``metadata``: depth 8).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("body", f"is not valid UTF-8 (byte {exc.start})") from exc
    if text.startswith("\ufeff"):
        raise ValidationError("body", "must not start with a byte order mark")
    try:
        value = _DECODER.decode(text)
    except _DuplicateKeyInBodyError as exc:
        raise ValidationError("body", f"duplicate key {exc.key[:64]!r} in a JSON object") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "body", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise ValidationError("body", "nests arrays and objects too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise ValidationError("body", f"is not acceptable JSON: {exc}") from exc
    return value


def describe(value: object) -> str:  # noqa: PLR0911 - one early return per JSON type
    """A short description of a JSON value for error messages: ``1.5``, ``"3"``, ``true``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 32 else text[:29] + "..."
    if isinstance(value, str):
        shown = value if len(value) <= 32 else value[:29] + "..."
        return json.dumps(shown)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
