"""The sealing loop: elect this process as the one sequencer, then seal on a timer.

A sequencer seals a batch every ``interval`` or as soon as a full batch is queued, whichever
comes first (the interval has no default here: ``TRUEUP_SEAL_INTERVAL_MS``'s is the only one).
Each seal may take up to twice as many deltas as the one before it took (at least
``batch_size``, at most ``max_batch_size``): while a backlog lasts, seals grow, and a seal's fixed
costs (the writer's turn, the commit, the signed head) are shared by more deltas, so sealing keeps
pace with group commits that each bring thousands; when the writes stop, seals shrink back to
``batch_size``.

Only one sequencer is active per database: the role is taken with a leader lock (a PostgreSQL
advisory lock, or a file lock beside the SQLite file); a second instance waits as a hot standby
and takes over within ``standby_poll`` seconds when the holder dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from trueup.service.metrics import SEAL_FAILURES, observe_seal
from trueup.service.roles import ElectedRole
from trueup.service.sealing import Sealer
from trueup.storage import Storage
from trueup.storage.errors import SealConflictError
from trueup.storage.seal import SealOutcome

__all__ = ["FullBatchTrigger", "SequencerLoop", "StatisticsSchedule", "next_seal_limit"]

log = logging.getLogger(__name__)

MAX_FAILURE_WAIT_S = 5.0
"""The longest wait between tries after seals fail in a row (the interval, doubled each time)."""


def next_seal_limit(taken: int, batch_size: int, max_batch_size: int) -> int:
    """How many deltas the next seal may take: twice as many as the last one took, within
    ``[batch_size, max_batch_size]``.

    About as many as the last seal took arrived while it ran, so the size follows the rate of
    arrival. A seal that took fewer than it could is no reason to start over at one batch: with
    writes held back at a queue depth (``TRUEUP_QUEUE_PACE_DEPTH``) below the largest seal, the
    queue is drained by every seal, and seals that started over at 1,000 each time sealed a
    quarter less on SQLite under batched load than seals that stayed large.
    """
    return max(batch_size, min(taken * 2, max_batch_size))


class FullBatchTrigger:
    """Counts the deltas queued since the last seal and says when a full batch waits.

    The request path adds (from the group-commit thread) while the sealing side resets (the
    sequencer thread when a seal starts; the thread reading a child's reports when one is
    reported done, the first it hears of it, so what was queued during that seal is not
    counted and waits at most one interval). Both go under a lock: the interpreter lock happens
    to keep these few steps from interleaving today, but nothing promises it (a free-threaded
    build does not), and an interleaving would lose a reset (an early wake-up) or an addition
    (a late one).
    """

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._count = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> bool:
        """Count ``count`` more queued deltas; true (and start over) once a batch is full."""
        with self._lock:
            self._count += count
            if self._count < self._batch_size:
                return False
            self._count = 0
            return True

    def reset(self) -> None:
        """Start counting again: a seal has taken what was queued so far."""
        with self._lock:
            self._count = 0


class StatisticsSchedule:
    """When the sequencer refreshes the database's planner statistics: when it takes the role,
    then each time the log has grown by ``fraction`` of its size at the last refresh (by
    default, each time it has doubled), and by at least ``min_growth`` leaves.

    PostgreSQL plans each query from statistics that autovacuum refreshes after a table has
    changed by a tenth, at most once a minute, or never where it is turned off. A log growing by
    thousands of rows a second outruns them, and a plan made for the table of a minute ago can
    cost ten times as much or more: with statistics of an empty table, the duplicate-key check
    of a 1,000-item write read the tenant's whole key range (45-85 ms per 400 keys at 116,000
    deltas) instead of looking each key up (2-9 ms). The sequencer knows how fast the log grows,
    so it refreshes them itself.

    Each time the log doubles is often enough: the planner scales a table's row count to its
    current size on its own, and what a refresh adds (the spread of each column's values) does
    not change much between a log and one twice as large. It is also cheap: all the refreshes
    of a log, whatever its size, cost at most about twice the last one. A refresh every tenth
    of growth, as autovacuum does, cost about 20 µs of PostgreSQL's CPU per delta, a fifth of
    all the work per delta, in a benchmark load of a few hundred thousand deltas from an empty
    log (an ``ANALYZE`` of ``deltas`` at 200,000 rows took 0.7 s).
    """

    def __init__(self, min_growth: int = 10_000, fraction: float = 1.0) -> None:
        self._min_growth = min_growth
        self._fraction = fraction
        self._size: int | None = None  # the log's size at the last refresh

    def due(self, size: int) -> bool:
        """Whether the statistics should be refreshed now that the log has ``size`` leaves."""
        if self._size is None:
            return True
        return size - self._size >= max(self._min_growth, self._fraction * self._size)

    def refreshed(self, size: int) -> None:
        """The statistics were refreshed (or tried) at ``size`` leaves."""
        self._size = size

    def forget(self) -> None:
        """Refresh at the next look, as when none was made: the role was taken (again), and
        whoever held it meanwhile may have let them fall behind."""
        self._size = None


class SequencerLoop(ElectedRole):
    """Runs a :class:`Sealer` in a background thread while holding the sequencer role."""

    role = "sequencer"

    def __init__(
        self,
        storage: Storage,
        sealer: Sealer,
        *,
        interval_s: float,
        batch_size: int = 1_000,
        standby_poll_s: float = 1.0,
        max_batch_size: int | None = None,
        on_seal: Callable[[SealOutcome], None] | None = None,
        statistics: StatisticsSchedule | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(storage.engine, standby_poll_s)
        self._storage = storage
        self._sealer = sealer
        self._interval = interval_s
        self._batch_size = batch_size
        self._max_batch_size = max(batch_size, max_batch_size or batch_size)
        self.next_limit = batch_size
        """How many deltas the next seal may take."""
        self._on_seal = on_seal
        self._on_failure = on_failure
        """Called after each failed seal (``serve``'s sequencer process reports it)."""
        self._statistics = statistics or StatisticsSchedule()
        self._refresher: threading.Thread | None = None
        self.seals = 0
        self.last_seal_seconds = 0.0
        self._full_batch = FullBatchTrigger(batch_size)

    def note_queued(self, count: int) -> None:
        """Deltas were queued in this process: seal at once when a full batch waits."""
        if self._full_batch.add(count):
            self.wake()

    def _lead(self) -> None:
        try:
            self._seal_while_leading()
        finally:
            # Stopped, or the role lost: what this process signed last is committed, record it.
            self._sealer.flush_signed_head()

    def _seal_while_leading(self) -> None:
        self._statistics.forget()
        self._refresh_statistics(self._sealer.load().size)  # due, on taking the role
        self._lead_started()  # the log's right edge loaded: this process seals
        conflicts = failures = 0
        while self._leading():
            started = time.perf_counter()
            self._full_batch.reset()
            try:
                outcome = self._sealer.seal_once(self.next_limit)
            except SealConflictError as exc:
                # A period was locked (or the log grew elsewhere) while this seal was planned:
                # nothing was written. Plan again at once; only a second conflict in a row waits.
                log.info("seal planned again: %s", exc)
                conflicts += 1
                if conflicts > 1:
                    self._stop.wait(self._interval)
                continue
            except Exception as exc:  # noqa: BLE001 - logged, and tried again after a backoff
                failures += 1
                self._work_failed(True)  # /readyz: down, not a leader that seals
                self._stop.wait(self._seal_failed(failures, exc))
                continue
            if failures:
                log.info("seals work again, after %d failures in a row", failures)
                self._work_failed(False)
            conflicts = failures = 0
            if outcome is not None:
                self.seals += 1
                self.last_seal_seconds = time.perf_counter() - started
                observe_seal(self.last_seal_seconds, outcome.sealed_count, outcome.head.size)
                if self._on_seal is not None:
                    try:
                        self._on_seal(outcome)
                    except Exception:
                        log.exception("seal observer failed")
                self._refresh_statistics(outcome.head.size)
                taken = outcome.sealed_count + outcome.failed_count
                full = taken >= self.next_limit
                self.next_limit = next_seal_limit(taken, self._batch_size, self._max_batch_size)
                if full:
                    continue  # more is waiting: seal again at once
            else:
                self.next_limit = self._batch_size
            # Seals start every interval: the time this one took counts against the wait.
            self._wake.wait(max(0.0, self._interval - (time.perf_counter() - started)))
            self._wake.clear()

    def _seal_failed(self, failures: int, exc: Exception) -> float:
        """Log a seal that failed (storage down, a disk full, a row the code cannot take:
        nothing was written), the ``failures``-th in a row: its traceback the first time, then
        one line a try. Return how long to wait before the next."""
        wait = float(min(self._interval * 2 ** min(failures - 1, 16), MAX_FAILURE_WAIT_S))
        if failures == 1:
            log.error("seal failed; trying again in %.2f s", wait, exc_info=exc)
        else:
            log.error("seal failed again (%d in a row; next try in %.2f s): %s", failures, wait, exc)
        SEAL_FAILURES.inc()
        if self._on_failure is not None:
            self._on_failure()
        self.next_limit = self._batch_size
        return wait

    def stop(self, timeout: float = 10.0) -> None:
        started = time.monotonic()
        super().stop(timeout)
        refresher = self._refresher
        if refresher is not None:  # before the caller closes the connections it uses
            refresher.join(max(0.0, timeout - (time.monotonic() - started)))

    def _refresh_statistics(self, size: int) -> None:
        """Refresh the planner's statistics in a thread of their own when they are due: at
        1,000,000 deltas an ``ANALYZE`` takes 0.6-0.8 s, which the seals need not wait for."""
        if not self._statistics.due(size) or (self._refresher is not None and self._refresher.is_alive()):
            return
        self._statistics.refreshed(size)  # a failed refresh waits for the next growth too
        self._refresher = threading.Thread(target=self._refresh, name="trueup-statistics", daemon=True)
        self._refresher.start()

    def _refresh(self) -> None:
        started = time.perf_counter()
        try:
            self._storage.refresh_statistics()
        except Exception:
            log.exception("refreshing the planner's statistics failed; sealing goes on")
            return
        log.debug("planner statistics refreshed in %.3f s", time.perf_counter() - started)
