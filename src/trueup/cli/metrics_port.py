"""``--metrics-port``: ``/metrics`` of a process that serves no API.

``trueup sequencer`` and ``trueup dispatcher``, run apart from the API processes
(docs/scaling.md), record their seals and deliveries in their own process; a ``serve`` records
only those of its own sequencer and dispatcher. So each of them serves its figures itself, on a
port of its own: ``/metrics`` (Prometheus text, as ``serve``'s) and ``/healthz`` (the process
is alive). Off unless a port is given; bound to 127.0.0.1 unless ``--metrics-host`` says
otherwise, since the figures are for the operator's scraper, not the public.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from trueup.service.metrics import render
from trueup.storage.errors import StorageError

__all__ = ["MetricsServer", "add_metrics_options"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve /metrics and /healthz on this port (default: none)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address --metrics-port listens on (default 127.0.0.1)",
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "trueup"
    timeout = 10  # a client that connects and sends nothing does not keep its thread for ever

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            refresh = getattr(self.server, "refresh", None)
            if refresh is not None:
                try:
                    refresh()
                except StorageError as exc:  # the figures kept in this process are still served
                    log.warning("metrics: the figures read from the database are not current: %s", exc)
            status, kind, body = 200, _CONTENT_TYPE, render()
        elif path == "/healthz":
            status, kind, body = 200, "application/json", b'{"status":"ok"}'
        else:
            status, kind, body = (
                404,
                "text/plain; charset=utf-8",
                b"only /metrics and /healthz are served here\n",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """A scrape every few seconds is not worth a log line."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    refresh: Callable[[], None] | None = None


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """The ``--metrics-port`` server, on a daemon thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        """Raises ``OSError`` when it cannot listen there (the port taken, say)."""
        self._server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="trueup-metrics", daemon=True)

    @classmethod
    def from_args(cls, parser: argparse.ArgumentParser, args: argparse.Namespace) -> MetricsServer | None:
        """The server ``args`` ask for (``None`` without ``--metrics-port``), not yet serving;
        a port out of range is a usage error (exit 2), one it cannot listen on exits 1 saying
        why."""
        if not args.metrics_port:
            return None
        if not 1 <= args.metrics_port <= 65535:
            parser.error(f"--metrics-port must be 1 to 65535, got {args.metrics_port}")
        host = f"[{args.metrics_host}]" if ":" in args.metrics_host else args.metrics_host
        try:
            return cls(args.metrics_host, args.metrics_port)
        except OSError as exc:
            raise SystemExit(
                f"{parser.prog}: cannot listen on {host}:{args.metrics_port} for --metrics-port: "
                f"{exc.strerror or exc}"
            ) from None

    def start(self, refresh: Callable[[], None] | None = None) -> None:
        """Serve, ``refresh`` setting the gauges read from the database before each scrape."""
        self._server.refresh = refresh
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
