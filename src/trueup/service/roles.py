"""Single-writer roles (the sequencer, the webhook dispatcher): elected, with hot standbys.

A role runs in a background thread. It takes the role's leader lock (a PostgreSQL advisory
lock, or a file lock beside the SQLite file); while another process holds it, it waits and
asks again every ``standby_poll_s`` seconds, so a standby takes over soon after the holder
dies. Subclasses do the role's work in :meth:`ElectedRole._lead` in rounds, for as long as
:meth:`ElectedRole._leading` says: until ``_stop`` is set, or the lock is found lost (its
PostgreSQL session ended), after which the process stands by like any other.
"""

from __future__ import annotations

import abc
import logging
import threading
import time

from trueup.core.failures import FailuresInARow
from trueup.storage.engine import Engine, Leadership
from trueup.storage.migrate import schema_version
from trueup.storage.schema import SCHEMA_VERSION

__all__ = ["ElectedRole"]

log = logging.getLogger(__name__)


class ElectedRole(abc.ABC):
    role: str = "role"

    def __init__(
        self, engine: Engine, standby_poll_s: float = 1.0, lock_check_s: float | None = None
    ) -> None:
        """``lock_check_s``: how often :meth:`_leading` asks whether the lock is still held
        (by default every ``standby_poll_s``, as often as a standby asks for it; 0: every round)."""
        self._engine = engine
        self._standby_poll = standby_poll_s
        self._lock_check = standby_poll_s if lock_check_s is None else lock_check_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"trueup-{self.role}", daemon=True)
        self._leadership: Leadership | None = None
        self._checked_at = 0.0
        self.is_leader = False
        self._refused_schema: int | None = SCHEMA_VERSION
        self.elections = 0
        """How many times this process has taken the role."""
        self.failing = False
        """Whether the last try to take the role or to begin its work failed (the database out
        of reach, a log too damaged to extend), or its work keeps failing (:meth:`_work_failed`):
        this process does not do the role, and says ``down``, not that it leads or stands by."""
        self._under_way = False
        """The role's work has begun (:meth:`_lead_started`) and has not ended."""
        self._lead_failed = False
        """The last try took the lock and failed to begin the work: the next try says nothing
        new when it takes the lock again (a damaged log would log it every second)."""
        self._failures = FailuresInARow(log, f"{self.role} elections and leads")

    @property
    def state(self) -> str:
        """``leader`` (doing the role), ``standby`` (another process holds it), or ``down``
        (see :attr:`failing`), as ``/readyz`` gives it."""
        if self.failing:
            return "down"
        return "leader" if self._under_way else "standby"

    def _lead_started(self) -> None:
        """Called by :meth:`_lead` once its work has begun (the sequencer's log loaded): the
        failures in a row end here, not when the lock is taken."""
        if not self._under_way:
            self._under_way = True
            self._lead_failed = False
            self.failing = False
            self._failures.succeeded()

    def _work_failed(self, failing: bool) -> None:
        """The role's work failed (a seal), or works again: ``down`` meanwhile."""
        self.failing = failing

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Do the role's next round now rather than after its interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    @abc.abstractmethod
    def _lead(self) -> None:
        """Do the role's work while holding it, in rounds; return once :meth:`_leading` is false."""

    def _leading(self) -> bool:
        """Whether to do another round: not stopped, and the lock still held (asked at most
        every ``lock_check_s``)."""
        leadership = self._leadership
        if self._stop.is_set() or leadership is None:
            return False
        now = time.monotonic()
        if now - self._checked_at >= self._lock_check:
            self._checked_at = now
            if not leadership.still_held():
                log.error("this process lost the %s role (its lock was released); standing by", self.role)
                return False
        return leadership.held

    def _schema_is_ours(self) -> bool:
        """Whether the database has the schema this code writes. After a newer Trueup migrated
        it, this process (left running, as a standby, by mistake) would write rows the new
        schema does not expect: it stands by instead, saying why once per version it sees."""
        version = schema_version(self._engine)
        if version == SCHEMA_VERSION:
            return True
        if version != self._refused_schema:
            self._refused_schema = version
            log.error(
                "the database has schema version %s and this Trueup writes %d: not taking the %s "
                "role; stop this process, and run the version that migrated the database",
                version,
                SCHEMA_VERSION,
                self.role,
            )
        return False

    def _run(self) -> None:
        standing_by = False  # said so since the last time it led (once, not every poll)
        failures = self._failures  # failed in a row (the database down, say)
        while not self._stop.is_set():
            try:
                with self._engine.try_leader_lock(self.role) as leadership:
                    # An election made: failed elections end here, and a failed lead does too if
                    # another process leads now; a lead that failed ends once one begins.
                    if not leadership:
                        self._lead_failed = False
                    if not self._lead_failed:
                        failures.succeeded()
                        self.failing = False
                    if not leadership and not standing_by:
                        standing_by = True
                        log.info(
                            "another process holds the %s role; this one stands by and takes it "
                            "over when it is free (checked every %g s)",
                            self.role,
                            self._standby_poll,
                        )
                    if leadership and self._schema_is_ours():
                        standing_by = False
                        self._leadership = leadership
                        self._checked_at = time.monotonic()
                        self.is_leader = True
                        self.elections += 1
                        if not self._lead_failed:  # said once, not at each retry of a failing lead
                            log.info("this process holds the %s role", self.role)
                        self._lead()  # until stopped, or the lock is lost: then stand by
                        self._lead_started()  # it ran: whatever failed before works again
            except Exception as exc:  # noqa: BLE001 - logged, and tried again
                self.failing = True
                self._lead_failed = self.is_leader and not self._under_way  # the lock taken, no work
                what = "lead" if self.is_leader else "election"
                failures.failed(f"{self.role} {what}", exc, f"; retrying every {self._standby_poll:g} s")
            finally:
                self.is_leader = False
                self._under_way = False
                self._leadership = None
            self._stop.wait(self._standby_poll)
