"""A real webhook receiver: an HTTP server on 127.0.0.1 (port 0) in a thread, answering by
script, recording every request it gets. It stops itself when its ``with`` block ends."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trueup.webhooks.signing import EVENT_HEADER, EVENT_ID_HEADER

# Safety net only: a blocked handler never waits longer than this.
_BLOCK_LIMIT_S = 60.0


class QuietServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that says nothing when a client goes away mid-request.

    A server under test that is stopped or killed while it sends leaves the handler an
    ``OSError`` (a reset connection) to read or write, which the standard server prints with a
    traceback to stderr, after the tests' own output if the handler's thread outlives the test.
    """

    dropped = 0
    """Requests given up that way."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            self.dropped += 1
            return
        super().handle_error(request, client_address)


@dataclass
class Received:
    """One request as it arrived; ``status`` is what the script answered (None: no answer)."""

    number: int
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    @property
    def event_id(self) -> str:
        return self.headers[EVENT_ID_HEADER]

    @property
    def event_type(self) -> str:
        return self.headers[EVENT_HEADER]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


Script = Callable[[Received], int]
"""Decides the status of a request (may block, e.g. on an event)."""


@dataclass
class Receiver:
    script: Script = field(default=lambda received: 200)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: QuietServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    @property
    def dropped(self) -> int:
        """Requests whose sender went away before they were whole (:class:`QuietServer`)."""
        assert self._server is not None
        return self._server.dropped

    def requests(self, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event_type is None or r.event_type == event_type]

    def answered(self, status: int = 200) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == status]

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    got = Received(len(receiver.received) + 1, dict(self.headers.items()), body)
                    receiver.received.append(got)
                status = receiver.script(got)
                got.status = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender is gone (killed while we held its request)

            def log_message(self, *args: Any) -> None:
                pass

        server = QuietServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def fail_first(count: int, status: int = 503) -> Script:
    """Answer ``status`` to the first ``count`` requests, then 200."""

    def script(received: Received) -> int:
        return status if received.number <= count else 200

    return script


def block_first(release: threading.Event, count: int = 1) -> Script:
    """Hold the first ``count`` requests without answering until ``release`` is set."""

    def script(received: Received) -> int:
        if received.number <= count:
            release.wait(_BLOCK_LIMIT_S)
        return 200

    return script
