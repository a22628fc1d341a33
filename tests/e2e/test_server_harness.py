"""The end-to-end tests' own server process: it is the server that answers on its port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess


class _Healthy(BaseHTTPRequestHandler):
    """Another process's server on the port: it answers /healthz too."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def squatter() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_port_taken_before_the_server_listens_is_given_up_for_another(
    tmp_path: Path, squatter: int
) -> None:
    """Once, the first request of a module went to another worker's server that had taken the
    port between its choice and the server's start; the answer to /healthz came from it."""
    server = ServerProcess(tmp_path, None)
    server.port = squatter
    with server:
        assert server.port != squatter
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
