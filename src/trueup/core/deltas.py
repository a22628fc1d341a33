"""Deltas as callers submit them: the value type and the rules every write route applies.

Both write surfaces (``POST /api/v1/writes`` items and the emit routes' deltas) end up as a
list of :class:`NewDelta`. Validation is all-or-nothing and every message names the field,
e.g. ``items[3].bits: must be an integer, got 1.5``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from trueup.core.errors import ValidationError
from trueup.core.strict_json import check_text, describe, read_as_written
from trueup.core.timestamps import format_canonical, parse_rfc3339

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "DeltaLimits",
    "NewDelta",
    "body_list",
    "check_account_id",
    "check_amount",
    "check_item_key",
    "check_metadata",
    "check_new_account_id",
    "check_reason",
    "optional_occurred_at",
]

ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_I_JSON_MAX = 2**53 - 1  # RFC 7493 §2.2: integers that every JSON peer holds exactly


@dataclass(frozen=True, slots=True)
class DeltaLimits:
    """Configurable bounds on one delta. Amounts are integer minor units."""

    max_abs_amount: int = 1_000_000_000
    max_items: int = 1_000
    max_key_length: int = 256
    max_reason_length: int = 500
    max_metadata_bytes: int = 4_096
    max_metadata_depth: int = 8


class NewDelta(NamedTuple):
    """One validated delta, not yet stored (a NamedTuple: a thousand are built per request).

    ``occurred_at`` is the canonical timestamp when the caller gave one, else ``None`` (the
    acceptance time is used). ``metadata`` is the caller's object, already checked for depth
    and I-JSON numbers; its canonical size is checked where it is serialised.
    """

    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: Mapping[str, Any] | None
    occurred_at: str | None


def body_list(document: Any, field: str, noun: str, limits: DeltaLimits) -> list[Any]:
    """The ``field`` array of a JSON object body: present, an array, 1..``max_items`` long."""
    if not isinstance(document, dict):
        raise ValidationError("body", f"must be a JSON object, got {describe(document)}")
    values = document.get(field)
    if values is None:
        raise ValidationError(field, "is required")
    if not isinstance(values, list):
        raise ValidationError(field, f"must be an array, got {describe(values)}")
    if not values:
        raise ValidationError(field, f"must hold at least one {noun}")
    if len(values) > limits.max_items:
        raise ValidationError(field, f"must hold at most {limits.max_items} {noun}s, got {len(values)}")
    return values


def check_item_key(value: object, field: str, limits: DeltaLimits) -> str:
    """An idempotency key: a non-empty string of at most ``max_key_length`` characters."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {describe(value)}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > limits.max_key_length:
        raise ValidationError(field, f"must be at most {limits.max_key_length} characters, got {len(value)}")
    check_text(value, field)
    return value


def check_account_id(value: object, field: str) -> str:
    """1-128 characters of ``[A-Za-z0-9_.:-]``."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {describe(value)}")
    if ACCOUNT_ID_PATTERN.fullmatch(value) is None:
        if not value:
            raise ValidationError(field, "must not be empty")
        if len(value) > 128:
            raise ValidationError(field, f"must be at most 128 characters, got {len(value)}")
        raise ValidationError(field, f"may contain only letters, digits and _ . : - , got {describe(value)}")
    return value


def check_new_account_id(value: object, field: str) -> str:
    """An account id a write may introduce: :func:`check_account_id`, and not ``.`` or ``..``.

    Those two are dot segments (RFC 3986 §5.2.4): HTTP clients remove them from a URL before
    sending it, so ``GET /api/v1/balance/derive/..`` would reach another path and the account
    could never be read by its id. Reads still take them, for accounts written before."""
    account_id = check_account_id(value, field)
    if account_id in (".", ".."):
        raise ValidationError(
            field, f'must not be "." or ".." (a URL cannot carry them), got {describe(value)}'
        )
    return account_id


def check_amount(value: object, field: str, limits: DeltaLimits) -> int:
    """A JSON integer, non-zero, with ``|value| <= max_abs_amount``.

    ``1.5``, ``1e3``, ``"3"`` and ``true`` are refused: amounts are exact integers.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {describe(value)}")
    if value == 0:
        raise ValidationError(field, "must not be zero")
    if abs(value) > limits.max_abs_amount:
        raise ValidationError(
            field,
            f"must be between -{limits.max_abs_amount} and {limits.max_abs_amount}, got {describe(value)}",
        )
    return value


def check_reason(value: object, field: str, limits: DeltaLimits) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {describe(value)}")
    if len(value) > limits.max_reason_length:
        raise ValidationError(
            field, f"must be at most {limits.max_reason_length} characters, got {len(value)}"
        )
    check_text(value, field)
    return value


def check_metadata(value: object, field: str, limits: DeltaLimits) -> Mapping[str, Any] | None:
    """An optional JSON object of depth ``<= max_metadata_depth`` holding I-JSON values."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(field, f"must be an object, got {describe(value)}")
    stack: list[tuple[Any, int, str]] = [(value, 1, field)]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > limits.max_metadata_depth:
                raise ValidationError(path, f"nests deeper than {limits.max_metadata_depth} levels")
            for key, child in node.items():
                check_text(key, f"{path} key")
                stack.append((child, depth + 1, f"{path}.{key[:32]}"))
        elif isinstance(node, list):
            if depth > limits.max_metadata_depth:
                raise ValidationError(path, f"nests deeper than {limits.max_metadata_depth} levels")
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            check_text(node, path)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValidationError(path, f"numbers in metadata must be finite, got {describe(node)}")
        elif isinstance(node, float) and not read_as_written(node):
            raise ValidationError(
                path,
                f"numbers in metadata must be read back as written, got {describe(node)}, which a "
                f"double holds only as {node!r}; send it as a string",
            )
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > _I_JSON_MAX:
            raise ValidationError(
                path, f"integers in metadata must be within ±(2^53-1), got {describe(node)}"
            )
    return value


LAST_MONTH_START = "9999-12-01T00:00:00.000000Z"
"""Deltas occur before the last month a timestamp can name: each month a delta falls in then
has a next month, whose first instant ends it in period queries and month totals."""


def optional_occurred_at(value: object, field: str) -> str | None:
    """``None`` when absent, else the canonical form of an RFC 3339 date-time before
    :data:`LAST_MONTH_START`."""
    if value is None:
        return None
    canonical = format_canonical(parse_rfc3339(value, field))
    if canonical >= LAST_MONTH_START:
        raise ValidationError(field, f"must be before 9999-12-01T00:00:00Z, got {describe(value)}")
    return canonical
