"""The small contract both database backends implement.

Repositories in this package write plain SQL once, with ``?`` placeholders, against a
:class:`Tx`. A backend supplies transactions: SQLite serialises all writers through one
connection (one writer, group commit above it); PostgreSQL hands out pooled connections.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "INT64_RANGE",
    "BulkUpdate",
    "BulkUpsert",
    "Dialect",
    "Engine",
    "Leadership",
    "Row",
    "Tx",
]

Row = tuple[Any, ...]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What an integer column holds (SQLite's INTEGER, PostgreSQL's BIGINT)."""
INT64_RANGE = f"-{2**63:,} to {INT64_MAX:,}"
"""That range as messages quote it."""


class Leadership:
    """What :meth:`Engine.try_leader_lock` yields: true while this process holds the role.

    A lock can be lost while its holder runs on: a PostgreSQL session ends when an operator
    terminates it, the server restarts or fails over, or an idle timeout or a pooler drops it,
    and its advisory lock goes with it, to be taken by a standby within a second. A holder that
    never asked would go on beside the new one (sending every webhook twice), so the roles ask
    :meth:`still_held` between rounds and stand by again once it says no.
    """

    __slots__ = ("_check", "held")

    def __init__(self, held: bool, check: Callable[[], bool] | None = None) -> None:
        self.held = held
        self._check = check

    def __bool__(self) -> bool:
        return self.held

    def still_held(self) -> bool:
        """Whether the lock is still this process's (once lost, it stays lost)."""
        if self.held and self._check is not None and not self._check():
            self.held = False
        return self.held


class BulkUpdate(NamedTuple):
    """The arguments of :meth:`Tx.update_rows`, as a backend's ``_update_rows`` gets them."""

    table: str
    key: str
    columns: Mapping[str, str]
    rows: Sequence[Sequence[Any]]
    only_if: str | None


class BulkUpsert(NamedTuple):
    """The arguments of :meth:`Tx.upsert_rows`, as a backend's ``_upsert_rows`` gets them."""

    table: str
    conflict: Sequence[str]
    columns: Mapping[str, str]
    update: Sequence[str]
    rows: Sequence[Sequence[Any]]


class Dialect(abc.ABC):
    """What differs between the SQL dialects: DDL type names and a few statements."""

    name: str

    @abc.abstractmethod
    def ddl(self, template: str) -> str:
        """Expand the type tokens of a schema template (``{BLOB}``, ``{SERIAL_PK}`` …)."""


class Tx(abc.ABC):
    """One open transaction (or read snapshot). Parameters use ``?`` placeholders."""

    share_rows: str = ""
    """What a ``SELECT`` of a write transaction ends with to hold the rows it read against
    another transaction's update until it ends: nothing where writers are serialised (SQLite),
    `` FOR SHARE`` on PostgreSQL."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; return its rows (an empty list for statements without rows)."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement for each parameter row; return the number of rows they changed."""

    def execute_in_index_order(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """:meth:`execute` a query whose rows an index gives in the order it asks for, reading
        them through that index rather than gathering and sorting them all.

        SQLite's planner already does. PostgreSQL's chooses a bitmap scan and a sort of every
        matching row when its statistics say the rows lie scattered over the table, or that few
        match: both are true of the sequencer's queue (``status = 'queued'``), whose rows sealing
        rewrites elsewhere, and which the last ``ANALYZE`` may have found short. Each seal then
        read every queued row, and every entry its predecessors left in the index until a vacuum
        removes them, to keep the first 1,000: 17 ms a seal with 20,000 queued, where reading
        them in order took 0.9 ms. It also starts a join from a small table it has no
        statistics of, and sorts what the join gives: the dispatcher's look for due deliveries
        joined all of a backlog of 30,000 to keep the first 16 (100 ms; 0.1 ms in order).
        """
        return self.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or ``None``."""
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or ``None``."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        kinds: Sequence[str] | None = None,
    ) -> None:
        """Insert many rows into ``table`` (a plain multi-row insert). PostgreSQL uses COPY, or,
        given ``kinds`` (the columns' types, as for :meth:`relations`), one ``INSERT`` from
        arrays per 5,000 rows: for a transaction that holds a lock other processes wait for. A
        COPY under way keeps its session "active" while its client sends nothing (stopped, or
        stuck), so the server's idle-in-transaction timeout never ends it, nor the lock."""
        if rows:
            marks = ", ".join("?" * len(columns))
            self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def one_of(self, column: str, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        """The condition "``column`` is one of ``values``" and its parameters, to put in a
        ``WHERE`` clause. ``kind`` is the values' PostgreSQL type (``text``, ``bigint``):
        PostgreSQL gets them as one array, so the statement and its plan do not depend on how
        many there are (planning a long ``IN`` list cost more than running it).
        """
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def relations(
        self, rows: Sequence[Sequence[Any]], kinds: Sequence[str], part: int
    ) -> Iterator[tuple[str, list[Any]]]:
        """``rows`` as relations ``w(column1, column2, …)`` to join against, each with its
        parameters. ``kinds`` are the columns' PostgreSQL types (``text``, ``bigint``).

        SQLite: ``(VALUES (?, ?), …) AS w`` of at most ``part`` rows each. PostgreSQL:
        ``unnest(?::text[], …) AS w(column1, …)``, one array per column, of up to 5,000 rows
        each, whose cost to plan does not grow with the rows (a ``VALUES`` list of 300 rows took
        4-6 ms to plan and run, even against an empty table).
        """
        width = len(kinds)
        for chunk in chunks(rows, part):
            marks = "(" + ", ".join("?" * width) + ")"
            yield f"(VALUES {', '.join(marks for _ in chunk)}) AS w", [v for row in chunk for v in row]

    def update_rows(
        self,
        table: str,
        key: str,
        columns: Mapping[str, str],
        rows: Sequence[Sequence[Any]],
        only_if: str | None = None,
    ) -> int:
        """Update many rows of ``table``, each found by its integer ``key`` column and, if
        given, the condition ``only_if`` on its stored columns (plain SQL with no parameters,
        ``?`` or ``%``, e.g. ``status = 'queued'``); return how many rows were updated.

        ``columns`` pairs each column name with its PostgreSQL type (``bigint``, ``text``); each
        row is ``(key value, *values of columns)`` in the order of ``columns``, and no key may
        repeat (which row would win differs between the backends, so it is refused).
        PostgreSQL sends every column as one typed array and updates all rows with one
        statement; SQLite puts many rows in each ``UPDATE … FROM (VALUES …)``.
        """
        if not rows:
            return 0
        _refuse_repeats([row[0] for row in rows], f"update_rows({table}): key {key}")
        return self._update_rows(BulkUpdate(table, key, columns, rows, only_if))

    def _update_rows(self, bulk: BulkUpdate) -> int:
        sets = ", ".join(f"{name} = ?" for name in bulk.columns)
        condition = f" AND ({bulk.only_if})" if bulk.only_if else ""
        return self.executemany(
            f"UPDATE {bulk.table} SET {sets} WHERE {bulk.key} = ?{condition}",
            [(*row[1:], row[0]) for row in bulk.rows],
        )

    def upsert_rows(
        self,
        table: str,
        conflict: Sequence[str],
        columns: Mapping[str, str],
        update: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert many rows into ``table``; where one clashes with a stored row on the unique
        ``conflict`` columns, set that row's ``update`` columns to the new values instead.

        ``columns`` pairs each column name with its PostgreSQL type, as in :meth:`update_rows`;
        each row holds the values of ``columns`` in their order. No two rows may share their
        ``conflict`` values (PostgreSQL refuses to update one row twice in a statement).
        """
        if rows:
            positions = [list(columns).index(name) for name in conflict]
            _refuse_repeats(
                [tuple(row[i] for i in positions) for row in rows], f"upsert_rows({table}): {conflict}"
            )
            self._upsert_rows(BulkUpsert(table, conflict, columns, update, rows))

    def _upsert_rows(self, bulk: BulkUpsert) -> None:
        marks = ", ".join("?" * len(bulk.columns))
        sets = ", ".join(f"{name} = excluded.{name}" for name in bulk.update)
        self.executemany(
            f"INSERT INTO {bulk.table} ({', '.join(bulk.columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(bulk.conflict)}) DO UPDATE SET {sets}",
            bulk.rows,
        )

    @abc.abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """A nested unit that rolls back alone when the block raises."""


class Engine(abc.ABC):
    """A database: write transactions, read snapshots, and its dialect."""

    dialect: Dialect
    url: str

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """A read-write transaction, committed durably when the block exits cleanly."""

    @abc.abstractmethod
    def read(self, wait_s: float | None = None) -> AbstractContextManager[Tx]:
        """A consistent read-only snapshot. ``wait_s`` bounds the wait for a connection where
        connections are pooled (PostgreSQL; a server that is down is then known at once), in
        place of the pool's own bound."""

    @abc.abstractmethod
    def try_leader_lock(self, name: str) -> AbstractContextManager[Leadership]:
        """Hold the named single-writer role while the block runs, if nobody else does.

        Yields a :class:`Leadership`, true when this process holds the role, which says
        whether it still does. PostgreSQL uses a session advisory lock (released when the holder
        dies, or its session ends); SQLite, an exclusive file lock.
        """

    @abc.abstractmethod
    def leader_held(self, name: str, tx: Tx) -> bool | None:
        """Whether some process (this one or another, on any host) holds the named role now,
        without asking for it: what an API-only host reports of the sequencer and dispatcher
        that run elsewhere (``None``: it cannot tell). Asked within ``tx``, a read of this
        engine's, where the backend keeps its locks in the database."""

    def serialize(self, tx: Tx, name: str) -> None:  # noqa: B027 - a no-op by default on purpose
        """Serialise transactions that call this with the same ``name`` until they end.

        A no-op where writers are already serialised (SQLite); a transaction-level advisory
        lock on PostgreSQL.
        """

    def refresh_statistics(self, tables: Sequence[str]) -> None:  # noqa: B027 - a no-op by default on purpose
        """Bring the query planner's statistics of ``tables`` up to date.

        ``ANALYZE`` on PostgreSQL. A no-op on SQLite, whose planner has no statistics here (the
        database is never analysed, so its plans follow from the schema alone).
        """

    def damage(self, limit: int = 5) -> list[str]:
        """What the database's own check of its file finds damaged (up to ``limit`` findings;
        none: sound). SQLite's ``PRAGMA integrity_check``, which reads every page and index
        entry. PostgreSQL keeps no one file to check this way: an empty list.
        """
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection."""


def _refuse_repeats(keys: list[Any], what: str) -> None:
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what} repeats a key")


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Slices of at most ``size`` values, for ``IN`` lists under parameter limits."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
