"""What was written, as the API shows it: a write request with a page of its items, one
stored delta (a record) with its sealing state, and the plan's meter. Read inside the caller's
transaction, so a balance snapshot can ask too (:mod:`trueup.storage.balances`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trueup.storage.engine import Row, Tx

__all__ = [
    "RECORD_COLUMNS",
    "RecordView",
    "RequestView",
    "read_record",
    "read_record_at_leaf",
    "read_request",
    "read_used",
    "record_from_row",
]


@dataclass(frozen=True, slots=True)
class RecordView:
    """One stored delta with its sealing state (``leaf_index`` etc. are set once verified)."""

    seq: int
    tenant_id: str
    request_id: str
    item_index: int
    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: str | None
    occurred_at: str
    accepted_at: str
    salt: bytes
    status: str
    leaf_index: int | None
    sealed_size: int | None
    verified_at: str | None
    failure: str | None


@dataclass(frozen=True, slots=True)
class RequestView:
    """A write request and one page of its items (``None`` entries are not on this page)."""

    request_id: str
    source: str
    item_count: int
    stored_count: int
    pending_count: int
    accepted_at: str
    verified_at: str | None
    items: tuple[tuple[int, str, RecordView], ...]  # (item index, "stored"|"duplicate", record)
    failed_count: int = 0  # stored items that failed at sealing
    repeat_statuses: Mapping[str, int] = field(default_factory=dict)  # originals of repeats
    sealed_size: int | None = None  # the largest tree head that sealed any of its items


RECORD_COLUMNS = """seq, tenant_id, request_id, item_index, item_key, customer_id, amount, reason,
    metadata, occurred_at, accepted_at, salt, status, leaf_index, sealed_size, verified_at,
    failure"""


# The same columns of the original delta an identical repeat stands for (joined as ``d``).
_ORIGINAL_COLUMNS = ", ".join("d." + column.strip() for column in RECORD_COLUMNS.split(","))


def record_from_row(row: Row) -> RecordView:
    """Build a :class:`RecordView` from a row selected with ``RECORD_COLUMNS``."""
    values = list(row)
    values[11] = bytes(values[11])  # BLOB (SQLite) and BYTEA (PostgreSQL) alike
    return RecordView(*values)


def read_used(tx: Tx, tenant_id: str, period: str) -> int:
    """New deltas the tenant stored in ``period`` (the plan's meter)."""
    value = tx.scalar(
        "SELECT accepted_count FROM usage_months WHERE tenant_id = ? AND period = ?",
        (tenant_id, period),
    )
    return 0 if value is None else int(value)


def read_request(tx: Tx, tenant_id: str, request_id: str, limit: int, offset: int) -> RequestView | None:
    """A request of ``tenant_id`` with items ``offset .. offset+limit-1``, or ``None``."""
    row = tx.one(
        """SELECT id, source, item_count, stored_count, pending_count, accepted_at,
                  verified_at, failed_count FROM write_requests
           WHERE id = ? AND tenant_id = ?""",
        (request_id, tenant_id),
    )
    if row is None:
        return None
    sealed_size = tx.scalar("SELECT MAX(sealed_size) FROM deltas WHERE request_id = ?", (request_id,))
    repeats: dict[str, int] = {}
    for status, count, repeat_size in tx.execute(
        """SELECT d.status, COUNT(*), MAX(d.sealed_size)
           FROM write_duplicates w JOIN deltas d ON d.seq = w.original_seq
           WHERE w.request_id = ? GROUP BY d.status""",
        (request_id,),
    ):
        repeats[str(status)] = int(count)
        if repeat_size is not None and (sealed_size is None or repeat_size > sealed_size):
            sealed_size = repeat_size
    verified_at = row[6]
    if verified_at is None and int(row[4]) == 0 and repeats and "queued" not in repeats:
        # Every item repeated a delta still queued when this request came, so no seal
        # settled it: it was complete when the last of those originals was sealed (a
        # failed one has no time of its own: its request's, once that is complete).
        verified_at = tx.scalar(
            """SELECT MAX(COALESCE(d.verified_at, r.verified_at)) FROM write_duplicates w
               JOIN deltas d ON d.seq = w.original_seq
               LEFT JOIN write_requests r ON r.id = d.request_id
               WHERE w.request_id = ?""",
            (request_id,),
        )
    last = offset + limit - 1
    own = tx.execute(
        f"""SELECT {RECORD_COLUMNS} FROM deltas
            WHERE request_id = ? AND item_index BETWEEN ? AND ? ORDER BY item_index""",
        (request_id, offset, last),
    )
    repeated = tx.execute(
        f"""SELECT w.item_index, {_ORIGINAL_COLUMNS}
            FROM write_duplicates w JOIN deltas d ON d.seq = w.original_seq
            WHERE w.request_id = ? AND w.item_index BETWEEN ? AND ?""",
        (request_id, offset, last),
    )
    items = [(int(r[3]), "stored", record_from_row(r)) for r in own]
    items += [(int(r[0]), "duplicate", record_from_row(r[1:])) for r in repeated]
    items.sort(key=lambda entry: entry[0])
    return RequestView(
        request_id=str(row[0]),
        source=str(row[1]),
        item_count=int(row[2]),
        stored_count=int(row[3]),
        pending_count=int(row[4]),
        accepted_at=str(row[5]),
        verified_at=None if verified_at is None else str(verified_at),
        items=tuple(items),
        failed_count=int(row[7]),
        repeat_statuses=repeats,
        sealed_size=None if sealed_size is None else int(sealed_size),
    )


def read_record(tx: Tx, tenant_id: str, request_id: str, item_index: int) -> RecordView | None:
    """The delta stored for one item (following a duplicate to its original), or ``None``."""
    row = tx.one(
        f"SELECT {RECORD_COLUMNS} FROM deltas WHERE request_id = ? AND item_index = ? AND tenant_id = ?",
        (request_id, item_index, tenant_id),
    )
    if row is None:
        row = tx.one(
            f"""SELECT {_ORIGINAL_COLUMNS}
                FROM write_duplicates w JOIN deltas d ON d.seq = w.original_seq
                WHERE w.request_id = ? AND w.item_index = ? AND d.tenant_id = ?""",
            (request_id, item_index, tenant_id),
        )
    return None if row is None else record_from_row(row)


def read_record_at_leaf(tx: Tx, tenant_id: str, leaf_index: int) -> RecordView | None:
    """The tenant's delta sealed as leaf ``leaf_index``, or ``None``."""
    row = tx.one(
        f"SELECT {RECORD_COLUMNS} FROM deltas WHERE leaf_index = ? AND tenant_id = ?",
        (leaf_index, tenant_id),
    )
    return None if row is None else record_from_row(row)
