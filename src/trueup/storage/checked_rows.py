"""Reading rows that may have been tampered with, for audits: each value of the kind its column
holds, or :class:`MalformedRowError` naming the row and the column.

SQLite keeps what it is given (text or a float in an integer column, a missing figure), so an
audit cannot convert a value blindly: ``int("4")`` would pass an edited row, ``int("four")``
would stop the audit with a traceback instead of naming what is wrong.
"""

from __future__ import annotations

from typing import TypeVar

from trueup.storage.engine import Row
from trueup.storage.errors import StorageError

__all__ = ["CheckedRow", "MalformedRowError"]

_T = TypeVar("_T", int, str, bytes)


class MalformedRowError(StorageError):
    """A stored row holds a value of the wrong kind (an audit names it)."""

    def __init__(self, where: str, column: str, value: object) -> None:
        super().__init__(f"{where}: its stored {column} is {value!r:.80}, not a value it can hold")


class CheckedRow:
    """The values of one row, each checked for its kind; ``where`` names the row in errors."""

    __slots__ = ("_row", "_where")

    def __init__(self, row: Row, where: str) -> None:
        self._row = row
        self._where = where

    def get(self, index: int, column: str, kind: type[_T]) -> _T:
        value = self._row[index]
        if kind is bytes:
            valid = isinstance(value, bytes | bytearray | memoryview)
        else:
            valid = isinstance(value, kind) and not isinstance(value, bool)
        if not valid:
            raise MalformedRowError(self._where, column, value)
        return kind(value)

    def maybe(self, index: int, column: str, kind: type[_T]) -> _T | None:
        return None if self._row[index] is None else self.get(index, column, kind)
