"""The sealing loop: elect this process as the one sequencer, then seal on a timer.

A sequencer seals a batch every ``interval`` or as soon as a full batch is queued, whichever
comes first. Only one sequencer is active per database: the role is taken with a leader lock
(a PostgreSQL advisory lock, or a file lock beside the SQLite file); a second instance waits
as a hot standby and takes over within ``standby_poll`` seconds when the holder dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from trueup.service.metrics import SEAL_SECONDS, SEALED_LEAVES, TREE_SIZE
from trueup.service.sealing import Sealer
from trueup.storage import Storage
from trueup.storage.log import SealOutcome

__all__ = ["SequencerLoop"]

log = logging.getLogger(__name__)


class SequencerLoop:
    """Runs a :class:`Sealer` in a background thread while holding the sequencer role."""

    def __init__(
        self,
        storage: Storage,
        sealer: Sealer,
        interval_s: float = 0.05,
        batch_size: int = 1_000,
        standby_poll_s: float = 1.0,
        on_seal: Callable[[SealOutcome], None] | None = None,
    ) -> None:
        self._storage = storage
        self._sealer = sealer
        self._interval = interval_s
        self._batch_size = batch_size
        self._standby_poll = standby_poll_s
        self._on_seal = on_seal
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trueup-sequencer", daemon=True)
        self.is_leader = False
        self.seals = 0
        self.last_seal_seconds = 0.0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Seal soon (a full batch is waiting)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._storage.engine.try_leader_lock("sequencer") as leader:
                    if leader:
                        self.is_leader = True
                        log.info("this process is the sequencer")
                        self._lead()
                        return
            except Exception:
                log.exception("sequencer election failed; retrying")
            finally:
                self.is_leader = False
            self._stop.wait(self._standby_poll)

    def _lead(self) -> None:
        self._sealer.load()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                outcome = self._sealer.seal_once()
            except Exception:
                log.exception("seal failed; retrying after the interval")
                outcome = None
                self._stop.wait(self._interval)
            if outcome is not None:
                self.seals += 1
                self.last_seal_seconds = time.perf_counter() - started
                SEAL_SECONDS.observe(self.last_seal_seconds)
                SEALED_LEAVES.inc(outcome.sealed_count)
                TREE_SIZE.set(outcome.head.size)
                if self._on_seal is not None:
                    try:
                        self._on_seal(outcome)
                    except Exception:
                        log.exception("seal observer failed")
                if outcome.sealed_count + outcome.failed_count >= self._batch_size:
                    continue  # more is waiting: seal again at once
            self._wake.wait(self._interval)
            self._wake.clear()
