"""The sequencer as a child process of ``trueup serve`` (``--sequencer process``, the default).

Python runs one thread at a time per process. With the sequencer as a thread of the API
process, sealing and the HTTP handlers take turns on one interpreter lock while the second
core idles; as a process of its own it seals on the other core (measured in
docs/benchmarks.md). It is still one command to run: ``serve`` starts the child when it starts,
restarts it (after a growing pause) if it dies, and stops it when it stops; the child exits by
itself when ``serve`` is killed outright (:mod:`trueup.cli.sequencer`). The child reports
``leader`` or ``standby`` on its stdout, which ``/readyz`` shows as this server's sequencer role.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["SequencerProcess"]

log = logging.getLogger(__name__)

_MAX_RESTART_PAUSE_S = 30.0
_STEADY_S = 60.0
"""A child that ran this long before it died is restarted after the first, short pause."""


class SequencerProcess:
    """Runs ``trueup sequencer`` as a supervised child of this process."""

    def __init__(self, data_dir: Path, database_url: str | None, restart_pause_s: float = 1.0) -> None:
        self._command = [sys.executable, "-m", "trueup.cli.main", "sequencer", "--data-dir", str(data_dir)]
        if database_url:
            self._command += ["--database-url", database_url]
        self._first_pause = restart_pause_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._supervise, name="trueup-sequencer-process", daemon=True)
        self.role = "standby"
        """``leader`` or ``standby`` as the child last reported it (``standby`` while it starts)."""
        self.starts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the child (SIGTERM: it finishes the seal in progress), then the supervisor."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("the sequencer process did not stop in %.0f s; killing it", timeout_s)
                process.kill()
                process.wait()
        self._thread.join(timeout_s)

    def _supervise(self) -> None:
        pause = self._first_pause
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                    [*self._command, "--parent-pid", str(os.getpid())],
                    stdout=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
                self._process = process
                self.starts += 1
                started = time.monotonic()
            assert process.stdout is not None
            for line in process.stdout:  # one line per role change, until the child exits
                role = line.strip()
                if role in ("leader", "standby"):
                    self.role = role
            code = process.wait()
            self.role = "standby"
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= _STEADY_S:
                pause = self._first_pause
            log.error("the sequencer process exited with status %s; restarting in %.0f s", code, pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, _MAX_RESTART_PAUSE_S)
