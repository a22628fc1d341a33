"""The log's signed tree heads and its stored tree nodes, read inside the caller's transaction:
the log store's own reads, a balance snapshot's and a period lock's, so what else that
transaction reads agrees with the head it names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trueup.storage.engine import Row, Tx

__all__ = ["HeadRecord", "head_at", "head_by_root", "head_from_row", "latest_head", "read_nodes"]

_VALUES_CHUNK = 300


@dataclass(frozen=True, slots=True)
class HeadRecord:
    """A signed tree head: ``root`` is raw 32 bytes, ``checkpoint`` the signed note text."""

    size: int
    root: bytes
    timestamp_ms: int
    checkpoint: str


_HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, checkpoint"


def latest_head(tx: Tx) -> HeadRecord | None:
    row = tx.one(f"SELECT {_HEAD_COLUMNS} FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
    return None if row is None else head_from_row(row)


def head_at(tx: Tx, size: int) -> HeadRecord | None:
    row = tx.one(f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tree_size = ?", (size,))
    return None if row is None else head_from_row(row)


def head_by_root(tx: Tx, root: bytes) -> HeadRecord | None:
    row = tx.one(
        f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE root_hash = ? ORDER BY tree_size DESC LIMIT 1",
        (root,),
    )
    return None if row is None else head_from_row(row)


def read_nodes(tx: Tx, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Stored tree nodes by ``(level, index)`` within ``tx``; missing ones are absent."""
    wanted = list(dict.fromkeys(ids))
    found: dict[tuple[int, int], bytes] = {}
    for relation, params in tx.relations(wanted, ("bigint", "bigint"), _VALUES_CHUNK):
        rows = tx.execute(
            # A join, not "(level, idx) IN (VALUES …)": SQLite plans the latter as a full scan.
            f"""SELECT t.level, t.idx, t.hash FROM {relation}
                JOIN tree_nodes t ON t.level = w.column1 AND t.idx = w.column2""",
            params,
        )
        for level, idx, digest in rows:
            found[(int(level), int(idx))] = bytes(digest)
    return found


def head_from_row(row: Row) -> HeadRecord:
    return HeadRecord(
        size=int(row[0]),
        root=bytes(row[1]),
        timestamp_ms=int(row[2]),
        checkpoint=str(row[3]),
    )
