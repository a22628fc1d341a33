"""The body of ``POST /api/v1/writes`` (seed): ``{"items": [{key, accountId, bits, ...}]}``."""

from __future__ import annotations

from typing import Any

from trueup.core.deltas import (
    DeltaLimits,
    NewDelta,
    body_list,
    check_amount,
    check_item_key,
    check_metadata,
    check_new_account_id,
    check_reason,
    optional_occurred_at,
)
from trueup.core.errors import ValidationError
from trueup.core.strict_json import describe

__all__ = ["parse_writes_body"]


def parse_writes_body(document: Any, limits: DeltaLimits) -> list[NewDelta]:
    """Validate a decoded writes body; all-or-nothing.

    Unknown fields are ignored (forward compatibility with the seed). ``reason`` defaults to
    ``metadata.description`` when that is a string, else ``""``.

    Raises :class:`ValidationError` naming the first bad field, e.g. ``items[3].bits``.
    """
    items = body_list(document, "items", "item", limits)
    return [_parse_item(item, f"items[{index}]", limits) for index, item in enumerate(items)]


def _parse_item(item: Any, where: str, limits: DeltaLimits) -> NewDelta:
    if not isinstance(item, dict):
        raise ValidationError(where, f"must be an object, got {describe(item)}")
    for required in ("key", "accountId", "bits"):
        if required not in item:
            raise ValidationError(f"{where}.{required}", "is required")
    metadata = check_metadata(item.get("metadata"), f"{where}.metadata", limits)
    reason_value = item.get("reason")
    if reason_value is None:
        description = metadata.get("description") if metadata is not None else None
        reason_value = description if isinstance(description, str) else ""
        reason_value = reason_value[: limits.max_reason_length]
    return NewDelta(
        key=check_item_key(item["key"], f"{where}.key", limits),
        customer_id=check_new_account_id(item["accountId"], f"{where}.accountId"),
        amount=check_amount(item["bits"], f"{where}.bits", limits),
        reason=check_reason(reason_value, f"{where}.reason", limits),
        metadata=metadata,
        occurred_at=optional_occurred_at(item.get("occurredAt"), f"{where}.occurredAt"),
    )
