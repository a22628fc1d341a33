"""One HTTP request per delivery attempt, bounded as a whole.

A timeout per connection phase does not bound an attempt: a receiver that sends one byte of
its reply's head every few seconds restarts the read timeout with each, and held a worker for
minutes (eight such receivers held every worker, for every tenant). Here each attempt has a
deadline, and every step on the network (connecting, the TLS handshake, each write, each
read) gets only what is left of it, so an attempt ends within the timeout whatever the
receiver does.

The requests go through ``httpcore`` (what ``httpx`` sends with), whose network layer can be
given the deadline; one connection pool per pinned origin, so that a kept-alive connection is
only ever reused for the host it was opened for. ``httpcore`` follows no redirect (a 3xx is a
failed attempt: a redirect could leave the checked address) and reads no proxy settings from
the environment.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import certifi
import httpcore

from trueup.webhooks.targets import PinnedRequest

__all__ = ["AttemptTransport", "SendError", "SendTimeout"]

SendTimeout = httpcore.TimeoutException
"""The attempt's time ran out (connecting, writing, or waiting for the reply's head)."""
SendError = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)
"""The connection failed or the receiver did not speak HTTP/1.1."""

_MAX_POOLS = 256
_WRITE_SLICE = 16 * 1024


class _Deadline(threading.local):
    """When the attempt this thread is making must end (``time.monotonic``), if it is making one."""

    at: float | None = None

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` cut to what is left of the attempt; ``error`` when nothing is."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the attempt's time ran out")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In slices, each with what is left: the stream below gives every partial send of one
        # write the same timeout, so a receiver taking a little of a large body just within it
        # each time would stretch the attempt for as long as the body lasts.
        for start in range(0, len(buffer), _WRITE_SLICE) or (0,):
            piece = buffer[start : start + _WRITE_SLICE]
            self._stream.write(piece, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """The standard synchronous network layer, every step within the thread's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        self._backend = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(
            self._backend.connect_tcp(host, port, left, local_address, socket_options), self._deadline
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - deliveries go to TCP addresses only
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries are configured
        time.sleep(seconds)


class AttemptTransport:
    """Sends attempts, each within ``timeout_s`` as a whole; thread-safe (one attempt per thread)."""

    def __init__(self, timeout_s: float, connections: int) -> None:
        self._timeout_s = timeout_s
        self._connections = connections
        self._deadline = _Deadline()
        self._backend = _Backend(self._deadline)
        # One TLS context for every connection, trusting certifi's roots only (as httpx did,
        # never the environment's SSL_CERT_FILE): building one per connection cost 37 ms each.
        self._tls = ssl.create_default_context(cafile=certifi.where())
        self._pools: OrderedDict[tuple[str, str], httpcore.ConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def post_status(self, pinned: PinnedRequest, headers: dict[str, str], body: bytes) -> int:
        """POST ``body`` to the pinned address; the reply's status. The reply's body is not read
        (a receiver's reply is not ours to buffer).

        Raises:
            SendTimeout: the attempt took ``timeout_s``.
            SendError: the connection failed or the reply was not HTTP/1.1.
        """
        timeout = self._timeout_s
        extensions: dict[str, Any] = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        if pinned.sni_hostname:
            extensions["sni_hostname"] = pinned.sni_hostname
        sent = [*headers.items(), ("Content-Length", str(len(body)))]
        with (
            self._within(timeout),
            self._pool(pinned).stream(
                "POST", pinned.url, headers=sent, content=body, extensions=extensions
            ) as response,
        ):
            return int(response.status)

    @contextmanager
    def _within(self, seconds: float) -> Iterator[None]:
        self._deadline.at = time.monotonic() + seconds
        try:
            yield
        finally:
            self._deadline.at = None

    def _pool(self, pinned: PinnedRequest) -> httpcore.ConnectionPool:
        key = (pinned.url.split("/", 3)[2], pinned.host_header)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = httpcore.ConnectionPool(
                    ssl_context=self._tls,
                    max_connections=self._connections,
                    max_keepalive_connections=self._connections,
                    network_backend=self._backend,
                )
                self._pools[key] = pool
                while len(self._pools) > _MAX_POOLS:
                    self._pools.popitem(last=False)[1].close()
            self._pools.move_to_end(key)
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
