"""Single-writer roles (the sequencer, the webhook dispatcher): elected, with hot standbys.

A role runs in a background thread. It takes the role's leader lock (a PostgreSQL advisory
lock, or a file lock beside the SQLite file); while another process holds it, it waits and
asks again every ``standby_poll_s`` seconds, so a standby takes over soon after the holder
dies. Subclasses do the role's work in :meth:`ElectedRole._lead` until ``_stop`` is set.
"""

from __future__ import annotations

import abc
import logging
import threading

from trueup.storage.engine import Engine

__all__ = ["ElectedRole"]

log = logging.getLogger(__name__)


class ElectedRole(abc.ABC):
    role: str = "role"

    def __init__(self, engine: Engine, standby_poll_s: float = 1.0) -> None:
        self._engine = engine
        self._standby_poll = standby_poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"trueup-{self.role}", daemon=True)
        self.is_leader = False

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
        """Do the role's work while holding it; return when ``_stop`` is set."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._engine.try_leader_lock(self.role) as leader:
                    if leader:
                        self.is_leader = True
                        log.info("this process holds the %s role", self.role)
                        self._lead()
                        return
            except Exception:
                log.exception("%s election failed; retrying", self.role)
            finally:
                self.is_leader = False
            self._stop.wait(self._standby_poll)
