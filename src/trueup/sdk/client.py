"""``Client``: Trueup's HTTP API from Python, and the offline checks of what it returns.

Replies are the API's own ``data`` objects (docs/api.md), as dictionaries with the wire's field
names; amounts are Python integers, exact at any size. Errors raise :class:`TrueupError`.

Writes are safe to retry: each write is sent with an ``Idempotency-Key`` (one is made when none
is given) and retried with the same bytes when no reply came or the server asked for a retry
(429, 503, ``IDEMPOTENCY_PENDING``), so it is stored once. Reads are retried the same way.

What the server says about the log is checked by the client rather than trusted:
:meth:`Client.verify_delta` verifies a delta's proof bundle against the verifier key you pinned,
and :meth:`Client.follow` checks that the log's newest signed checkpoint extends one you verified
before (those checks are in :mod:`trueup.sdk.log_checks` and :mod:`trueup.sdk.period_checks`).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

import httpx

from trueup.core.ids import idempotency_key_value
from trueup.core.url_passwords import without_password
from trueup.proof.errors import shown
from trueup.sdk.envelope import (
    MAX_WAIT_S,
    backoff,
    path_segment,
    reply_data,
    retry_advice,
)
from trueup.sdk.errors import TrueupError
from trueup.sdk.log_checks import Followed, VerifiedDelta
from trueup.sdk.period_checks import PeriodChecks
from trueup.sdk.replies import ACCEPTED_ENCODING, send_bounded

__all__ = ["MAX_REPLY_BYTES", "Client", "Followed", "VerifiedDelta"]

MAX_REPLY_BYTES = 64 * 1024 * 1024
"""The longest reply body a client reads, as sent or decoded, by default: a page of 1,000
period records with their proofs is a few MB."""


class Client(PeriodChecks):
    """A client of one Trueup server. ``api_key`` may be left out for the public routes.

    ``retries`` is how many times a request is sent again after no reply, a 429/503 or, for a
    write, a 202 ``IDEMPOTENCY_PENDING`` (with waits of 0.25 s doubling, or the server's
    ``Retry-After``, at most 5 s each). ``timeout`` is httpx's, in seconds, for each step of a
    request (connecting, each read), not for the whole of it. A reply whose body, as sent or
    decoded, is longer than ``max_reply_bytes`` is not read further: a ``BAD_REPLY``, as is one
    in another coding than ``gzip`` or none (:mod:`trueup.sdk.replies`).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        headers = {"Accept": "application/json", "Accept-Encoding": ACCEPTED_ENCODING}
        if api_key is not None:
            if not api_key.isascii() or not api_key.isprintable():
                raise ValueError("api_key must be printable ASCII (pk_live_… or pk_test_…)")
            headers["X-Api-Key"] = api_key
        base = httpx.URL(base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host or base.query or base.fragment:
            raise ValueError(
                f"base_url must be an http:// or https:// URL with a host and no query or fragment, "
                f"got {without_password(base_url)[:200]!r}"
            )
        self._http = httpx.Client(base_url=base, headers=headers, timeout=timeout)
        self._retries = max(0, retries)
        self._max_reply_bytes = max_reply_bytes

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    def write(
        self, items: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/v1/writes``: ``{requestId, itemCount, status, message}`` once durable."""
        return self._post_write("/api/v1/writes", {"items": list(items)}, idempotency_key)

    def emit(
        self,
        customer_id: str,
        delta: int,
        reason: str,
        *,
        reference_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        occurred_at: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/balance/delta`` (PacSpace's route): the queued record."""
        body: dict[str, Any] = {"customerId": customer_id, "delta": delta, "reason": reason}
        optional = {"referenceId": reference_id, "metadata": metadata, "occurredAt": occurred_at}
        body.update({name: value for name, value in optional.items() if value is not None})
        return self._post_write("/api/v1/balance/delta", body, idempotency_key)

    def write_status(
        self, request_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        """``GET /api/v1/writes/{requestId}``: status, items and, once complete, the tree head.

        ``items`` is one page of the request's items: the first 100 unless ``limit`` (up to
        1,000, a whole write) or ``offset`` say otherwise; ``itemCount`` counts them all."""
        params = {name: value for name, value in (("limit", limit), ("offset", offset)) if value is not None}
        return self._get(f"/api/v1/writes/{path_segment(request_id)}", params or None)

    def wait_verified(
        self,
        request_id: str,
        *,
        timeout: float = 30.0,
        poll: float = 0.05,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """The request's status once it is no longer ``queued`` (``verified``, ``failed`` or
        ``partially_failed``), its items paged as :meth:`write_status` pages them;
        :class:`TrueupError` ``TIMEOUT`` after ``timeout`` seconds (a ``poll`` longer than what
        is left of them is cut to it). :class:`ValueError` for a ``timeout`` or ``poll`` that is
        not a finite number of seconds, 0 or more."""
        for name, seconds in (("timeout", timeout), ("poll", poll)):
            if not 0 <= seconds < math.inf:  # NaN too: it would never time out
                raise ValueError(f"{name} must be a finite number of seconds, 0 or more, got {seconds!r}")
        deadline = time.monotonic() + timeout
        while True:
            status = self.write_status(request_id, limit=limit, offset=offset)
            if status.get("status") != "queued":
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise TrueupError("TIMEOUT", f"{request_id} was still queued after {timeout} s")
            time.sleep(min(poll, left))

    def delta_status(self, record_id: str) -> dict[str, Any]:
        """``GET /api/v1/balance/delta/{recordId}`` by ``rec_…`` or ``a_…`` id."""
        return self._get(f"/api/v1/balance/delta/{path_segment(record_id)}")

    # -- balances ---------------------------------------------------------------------------

    def derive(self, customer_id: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """``GET /api/v1/balance/derive/{customerId}``; ``params`` as the API names them
        (``startingBalance``, ``startingCheckpoint``, ``period``, ``limit``, …)."""
        return self._get(f"/api/v1/balance/derive/{path_segment(customer_id)}", params)

    def compare(
        self,
        customer_id: str,
        your_balance: int,
        their_balance: int,
        more: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/balance/compare``; ``more`` adds the body's other fields
        (``startingBalance``, ``yourWindows``, …). ``startingBalance``, which the route
        requires, is 0 unless ``more`` gives it (as PacSpace's own SDK sends it)."""
        body = {
            "customerId": customer_id,
            "yourBalance": your_balance,
            "theirBalance": their_balance,
            "startingBalance": 0,
        }
        given = sorted(set(more or {}) & {"customerId", "yourBalance", "theirBalance"})
        if given:  # it would silently replace the argument
            raise ValueError(f"more must not give {', '.join(given)}: pass it as the argument")
        return self._post("/api/v1/balance/compare", {**body, **(more or {})})

    def lock_period(self, customer_id: str, period: str, *, force: bool = False) -> dict[str, Any]:
        """``POST /api/v1/balance/checkpoint``: the period checkpoint (the same one if locked)."""
        body: dict[str, Any] = {"customerId": customer_id, "period": period}
        if force:
            body["force"] = True
        return self._post("/api/v1/balance/checkpoint", body)

    def checkpoints(self, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """``GET /api/v1/balance/checkpoints`` (``customerId``, ``period`` or ``timePreset``,
        ``startDate``/``endDate``, ``limit``, ``offset``)."""
        return self._get("/api/v1/balance/checkpoints", params)

    def usage(self) -> dict[str, Any]:
        """``GET /api/v1/balance/usage``: the plan, its allowance and this month's use."""
        return self._get("/api/v1/balance/usage")

    # -- the wire ---------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        query = None if params is None else {name: str(value) for name, value in params.items()}
        return reply_data(self._send("GET", path, params=query, retry=True))

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A POST that is safe to repeat (compare reads; locking a period is idempotent)."""
        return reply_data(self._send("POST", path, body=_encode(body), retry=True))

    def _post_write(self, path: str, body: Mapping[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        # One key and one body for every attempt: the server replays the first reply.
        key = (
            f"trueup-sdk-{secrets.token_hex(16)}"
            if idempotency_key is None
            else _checked_key(idempotency_key)
        )
        try:
            return reply_data(self._send("POST", path, body=_encode(body), idempotency_key=key, retry=True))
        except TrueupError as exc:
            if exc.code in _UNKNOWN_OUTCOME:
                # No reply, or none from the server (a proxy's page after it forwarded the write),
                # or its internal error: whether it was stored is unknown, and the key is what
                # makes a retry of it safe.
                raise TrueupError(
                    exc.code,
                    f"{exc.message}; it may or may not have been stored: send it again with "
                    f"idempotency_key={key!r} to store it once",
                    exc.status,
                    exc.retry_after,
                    exc.body,
                    key,
                    exc.http_request_id,
                ) from (exc.__cause__ or exc)
            exc.idempotency_key = key
            raise

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
        retry: bool,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            try:
                # Read whole, but never past max_reply_bytes, as sent or decoded (trueup.sdk.replies).
                request = self._http.build_request(method, path, params=params, content=body, headers=headers)
                reply = send_bounded(self._http, request, self._max_reply_bytes)
            except httpx.TransportError as exc:
                if not retry or attempt >= self._retries:
                    raise TrueupError(
                        "CONNECTION_ERROR",
                        f"no reply from {without_password(str(self._http.base_url))}: {exc}",
                    ) from exc
                wait = backoff(attempt)
            else:
                advised = retry_advice(reply)
                if advised is None or not retry or attempt >= self._retries:
                    return reply
                wait = min(MAX_WAIT_S, advised if advised >= 0 else backoff(attempt))
            attempt += 1
            time.sleep(wait)


_UNKNOWN_OUTCOME = frozenset(("CONNECTION_ERROR", "BAD_REPLY", "HTTP_ERROR", "INTERNAL_ERROR"))
"""The failures of a write after which it may or may not have been stored: no reply, a reply that
is not the server's (a proxy's 502 or 504 page, say, once it forwarded the write) or one without
its error code, and the server's own 500 (a fault it did not foresee, wherever it was)."""


def _checked_key(key: str) -> str:
    """An ``idempotency_key`` as the server takes it (:func:`~trueup.core.ids.idempotency_key_value`)
    and as HTTP can carry it (ASCII), refused here: sent, a line break or a non-ASCII letter
    failed in the HTTP library (read as no reply, and retried), and an empty one was taken as none."""
    if not isinstance(key, str) or not key.isascii() or idempotency_key_value(key) is None:
        raise ValueError(f"idempotency_key must be 1-255 printable ASCII characters, got {shown(key)}")
    if key != key.strip(" \t"):  # the HTTP library refuses such a header value: never sent
        raise ValueError(f"idempotency_key must not begin or end with a space or a tab, got {shown(key)}")
    return key


def _encode(body: Mapping[str, Any]) -> bytes:
    """``body`` as the JSON sent; a :class:`ValueError` for a value JSON cannot hold (NaN, a
    ``Decimal``, a ``datetime``), before anything is sent."""
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:  # json names the type: "Object of type Decimal is not JSON serializable"
        raise ValueError(f"the request cannot be sent as JSON: {exc}") from exc
    return text.encode("utf-8")
