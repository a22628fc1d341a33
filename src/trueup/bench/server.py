"""The server under test: a real ``trueup serve`` process on 127.0.0.1, and its API key.

The harness starts it in a temporary data directory (or a fresh PostgreSQL schema), with rate
limits off and no other ``TRUEUP_*`` variable of the harness's environment, waits until
``/healthz`` answers, and stops it by its pid: SIGTERM, then SIGKILL after a timeout. Its peak
resident memory is read from ``/proc/<pid>/status`` (``VmHWM``) just before it stops.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from trueup.service.keys import KeyService, Principal
from trueup.storage import open_storage

__all__ = [
    "HARNESS_ENV",
    "ServerError",
    "ServerUnderTest",
    "free_port",
    "http_get_json",
    "provision_key",
    "server_environment",
]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


HARNESS_ENV = {"TRUEUP_RATE_LIMIT_PER_S": "0"}
"""What the harness sets in every server's environment (rate limits off)."""


def server_environment(base: Mapping[str, str], own: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The server's environment: ``base`` without its ``TRUEUP_*`` variables (a setting left in
    the shell must not change the server measured), plus ``own``, the harness's settings; and
    the names of the variables left out, sorted."""
    stripped = sorted(name for name in base if name.startswith("TRUEUP_") and name not in own)
    kept = {name: value for name, value in base.items() if not name.startswith("TRUEUP_")}
    return {**kept, **own}, stripped


class ServerError(RuntimeError):
    """The server did not start, answer or stop as expected."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def provision_key(data_dir: Path, database_url: str | None) -> tuple[str, Principal]:
    """Create the benchmark tenant and one read-write key in the server's database.

    Run before the server starts; the key pepper is written to ``data_dir`` where the server
    finds it, so the server accepts the key.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{data_dir / 'trueup.db'}"
    storage = open_storage(url, pool_size=2)
    try:
        keys = KeyService(storage, data_dir / "key-pepper")
        issued = keys.create("bench", "live", "unlimited")
        return issued.key, keys.authenticate(issued.key)
    finally:
        storage.close()


def http_get(port: int, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on 127.0.0.1 with the standard library (not a hot path)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def http_get_json(port: int, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    """``GET path`` as JSON (``None`` for a body that is not)."""
    status, body = http_get(port, path, timeout_s)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the sequencer child of ``serve``), where /proc exists."""
    children = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.parent.name))
    return children


def child_role(pid: int) -> str:
    """What a child process of ``serve`` is, from its command line: ``sequencer process``,
    ``committer process``, or ``API process`` (a worker of ``--workers``)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "child process"
    if b"sequencer" in words:
        return "sequencer process"
    if b"trueup.cli.committer" in words:
        return "committer process"
    return "API process"


def read_vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (``VmHWM``) of a live process in KiB, where /proc exists."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class ServerUnderTest:
    """``trueup serve`` in its own process; use as a context manager."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        sequencer: str | None = None,
        committer: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.workers = workers
        self.sequencer = sequencer
        """``serve --sequencer`` (``process``, ``thread`` or ``off``); ``None``: the default."""
        self.committer = committer
        """``serve --committer`` (``process`` or ``thread``); ``None``: the default."""
        self.port = free_port()
        self.env = {**HARNESS_ENV, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        self.peak_rss_kib: int | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError("the server is not running")
        return self.process.pid

    def _launch(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """``trueup <args>`` on this data directory (and database), its output into ``log_path``."""
        command = [sys.executable, "-m", "trueup.cli.main", *args, "--data-dir", str(self.data_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                command, stdout=log, stderr=subprocess.STDOUT, env=server_environment(os.environ, self.env)[0]
            )

    def start(self) -> ServerUnderTest:
        """Launch the server and wait until it answers and (by default) seals.

        Raises:
            ServerError: if it is already running (a second process could not bind the port,
                and the first would be left behind), or did not come up.
        """
        if self.process is not None and self.process.poll() is None:
            raise ServerError(f"the server is already running (pid {self.process.pid})")
        serve = ["serve", "--host", HOST, "--port", str(self.port), "--log-level", "warning"]
        if self.workers > 1:
            serve += ["--workers", str(self.workers)]
        if self.sequencer is not None:
            serve += ["--sequencer", self.sequencer]
        if self.committer is not None:
            serve += ["--committer", self.committer]
        self.process = self._launch(serve, self.log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the server exited at start:\n{self.log_tail()}")
            try:
                if http_get_json(self.port, "/healthz", 1.0)[0] == 200 and self._sealing():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"the server did not answer within {STARTUP_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def _sealing(self) -> bool:
        """Whether this server's sequencer leads (a child process becomes leader a moment after
        the API answers). With ``--workers`` any worker may answer, and only one leads: not
        asked there."""
        if self.workers > 1 or self.sequencer == "off":
            return True
        status, body = http_get_json(self.port, "/readyz", 1.0)
        return status == 200 and isinstance(body, dict) and body.get("data", {}).get("sequencer") == "leader"

    def queue_depth(self) -> int | None:
        """``queueDepth`` from ``/readyz`` (``None`` if it did not answer)."""
        try:
            status, body = http_get_json(self.port, "/readyz", 2.0)
        except OSError:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        depth = body.get("data", {}).get("queueDepth")
        return depth if isinstance(depth, int) else None

    def seal_seconds(self) -> tuple[float, int] | None:
        """``(total seconds, seals)`` from ``/metrics`` (``trueup_seal_seconds``): the seals of
        this server's life, each from claiming its deltas to its commit."""
        try:
            status, body = http_get(self.port, "/metrics", 2.0)
        except OSError:
            return None
        if status != 200:
            return None
        found: dict[str, float] = {}
        for line in body.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition(" ")
            if name in ("trueup_seal_seconds_sum", "trueup_seal_seconds_count"):
                found[name] = float(value)
        if len(found) != 2:
            return None
        return found["trueup_seal_seconds_sum"], int(found["trueup_seal_seconds_count"])

    def processes(self) -> dict[str, list[int]]:
        """The server's processes by role (``API process``: ``serve`` itself and any workers;
        ``sequencer process``; ``committer process``), for :mod:`trueup.bench.cpu`."""
        roles: dict[str, list[int]] = {"API process": [self.pid]}
        for child in child_pids(self.pid):
            roles.setdefault(child_role(child), []).append(child)
        return roles

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; records the peak RSS first (the
        server's plus its children's: the sum of their peaks, an upper bound)."""
        process = self.process
        if process is not None and process.poll() is None:
            peaks = [read_vm_hwm_kib(pid) for pid in (process.pid, *child_pids(process.pid))]
            self.peak_rss_kib = sum(peak for peak in peaks if peak is not None) or None
            _terminate(process)

    def __enter__(self) -> ServerUnderTest:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
