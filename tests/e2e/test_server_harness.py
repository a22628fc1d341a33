"""The end-to-end tests' own server process: it is the server that answers on its port."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess, local_server


def _healthy(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"ok"  # another process's server on the port: it answers /healthz too


def test_a_port_taken_before_the_server_listens_is_given_up_for_another(tmp_path: Path) -> None:
    """Once, the first request of a module went to another worker's server that had taken the
    port between its choice and the server's start; the answer to /healthz came from it."""
    with local_server(_healthy) as squatter:
        server = ServerProcess(tmp_path, None)
        server.port = int(squatter.rsplit(":", 1)[1])
        with server:
            assert server.base_url != squatter
            assert httpx.get(f"{server.base_url}/readyz").status_code == 200
