"""``trueup sequencer``: only the sealing loop, for deployments that split the roles."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from trueup.cli.options import add_storage_options, settings_from
from trueup.sequencer.loop import SequencerLoop
from trueup.service.container import open_services

__all__ = ["run"]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup sequencer",
        description="seal queued deltas into the log; a second instance waits as a hot standby",
    )
    add_storage_options(parser)
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
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loop.start()
    stop.wait()
    loop.stop()
    services.close()
    return 0
