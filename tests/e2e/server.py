"""The real server process, started and stopped by tests (127.0.0.1 only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx

from tests.webhooks.receiver import QuietServer

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trueup(
    args: list[str], data_dir: Path, database_url: str | None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``trueup`` command against a data directory / database."""
    command = [sys.executable, "-m", "trueup.cli.main", *args, "--data-dir", str(data_dir)]
    if database_url:
        command += ["--database-url", database_url]
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def create_key(data_dir: Path, database_url: str | None, tenant: str = "acme", *extra: str) -> str:
    done = trueup(["keys", "create", "--tenant", tenant, *extra], data_dir, database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class ServerProcess:
    """``trueup serve`` on a free port; ``kill()`` is SIGKILL, ``stop()`` is SIGTERM."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_env = {"TRUEUP_SEAL_INTERVAL_MS": "20", **(extra_env or {})}
        self.extra_args = extra_args or []
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start the server and wait until it answers. The port was free when chosen, but another
        process (a server of another test worker) may take it first: then ours cannot listen on
        it, and the server that answers is not ours. Another port is tried then."""
        for _ in range(3):
            if self._start_once():
                return self
            self.kill()
            self.port = free_port()
            self.log_path = self.data_dir / f"server-{self.port}.log"
        raise RuntimeError(f"no free port could be kept for the server:\n{self.log()}")

    def _start_once(self) -> bool:
        command = [
            sys.executable,
            "-m",
            "trueup.cli.main",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        if self.database_url:
            command += ["--database-url", self.database_url]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.extra_env}
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log().lower():
                    return False  # another process took the port first
                raise RuntimeError(f"server exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return _listens(self.process.pid, self.port)
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer within {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` or a child of it holds a socket listening on ``port`` (Linux's
    /proc; where there is none, it is taken to)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    inodes = set()
    for table in tables:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for holder in [pid, *children(pid)]:
        for fd in Path(f"/proc/{holder}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return True
            except OSError:
                continue
    return False


def children(pid: int, named: str | None = None) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc); with ``named``, only those whose
    command line contains it (``sequencer``, ``committer``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and (named is None or named.encode() in command):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: object, timeout_s: float = 20.0, interval_s: float = 0.05) -> None:
    """Poll ``predicate()`` until true; fail after ``timeout_s`` (a safety net, not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


# -- small real servers that stand in for another one --------------------------------------------

Handler = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]


@contextmanager
def local_server(handle: Handler) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every request with ``handle``; its base URL."""

    class Answer(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, content = handle(self, body)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(content)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_and_wait_verified(server: ServerProcess, key: str, prefix: str) -> None:
    """Write ten deltas (keys ``<prefix>-<i>``) and wait until their request is verified."""
    reply = httpx.post(
        f"{server.base_url}/api/v1/writes",
        headers={"X-Api-Key": key},
        json={
            "items": [{"key": f"{prefix}-{i}", "accountId": f"c{i % 3}", "bits": i + 1} for i in range(10)]
        },
    )
    assert reply.status_code == 202, reply.text
    request_id = reply.json()["data"]["requestId"]

    def verified() -> bool:
        view = httpx.get(f"{server.base_url}/api/v1/writes/{request_id}", headers={"X-Api-Key": key})
        return bool(view.json()["data"]["status"] == "verified")

    wait_until(verified)
