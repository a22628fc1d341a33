"""The emit surface (DESIGN.md §2.2): ``{customerId, delta, reason, referenceId?, metadata?,
occurredAt?}`` alone or as ``{"deltas": [...]}``, stored like write items."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

__all__ = ["BatchEntry", "parse_emit", "parse_emit_batch"]


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One batch element: its delta, or why it was refused (reported per item)."""

    index: int
    delta: NewDelta | None
    error: ValidationError | None
    customer_id: object
    amount: object


def parse_emit(
    document: Any, limits: DeltaLimits, new_reference: Callable[[], str], where: str = ""
) -> NewDelta:
    """One emitted delta; ``referenceId`` (the idempotency key) is generated when absent."""
    prefix = f"{where}." if where else ""
    if not isinstance(document, dict):
        raise ValidationError(where or "body", f"must be a JSON object, got {describe(document)}")
    for required in ("customerId", "delta", "reason"):
        if required not in document:
            raise ValidationError(f"{prefix}{required}", "is required")
    reference = document.get("referenceId")
    return NewDelta(
        key=new_reference()
        if reference is None
        else check_item_key(reference, f"{prefix}referenceId", limits),
        customer_id=check_new_account_id(document["customerId"], f"{prefix}customerId"),
        amount=check_amount(document["delta"], f"{prefix}delta", limits),
        reason=check_reason(document["reason"], f"{prefix}reason", limits),
        metadata=check_metadata(document.get("metadata"), f"{prefix}metadata", limits),
        occurred_at=optional_occurred_at(document.get("occurredAt"), f"{prefix}occurredAt"),
    )


def _echoed(value: object) -> object:
    """What a batch result echoes of a field as sent: a JSON scalar as it is, an array or an
    object as ``null`` (one nested as deep as the decoder allows could not be encoded back)."""
    return None if isinstance(value, list | dict) else value


def parse_emit_batch(
    document: Any, limits: DeltaLimits, new_reference: Callable[[], str]
) -> list[BatchEntry]:
    """``{"deltas": [...]}``: the array itself must be valid; each element may fail alone."""
    deltas = body_list(document, "deltas", "delta", limits)
    entries = []
    for index, element in enumerate(deltas):
        customer = _echoed(element.get("customerId")) if isinstance(element, dict) else None
        amount = _echoed(element.get("delta")) if isinstance(element, dict) else None
        try:
            parsed = parse_emit(element, limits, new_reference, f"deltas[{index}]")
        except ValidationError as error:
            entries.append(BatchEntry(index, None, error, customer, amount))
        else:
            entries.append(BatchEntry(index, parsed, None, customer, amount))
    return entries
