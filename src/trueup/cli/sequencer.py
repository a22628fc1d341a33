"""``trueup sequencer``: only the sealing loop, for deployments that split the roles.

``trueup serve`` also runs this command as its own child process (``--sequencer process``, see
:mod:`trueup.cli.child`) with the hidden flag ``--supervised``. Then the child reports on stdout,
one line each, its role when it changes and again every second (``role leader`` / ``role
standby``: a parent that stops hearing it reports it down) and every seal
(``sealed <leaves> <failed> <seconds> <tree size> <events>``, which the parent turns into its
metrics and a webhook wake-up). It reads its stdin: any bytes there mean "a full batch is
queued, seal now" (DESIGN.md §3), and end of file, which comes the moment the parent exits or is
killed outright, stops it, so no orphan keeps the role.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import TextIO

from trueup.cli.metrics_port import MetricsServer, add_metrics_options
from trueup.cli.options import add_storage_options, configure_logging, settings_from
from trueup.sequencer.loop import SequencerLoop
from trueup.service.collector import settle_collector
from trueup.service.container import open_services
from trueup.service.metrics import refresh_database_gauges
from trueup.storage.seal import SealOutcome

__all__ = ["STOP_BYTE", "run"]

_ROLE_CHECK_S = 0.25
_ROLE_REPEAT_S = 1.0
"""How often the role is reported when it has not changed (``SequencerProcess.SILENT_S``)."""

log = logging.getLogger(__name__)


class _Reports:
    """Lines to the supervising parent; a closed pipe (the parent is gone) stops the child."""

    def __init__(self, out: TextIO, stop: threading.Event) -> None:
        self._out = out
        self._stop = stop
        self._lock = threading.Lock()

    def send(self, line: str) -> None:
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                if not self._stop.is_set():  # the parent went before its end of stdin was read
                    log.warning("trueup serve is gone; stopping")
                self._stop.set()

    def sealed(self, outcome: SealOutcome, seconds: float) -> None:
        self.send(
            f"sealed {outcome.sealed_count} {outcome.failed_count} {seconds:.6f} "
            f"{outcome.head.size} {outcome.events}"
        )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup sequencer",
        description="seal queued deltas into the log; a second instance waits as a hot standby",
    )
    add_storage_options(parser)
    add_metrics_options(parser)
    parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging()
    metrics = MetricsServer.from_args(parser, args)
    stop = threading.Event()
    if args.supervised:
        # Its parent decides when it ends (end of file on stdin, or a kill): a SIGTERM a service
        # manager sends every process of the service at once reached it before its parent, which
        # then logged it as a child that died and went to start another.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda number, _: _asked_to_stop(number, stop))
        signal.signal(signal.SIGINT, lambda number, _: _asked_to_stop(number, stop))
    reports = _Reports(sys.stdout, stop) if args.supervised else None
    settings = settings_from(args)
    services = open_services(settings)
    try:
        services.sealer.check_signed_head()  # before anything is signed: a rolled-back database
    except BaseException:
        services.close()
        raise  # LogRollbackError: one paragraph and exit 1, from the command's entry point
    loop = SequencerLoop(
        services.storage,
        services.sealer,
        interval_s=settings.seal_interval_ms / 1000,
        batch_size=settings.seal_batch_size,
        max_batch_size=settings.seal_max_batch_size,
        on_seal=None if reports is None else lambda outcome: reports.sealed(outcome, loop.last_seal_seconds),
        on_failure=None if reports is None else lambda: reports.send("failed"),
    )
    if args.supervised:
        threading.Thread(target=_follow_parent, args=(loop, stop), daemon=True).start()
    settle_collector()  # as serve does: a seal allocates tens of thousands of short-lived objects
    loop.start()
    if metrics is not None:
        metrics.start(lambda: refresh_database_gauges(services.storage))
    reported, reported_at = None, 0.0
    while not stop.wait(_ROLE_CHECK_S):
        role = loop.state
        now = time.monotonic()
        # Said again every second too: a parent that hears nothing for a while (this process
        # stopped, or frozen) no longer reports the role it last heard.
        if reports is not None and (role != reported or now - reported_at >= _ROLE_REPEAT_S):
            reports.send(f"role {role}")
            reported, reported_at = role, now
    loop.stop()
    services.close()
    if metrics is not None:
        metrics.stop()
    if not args.supervised:
        log.info("stopped")
    return 0


def _asked_to_stop(number: int, stop: threading.Event) -> None:
    """A signal's handler: said in the log (a stop a service manager asks for is otherwise
    silent), then the main loop ends, the role and a seal under way ending first."""
    log.info("asked to stop (%s); stopping", signal.Signals(number).name)
    stop.set()


STOP_BYTE = b"q"
"""What the server writes on the child's stdin to stop it; any other byte is a wake-up."""


def _follow_parent(loop: SequencerLoop, stop: threading.Event) -> None:
    """Seal at once when the parent says a full batch is queued; stop when it says so, or at
    end of file (the parent is gone: it holds the other end of stdin).

    Reads the file descriptor itself: a thread blocked in ``sys.stdin``'s buffered reader holds
    its lock, which makes the interpreter abort at exit."""
    with contextlib.suppress(OSError):
        while read := os.read(0, 4096):
            if STOP_BYTE in read:  # the server stops it (and closes the pipe)
                stop.set()
                return
            loop.wake()
    if not stop.is_set():
        log.warning("trueup serve is gone; stopping")
    stop.set()
