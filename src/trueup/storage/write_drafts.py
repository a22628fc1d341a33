"""What a write request is on its way into storage: the drafts of a request and of its deltas,
what committing them gives back, and the ``deltas`` and ``write_requests`` rows they are stored
as (by the group commit, :mod:`trueup.storage.writes`, and by the checked path,
:mod:`trueup.storage.checked_write`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from trueup.core.errors import DomainError
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse

__all__ = [
    "DELTA_INSERT_COLUMNS",
    "REQUEST_INSERT_COLUMNS",
    "DeltaDraft",
    "ItemConflict",
    "Original",
    "WriteDraft",
    "WriteResult",
    "delta_rows",
]


class DeltaDraft(NamedTuple):
    """One delta ready to store. ``metadata`` is canonical JSON text; times are canonical.

    A NamedTuple rather than a frozen dataclass: a thousand are built per write request, and
    a frozen dataclass's ``__init__`` costs several times more.
    """

    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: str | None
    occurred_at: str
    explicit_time: bool
    salt: bytes


@dataclass(frozen=True, slots=True)
class ItemConflict:
    """An item refused alone (emit batches report conflicts per item)."""

    index: int
    error: DomainError


class Original(NamedTuple):
    """The stored delta that an identical repeat (item ``item`` of a request) stands for."""

    item: int
    record_id: str
    status: str
    accepted_at: str
    """When the original was accepted (canonical): the record's ``createdAt``."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed request stored: indices of new items and of identical repeats."""

    request_id: str
    stored: tuple[int, ...] = ()
    duplicates: tuple[int, ...] = ()
    conflicts: tuple[ItemConflict, ...] = ()
    replay: StoredResponse | None = None
    originals: tuple[Original, ...] = ()
    accepted_at: str = ""
    """When the request was accepted (canonical); empty for a replay."""


@dataclass(frozen=True, slots=True)
class WriteDraft:
    """One write request to commit.

    ``allowance`` is the tenant's monthly allowance of accepted deltas (``None``: unlimited).
    ``per_item_conflicts``: a key conflict refuses that item only instead of the request.
    ``render`` builds the reply stored under the idempotency key, inside the transaction.
    """

    tenant_id: str
    request_id: str
    source: str
    accepted_at: str
    items: Sequence[DeltaDraft]
    idempotency: IdempotencyClaim | None = None
    allowance: int | None = None
    per_item_conflicts: bool = False
    positions: tuple[int, ...] = ()  # each item's index in the request body, when they differ
    render: Callable[[WriteResult], StoredResponse] | None = field(default=None, compare=False)


DELTA_INSERT_COLUMNS = (
    "tenant_id",
    "request_id",
    "item_index",
    "item_key",
    "customer_id",
    "amount",
    "reason",
    "metadata",
    "occurred_at",
    "period",
    "accepted_at",
    "salt",
    "status",
)

REQUEST_INSERT_COLUMNS = (
    "id",
    "tenant_id",
    "source",
    "item_count",
    "stored_count",
    "pending_count",
    "accepted_at",
    "verified_at",
)


def delta_rows(draft: WriteDraft, indexes: Sequence[int] | None = None) -> list[tuple[object, ...]]:
    """The ``deltas`` rows (``DELTA_INSERT_COLUMNS``) of the draft's items at ``indexes``
    (all of them by default), queued."""
    items = draft.items
    return [
        (
            draft.tenant_id,
            draft.request_id,
            index,
            item.key,
            item.customer_id,
            item.amount,
            item.reason,
            item.metadata,
            item.occurred_at,
            item.occurred_at[:7],
            draft.accepted_at,
            item.salt,
            "queued",
        )
        for index in (range(len(items)) if indexes is None else indexes)
        for item in (items[index],)
    ]
