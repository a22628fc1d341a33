"""The sequencer as a child process of ``trueup serve`` (``--sequencer process``, the default),
and the supervision it shares with the committer child (:class:`SupervisedChild`).

Python runs one thread at a time per process. With the sequencer as a thread of the API
process, sealing and the HTTP handlers take turns on one interpreter lock while the second
core idles; as a process of its own it seals on the other core (measured in
docs/benchmarks.md). It is still one command to run: ``serve`` starts the child when it starts,
restarts it (after a growing pause) if it dies or cannot be started, and stops it when it stops.
The child runs in its own process group (Ctrl-C in a terminal reaches only ``serve``, which then
stops it) and stops by itself when its stdin, held open by ``serve``, reaches end of file: that
is, when ``serve`` is killed outright. A byte on that stdin asks for a seal now (a full batch is
queued, as a sequencer thread is told directly). Its reports on stdout
(:mod:`trueup.cli.sequencer`) keep ``/readyz`` and the seal metrics of ``/metrics`` current and
wake the webhook dispatcher.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trueup.cli.sequencer import STOP_BYTE
from trueup.core.failures import FailuresInARow
from trueup.sequencer.loop import FullBatchTrigger
from trueup.service.metrics import SEAL_FAILURES

__all__ = ["SealReport", "SequencerProcess", "SupervisedChild"]

log = logging.getLogger(__name__)

_MAX_RESTART_PAUSE_S = 5.0
"""The longest pause before a child that keeps dying is started again: while the sequencer's is
down nothing is sealed (30 s, as first chosen, left a child dying every few seconds sealing for
a fraction of each half minute); 5 s is the longest wait after failed seals too. A child that
dies at once costs a start every 5 s, and a line in the log each time."""
_STEADY_S = 60.0
"""A child that ran this long before it died is restarted after the first, short pause."""


class SealReport:
    """One seal as the child reported it."""

    __slots__ = ("events", "failed", "sealed", "seconds", "tree_size")

    def __init__(self, sealed: int, failed: int, seconds: float, tree_size: int, events: int) -> None:
        self.sealed = sealed
        self.failed = failed
        self.seconds = seconds
        self.tree_size = tree_size
        self.events = events

    @classmethod
    def parse(cls, fields: list[str]) -> SealReport:
        sealed, failed, seconds, tree_size, events = fields
        return cls(int(sealed), int(failed), float(seconds), int(tree_size), int(events))


class SupervisedChild(ABC):
    """A child process of ``serve``: started with it, restarted after a growing pause when it
    dies or cannot start, and stopped with it. Subclasses say how to start it (:meth:`_popen`),
    what to do while it runs (:meth:`_follow`, which returns its exit status) and how to ask it
    to stop (:meth:`_ask_to_stop`)."""

    name = "child"
    """For the log: "the <name> process exited …"."""
    meanwhile = ""
    """For the log, what happens while no child runs (``"committing in this process, "``)."""

    def __init__(
        self, module_args: list[str], data_dir: Path, database_url: str | None, restart_pause_s: float
    ) -> None:
        self._command = [sys.executable, "-m", *module_args]
        # Through the environment, not argv: a database URL may carry a password, and a
        # command line is visible to every user of the host.
        self._env = {**os.environ, "TRUEUP_DATA_DIR": str(data_dir)}
        # The child reports its seals to this process, which counts them: with metrics kept in
        # files (PROMETHEUS_MULTIPROC_DIR), a child writing there too would count each twice.
        self._env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if database_url:
            self._env["TRUEUP_DATABASE_URL"] = database_url
        self._first_pause = restart_pause_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[Any] | None = None
        self._thread = threading.Thread(
            target=self._supervise, name=f"trueup-{self.name}-process", daemon=True
        )
        self.starts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the child to stop (it finishes what it is doing), then stop the supervisor."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            self._ask_to_stop(process)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("the %s process did not stop in %.0f s; killing it", self.name, timeout_s)
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @abstractmethod
    def _popen(self) -> subprocess.Popen[Any]:
        """Start the child."""

    @abstractmethod
    def _follow(self, process: subprocess.Popen[Any]) -> int:
        """Attend to the running child until it exits; its exit status."""

    def _ask_to_stop(self, process: subprocess.Popen[Any]) -> None:
        process.terminate()

    def _down(self) -> None:  # noqa: B027 - a hook: most children need nothing here
        """Called each time the child has exited (or could not start)."""

    def _spawn(self) -> subprocess.Popen[Any] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            process = self._popen()
            self._process = process
            self.starts += 1
            return process

    def _supervise(self) -> None:
        pause = self._first_pause
        not_started = FailuresInARow(log, f"starts of the {self.name} process")
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                process = self._spawn()
            except OSError as exc:  # its traceback once, then a line a try (one every 5 s)
                not_started.failed(f"starting the {self.name} process", exc)
                code: int | str = "not started"
            else:
                if process is None:
                    return
                not_started.succeeded()
                code = self._follow(process)
            self._down()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= _STEADY_S:
                pause = self._first_pause
            log.error(
                "the %s process exited (%s); %srestarting in %.0f s", self.name, code, self.meanwhile, pause
            )
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, _MAX_RESTART_PAUSE_S)


class SequencerProcess(SupervisedChild):
    """Runs ``trueup sequencer`` as a supervised child of this process."""

    name = "sequencer"
    SILENT_S = 3.0
    """A running child that has said nothing for this long is reported ``down``."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None,
        on_seal: Callable[[SealReport], None] | None = None,
        restart_pause_s: float = 1.0,
        batch_size: int = 1_000,
    ) -> None:
        super().__init__(
            ["trueup.cli.main", "sequencer", "--supervised"], data_dir, database_url, restart_pause_s
        )
        self._on_seal = on_seal
        self._role = "down"
        """``down`` until the child first reports: starting, it seals nothing, and "standby" would
        say another process leads when none may."""
        self._heard_at: float | None = None
        """When the running child last reported anything (``None``: not yet)."""
        self._full_batch = FullBatchTrigger(batch_size)
        self._wake_lock = threading.Lock()

    @property
    def role(self) -> str:
        """``leader``, ``standby`` or ``down`` (it cannot lead: the database out of reach, a
        damaged log) as the child last reported it; ``down`` too while no child
        runs, or once a running child has said nothing for ``SILENT_S`` (it reports its role
        every second): stopped (SIGSTOP, a debugger) or stuck, it seals nothing, and a leader
        stopped for long loses its lock to another process, which then leads."""
        heard_at = self._heard_at
        if self._role != "down" and heard_at is not None and time.monotonic() - heard_at > self.SILENT_S:
            return "down"
        return self._role

    @role.setter
    def role(self, value: str) -> None:
        self._role = value

    def note_queued(self, count: int) -> None:
        """Deltas were queued in this process: ask the child to seal at once when a full batch
        waits (DESIGN.md §3). Never blocks: a wake-up already pending in the pipe is enough."""
        if not self._full_batch.add(count):
            return
        # Under the lock that closing the pipe takes too: a descriptor number closed between
        # fileno() and write() could be another file's by then, which the b"w" would corrupt.
        with self._wake_lock:
            process = self._process
            if process is None or process.stdin is None or process.stdin.closed:
                return
            with contextlib.suppress(OSError, ValueError):  # full pipe, child gone
                os.write(process.stdin.fileno(), b"w")

    def _popen(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            self._command,
            stdin=subprocess.PIPE,  # wake-ups; its end of file tells the child we are gone
            stdout=subprocess.PIPE,
            env=self._env,
            text=True,
            process_group=0,  # Ctrl-C in a terminal reaches serve only, which stops it
        )
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), False)
        return process

    def _ask_to_stop(self, process: subprocess.Popen[Any]) -> None:
        """The stop byte, then end of file, on its stdin: the way it is told to stop (it ignores
        SIGTERM); end of file alone is the server gone, which it warns of."""
        with self._wake_lock:  # see note_queued
            if process.stdin is None or process.stdin.closed:
                return
            with contextlib.suppress(OSError, ValueError):  # a full pipe: the end of file will do
                os.write(process.stdin.fileno(), STOP_BYTE)
            process.stdin.close()

    def _down(self) -> None:
        self._heard_at = None
        self.role = "down"

    def _follow(self, process: subprocess.Popen[str]) -> int:
        """Read the child's reports until it exits; return its exit status."""
        assert process.stdout is not None
        assert process.stdin is not None
        try:
            with process.stdout:
                for line in process.stdout:
                    self._heard_at = time.monotonic()
                    kind, _, rest = line.strip().partition(" ")
                    if kind == "role" and rest in ("leader", "standby", "down"):
                        self.role = rest
                    elif kind == "failed":  # the child logged it; counted here, where /metrics is
                        SEAL_FAILURES.inc()
                    elif kind == "sealed":
                        self._full_batch.reset()
                        if self._on_seal is None:
                            continue
                        try:
                            self._on_seal(SealReport.parse(rest.split()))
                        except Exception:
                            log.exception("a seal report could not be handled: %r", line)
        finally:
            with self._wake_lock:  # see note_queued
                process.stdin.close()
        return process.wait()
