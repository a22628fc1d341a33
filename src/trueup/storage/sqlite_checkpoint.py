"""Copying SQLite's WAL back into the database file, and keeping the WAL short under load.

The server's connections never checkpoint as they commit (``wal_autocheckpoint=0``): by default
SQLite checkpoints inside the commit that takes the WAL past 1,000 pages, and the writer then
copies pages and fsyncs the database file while every other write waits (with a thread of its
own instead, a seal's commit measured 2.8 instead of 8.6 µs per leaf). :class:`Checkpointer`
is that thread. Durability does not depend on it: every commit is fsynced into the WAL.

SQLite starts the WAL over from its beginning only when a write transaction begins after a
checkpoint has copied all of it. A PASSIVE checkpoint blocks nobody, so under a steady load
writers append while it copies, it never reaches the end, and the WAL grew without bound: 1.2
GB after 14 seconds of single-item writes over a 57 MB database, each new page of it zeroed by
the kernel, and every page lookup searching a longer WAL index. So once the WAL is long
(``restart_pages``) a round copies twice, the second pass taking what was appended during the
first, and then asks the next writer to copy the little that is left before it begins
(:meth:`trueup.storage.sqlite.SQLiteEngine.write`): with the writer's turn held nobody can
append, so that pass reaches the end and the transaction after it starts the WAL over. That
pass held the writer 2-15 ms under single-item load (20-120 ms under 1,000-item writes, whose
transactions append thousands of pages), once per round; rounds come every quarter second while
they find the WAL long (:func:`next_wait`). Against the WAL that only grew, single-item writes
went 1.1-1.3x as fast and the sequencer spent about 15 % less CPU per delta of batched writes
(docs/benchmarks-history.md, "What changed on 2026-12-04 (after 22:45)").

A reader that began before a round and is still reading keeps its frames from being copied
and the WAL from being started over; a later round does it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from trueup.storage.errors import StorageUnavailableError

__all__ = ["Checkpointer", "passive_checkpoint"]

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
"""Seconds between rounds: rarely enough that a page written many times is copied once."""

RESTART_PAGES = 4_096
"""A WAL this long (pages of 4 KiB: 16 MiB) is started over after its round."""

BUSY_PAGES = 1_024
"""A round that finds at least this many pages (4 MiB) in the WAL has the next come sooner."""

ASK_LEFT_PAGES = 1_024
"""A round asks the next writer to finish only if its second pass left at most this many."""

BUSY_INTERVAL_S = 0.25
"""Seconds between rounds while writes are heavy (see :data:`BUSY_PAGES`)."""

_FRESH_S = 0.5
"""How long a round's ask stands (:meth:`Checkpointer.take_restart`)."""


def passive_checkpoint(conn: sqlite3.Connection) -> tuple[bool, int, int]:
    """``PRAGMA wal_checkpoint(PASSIVE)``: (busy, pages in the WAL, pages copied).

    The counts are of the WAL as it was when the checkpoint began: pages appended while it
    copied are in neither, so ``copied == pages`` does not mean the WAL's end was reached
    unless no writer could append meanwhile.
    """
    busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(busy), int(pages), int(copied)


def next_wait(pages: int, interval_s: float) -> float:
    """Seconds until the round after one that found ``pages`` in the WAL.

    Under heavy writes (tens of MB a second) a 2-second round finds a WAL of a hundred MB or
    more, copies it while more is appended, and leaves the writer's pass (and the file, cut back
    to ``journal_size_limit`` when it starts over) that much more to do: rounds then come every
    :data:`BUSY_INTERVAL_S`, and each finds a WAL of a few MB to copy.
    """
    return min(interval_s, BUSY_INTERVAL_S) if pages >= BUSY_PAGES else interval_s


class Checkpointer(threading.Thread):
    """Runs a checkpoint round every ``interval_s``, or every :data:`BUSY_INTERVAL_S` while the
    rounds find the WAL long (:func:`next_wait`)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_s: float = INTERVAL_S,
        restart_pages: int = RESTART_PAGES,
    ) -> None:
        super().__init__(name="trueup-sqlite-checkpoint", daemon=True)
        self._connect = connect
        self._interval = interval_s
        self._restart_pages = restart_pages
        self._stop_event = threading.Event()
        self._restart_asked: float | None = None
        """When a round that found the WAL long and copied nearly all of it asked the next
        writer to copy the rest (:meth:`take_restart`)."""

    def run(self) -> None:
        try:
            conn = self._connect()
        except StorageUnavailableError:
            log.exception("cannot open the WAL checkpoint connection; the WAL will grow until restart")
            return
        try:
            wait = self._interval
            while not self._stop_event.wait(wait):
                try:
                    pages = self.round(conn)
                except sqlite3.Error as exc:  # busy with another process's checkpoint, disk full…
                    log.warning("WAL checkpoint failed, retrying: %s", exc)
                    pages = 0
                wait = next_wait(pages, self._interval)
        finally:
            conn.close()

    def round(self, conn: sqlite3.Connection) -> int:
        """Copy the WAL back; once it is long, copy again and ask the next writer to finish.
        Returns the pages the WAL held when the round began."""
        busy, pages, _ = passive_checkpoint(conn)
        if busy or pages < self._restart_pages:
            return pages
        busy, left, copied = passive_checkpoint(conn)
        # A reader in an older snapshot holds pages back: asking then would leave the writer
        # all that was appended since, to copy while it holds the writer's turn.
        if not busy and left - copied <= ASK_LEFT_PAGES:
            self._restart_asked = time.monotonic()
        return pages

    def take_restart(self) -> float | None:
        """The standing ask, if the writer about to begin should copy the rest first; taken
        once (:meth:`put_back` returns it).

        An ask older than :data:`_FRESH_S` is dropped: in a process that has not written since
        (an idle worker beside busy ones), the rest is by now whatever the others appended.
        """
        asked, self._restart_asked = self._restart_asked, None
        return asked if asked is not None and time.monotonic() - asked < _FRESH_S else None

    def put_back(self, asked: float) -> None:
        """Let the next writer take ``asked`` again: this one's pass found another checkpoint
        (the round's own, or another process's) copying."""
        if self._restart_asked is None:
            self._restart_asked = asked

    def round_now(self) -> None:
        """One round from the calling thread, on a connection of its own (for tests: the
        thread's rounds come at times of its choosing)."""
        conn = self._connect()
        try:
            self.round(conn)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
