"""``trueup sequencer``: only the sealing loop, for deployments that split the roles.

``trueup serve`` also runs this command as its own child process (``--sequencer process``, see
:mod:`trueup.cli.child`). The child is told its parent's pid: it reports its role on stdout as
one line per change (``leader`` or ``standby``), leaves SIGINT to its parent (which stops it
with SIGTERM), and exits by itself within a quarter of a second when the parent is gone, even after a
``kill -9``, so no orphan keeps the role.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from trueup.cli.options import add_storage_options, settings_from
from trueup.sequencer.loop import SequencerLoop
from trueup.service.container import open_services

__all__ = ["run"]

_PARENT_CHECK_S = 0.25


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup sequencer",
        description="seal queued deltas into the log; a second instance waits as a hot standby",
    )
    add_storage_options(parser)
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    services = open_services(settings)
    loop = SequencerLoop(
        services.storage,
        services.sealer,
        interval_s=settings.seal_interval_ms / 1000,
        batch_size=settings.seal_batch_size,
        max_batch_size=settings.seal_max_batch_size,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.parent_pid is None:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    else:
        # Ctrl-C reaches the whole process group; the parent decides when its child stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.start()
    if args.parent_pid is None:
        stop.wait()
    else:
        _serve_parent(loop, args.parent_pid, stop)
    loop.stop()
    services.close()
    return 0


def _serve_parent(loop: SequencerLoop, parent_pid: int, stop: threading.Event) -> None:
    """Report role changes to the parent on stdout until told to stop or the parent is gone."""
    reported = None
    while not stop.wait(_PARENT_CHECK_S):
        if os.getppid() != parent_pid:
            logging.getLogger(__name__).warning("trueup serve (pid %d) is gone; stopping", parent_pid)
            return
        role = "leader" if loop.is_leader else "standby"
        if role != reported:
            try:
                sys.stdout.write(role + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                return  # nobody reads any more: the parent is gone
            reported = role
