"""Storage errors: the one error root of the storage layer."""

from __future__ import annotations

__all__ = [
    "IntegrityConflictError",
    "SealConflictError",
    "StorageCorruptError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
    "TransactionConflictError",
]


class StorageError(Exception):
    """Base of everything the storage layer raises on its own account."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or refused the operation; callers fail closed."""

    reply = "storage is unavailable; retry shortly"
    """What a client is told: the error's own text may name files, hosts and tables."""


class StorageFullError(StorageUnavailableError):
    """The database's disk has no room left: nothing of the operation was written, and no
    write will be until space is freed, so a client is told that rather than to retry shortly."""

    reply = "the database's disk is full; nothing was stored, retry once space has been freed"
    read_reply = "the database's disk is full; retry once space has been freed"
    """What a client is told whose request only reads (a sort that spilled to a full disk)."""


class StorageCorruptError(StorageError):
    """The database file is damaged (SQLite's ``SQLITE_CORRUPT``, ``SQLITE_NOTADB``): no retry
    mends it, a restore from a backup does (docs/operations.md)."""


class TransactionConflictError(StorageUnavailableError):
    """The database ended a transaction to break a deadlock with another one (or a
    serialisation conflict): nothing of it was committed, and running it again may succeed."""


class IntegrityConflictError(StorageError):
    """A uniqueness rule was hit by a concurrent writer; the caller may retry once."""


class SealConflictError(StorageError):
    """The log moved under the sequencer (another sequencer sealed); reload and retry."""
