"""Reading a JSON request body: media type, size, then strict decoding."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import Request
from starlette.types import Receive

from trueup.core.errors import (
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from trueup.core.strict_json import loads_strict
from trueup.service.settings import Settings

__all__ = ["BODIES_IN_FLIGHT", "BodyBudget", "check_json_head", "read_json"]


BUSY_RETRY_AFTER_S = 1
"""The ``Retry-After`` of a request refused because the process holds too many bodies."""

TENANT_SHARE = 4
"""One tenant's requests may hold at most a quarter of ``TRUEUP_BODY_BYTES_IN_FLIGHT``."""


class BodyBudget:
    """The bytes of request bodies this process holds while they arrive, all requests together
    and each tenant's.

    Each request's body is bounded (``TRUEUP_MAX_BODY_BYTES``, ``TRUEUP_BODY_TIMEOUT_S``), but not
    how many come at once: 400 connections each sending all but the last bytes of a 1 MiB body
    took the API process from 74 to 566 MB. Past ``TRUEUP_BODY_BYTES_IN_FLIGHT`` (64 MiB) a
    request whose body is still coming is refused with a 503 instead; and past a quarter of it
    for one tenant with a 429, so that one tenant's key (a read-only one will do: its compares
    have bodies) cannot hold the whole bound and shut every other tenant's writes out. A tenant's
    share always fits one body of the largest size. One per process (the memory it guards is
    the process's): the event loop takes and gives, and a lock keeps the counts exact where
    several loops share a process (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = 0
        self._by_tenant: dict[str, int] = {}

    def take(self, tenant: str, count: int, settings: Settings) -> None:
        """Hold ``count`` more bytes of ``tenant``'s; :class:`RateLimitedError` past the tenant's
        share, :class:`UnavailableError` past the process's bound (nothing taken either way)."""
        if not count:
            return  # an empty message holds nothing (and leaves no count of 0 behind)
        most = settings.body_bytes_in_flight
        share = max(most // TENANT_SHARE, settings.max_body_bytes)
        with self._lock:
            tenant_held = self._by_tenant.get(tenant, 0)
            if tenant_held + count > share:
                raise RateLimitedError(
                    f"this tenant's requests hold {tenant_held:,} bytes of bodies still arriving at "
                    f"this server process, and {count:,} more would pass its share ({share:,}: a "
                    f"quarter of TRUEUP_BODY_BYTES_IN_FLIGHT, at least TRUEUP_MAX_BODY_BYTES); retry "
                    "once they have come",
                    retry_after_seconds=BUSY_RETRY_AFTER_S,
                )
            if self.held + count > most:
                raise UnavailableError(
                    f"this server process holds {self.held:,} bytes of request bodies still arriving, "
                    f"and {count:,} more would pass the most it holds at once ({most:,}, "
                    "TRUEUP_BODY_BYTES_IN_FLIGHT); retry shortly",
                    retry_after_seconds=BUSY_RETRY_AFTER_S,
                )
            self.held += count
            self._by_tenant[tenant] = tenant_held + count

    def holding(self) -> int:
        """How many tenants hold bytes now (none are kept at 0)."""
        with self._lock:
            return len(self._by_tenant)

    def give(self, tenant: str, count: int) -> None:
        if not count:
            return
        with self._lock:
            self.held -= count
            left = self._by_tenant.pop(tenant) - count
            if left:
                self._by_tenant[tenant] = left


BODIES_IN_FLIGHT = BodyBudget()


async def read_json(request: Request, settings: Settings, tenant: str) -> tuple[Any, bytes]:
    """The decoded body and its raw bytes.

    415 unless ``Content-Type`` is ``application/json`` (UTF-8) and the body is not compressed
    (``Content-Encoding``, or a transfer coding other than ``chunked``); 413 past
    ``settings.max_body_bytes`` (checked on the header and
    again while streaming, so a lying header cannot pass); 408 unless the whole body arrives
    within ``settings.body_timeout_s`` (a client that sends slowly, or never finishes, holds
    nothing for long); 400 when the client leaves mid-body; 429 or 503 when the bodies this
    process is receiving would pass ``tenant``'s share of ``settings.body_bytes_in_flight`` or
    the whole of it (:class:`BodyBudget`).
    """
    max_bytes = settings.max_body_bytes
    check_json_head(request.headers.get("content-type", ""), request.headers.get("content-length"), max_bytes)
    encoding = _unsupported_coding(request, "content-encoding", "identity")
    if encoding is not None:  # in any of the headers, or anywhere in a list
        raise UnsupportedMediaTypeError(f"Content-Encoding {encoding} is not supported; send it uncompressed")
    coding = _unsupported_coding(request, "transfer-encoding", "chunked")
    if coding is not None:  # the server took the chunks apart; nothing would undo this coding
        raise UnsupportedMediaTypeError(
            f"Transfer-Encoding {coding} is not supported; send the body chunked or with a Content-Length"
        )
    body = await _receive_body(request, settings, tenant)
    return loads_strict(body), body


def check_json_head(content_type: str, declared: str | None, max_bytes: int) -> None:
    """415 unless ``content_type`` is JSON in UTF-8; 413 when ``declared`` (the request's
    ``Content-Length``) is past ``max_bytes``."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = media or "none"
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {shown[:64]}")
    for param in params.split(";"):  # every parameter: a charset may come after others
        name, _, value = param.strip().lower().partition("=")
        if name == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError("Content-Type charset must be utf-8")
    if declared is not None and declared.isascii() and declared.isdigit():
        # The parser takes any number of leading zeros, and int() refuses more than 4,300 digits.
        digits = declared.lstrip("0") or "0"
        if len(digits) > len(str(max_bytes)) or int(digits) > max_bytes:
            raise PayloadTooLargeError(f"request body must be at most {max_bytes} bytes, got {digits[:24]}")


def _unsupported_coding(request: Request, header: str, allowed: str) -> str | None:
    """The first coding other than ``allowed`` in any of the ``header`` headers (each a list)."""
    for value in request.headers.getlist(header):
        for coding in value.split(","):
            name = coding.strip().lower()
            if name not in ("", allowed):
                return name[:32]
    return None


async def _receive_body(request: Request, settings: Settings, tenant: str) -> bytes:
    """The body's bytes, read from the ASGI messages themselves.

    This is the body's only reader: no route or middleware of ours reads it first. It reads
    the messages itself, not through ``Request.stream()`` (an async generator), and times them
    with a timer of the loop's own instead of ``asyncio.timeout`` (8 µs a request against 2.5 on
    the benchmark machine): ``read_json`` of a single-item write took 17-23 µs instead of 29.
    """
    timeout_s = settings.body_timeout_s
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # an ASGI app runs in a task
    cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = loop.call_later(timeout_s, expire)
    came = [0]  # bytes received so far, for the 408's message, and held in BODIES_IN_FLIGHT
    try:
        return await _read_messages(request.receive, settings, tenant, came)
    except BaseException as exc:
        # As asyncio.timeout decides: once the timer has fired the task is uncancelled whatever
        # ends the read, and the timer's cancellation, and no one else's, is a 408.
        if expired and task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
            raise RequestTimeoutError(
                f"the request body did not arrive within {timeout_s:g} s "
                f"({came[0]} bytes came); send it whole and promptly"
            ) from None
        raise
    finally:
        timer.cancel()
        BODIES_IN_FLIGHT.give(tenant, came[0])


async def _read_messages(receive: Receive, settings: Settings, tenant: str, came: list[int]) -> bytes:
    """The body from ``http.request`` messages up to the last; ``came[0]`` counts its bytes,
    each held in :data:`BODIES_IN_FLIGHT` (given back by the caller)."""
    body = b""  # the first message's body: most requests come whole in one, and need no copy
    chunks: bytearray | None = None  # the body so far, once a second message adds to it
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            # nobody reads the reply; a 400 keeps it out of the 5xx count
            raise ValidationError("body", "ended early: the client closed the connection")
        if kind != "http.request":
            continue  # as Request.stream(): no other message belongs to the body
        chunk: bytes = message.get("body", b"")
        if came[0] + len(chunk) > settings.max_body_bytes:  # too large, whatever else arrives
            raise PayloadTooLargeError(f"request body must be at most {settings.max_body_bytes} bytes")
        BODIES_IN_FLIGHT.take(tenant, len(chunk), settings)
        came[0] += len(chunk)
        if chunks is None and not body:
            body = chunk
        else:
            if chunks is None:
                chunks = bytearray(body)
            chunks += chunk
        if not message.get("more_body", False):
            return body if chunks is None else bytes(chunks)
