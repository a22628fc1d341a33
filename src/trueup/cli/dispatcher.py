"""``trueup dispatcher``: only the webhook dispatcher, for deployments that split the roles.

``trueup serve`` already runs one; a separate dispatcher process (any number of them, one
active, the others hot standbys) lets deliveries run on hosts of their own.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from trueup.cli.metrics_port import MetricsServer, add_metrics_options
from trueup.cli.options import add_storage_options, configure_logging, settings_from
from trueup.service.container import open_services
from trueup.service.metrics import refresh_database_gauges
from trueup.webhooks.dispatcher import Dispatcher

__all__ = ["run"]

log = logging.getLogger(__name__)


MAX_WORKERS = 256
"""The most deliveries in flight at once: a thread each, and as many receivers' connections."""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trueup dispatcher",
        description="deliver pending webhook events; a second instance waits as a hot standby",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help=f"deliveries in flight at once, 1 to {MAX_WORKERS} (default 8)"
    )
    add_storage_options(parser)
    add_metrics_options(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be 1 to {MAX_WORKERS} (each is a thread with connections of its own)")
    configure_logging()
    metrics = MetricsServer.from_args(parser, args)
    settings = settings_from(args)
    services = open_services(settings)
    dispatcher = Dispatcher(services.storage, settings, workers=args.workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, _: _asked_to_stop(number, stop))
    signal.signal(signal.SIGINT, lambda number, _: _asked_to_stop(number, stop))
    dispatcher.start()
    if metrics is not None:
        metrics.start(lambda: refresh_database_gauges(services.storage))
    stop.wait()
    dispatcher.stop()
    services.close()
    if metrics is not None:
        metrics.stop()
    log.info("stopped")
    return 0


def _asked_to_stop(number: int, stop: threading.Event) -> None:
    """A signal's handler: said in the log (a stop a service manager asks for is otherwise
    silent); the deliveries under way end first."""
    log.info("asked to stop (%s); stopping", signal.Signals(number).name)
    stop.set()
