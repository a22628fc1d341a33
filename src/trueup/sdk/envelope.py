"""The API's envelope, as every call of the client reads and writes it: the ``data`` of a
success, the server's error as a :class:`TrueupError`, a reply that is no JSON object (a proxy's
page) as ``BAD_REPLY``, when a refused request may be sent again (429, 503, a 202 saying the
first request with its key is in flight), and an id put in a path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from trueup.proof.canonical import unique_members
from trueup.proof.errors import ProofError
from trueup.sdk.errors import TrueupError

__all__ = [
    "MAX_WAIT_S",
    "backoff",
    "not_a_trueup_reply",
    "path_segment",
    "reply_data",
    "reply_json",
    "retry_advice",
    "strict_document",
]

_RETRY_STATUSES = frozenset({429, 503})
MAX_WAIT_S = 5.0
"""The longest one wait between attempts, whatever ``Retry-After`` says."""


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` where the server gave no advice: 0.25,
    doubling, at most :data:`MAX_WAIT_S`."""
    return float(min(MAX_WAIT_S, 0.25 * 2**attempt))


def retry_advice(reply: httpx.Response) -> float | None:
    """Seconds to wait before sending again (-1: no advice, back off), or ``None`` for a
    reply to keep: a 429 or 503, or a 202 saying the first request with this key is in flight."""
    if reply.status_code not in _RETRY_STATUSES and reply.status_code != 202:
        return None
    body = reply_json(reply)
    if reply.status_code == 202 and (not isinstance(body, dict) or body.get("code") != "IDEMPOTENCY_PENDING"):
        return None
    advised = _seconds(body.get("retryAfterSeconds") if isinstance(body, dict) else None)
    if advised is not None and 0 <= advised < math.inf:
        return advised
    header = _header_seconds(reply)
    return -1.0 if header is None else header


def _header_seconds(reply: httpx.Response) -> float | None:
    """A ``Retry-After`` header of seconds (not a date), or ``None``."""
    header = reply.headers.get("Retry-After", "")
    # ASCII digits only: str.isdigit() also takes "²", which float() refuses.
    return float(header) if header.isascii() and header.isdigit() else None


def _seconds(value: object) -> float | None:
    """A JSON number of seconds as a float (an integer too large for one is infinite), or
    ``None`` for anything else (a boolean, a string, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer past the largest float
        return math.inf if value > 0 else -math.inf
    return None if math.isnan(seconds) else seconds


def reply_json(reply: httpx.Response) -> object:
    """The reply's body as JSON, or ``None`` where it is not JSON (a proxy's page, say)."""
    try:
        return json.loads(reply.content)
    except (ValueError, RecursionError):
        return None


def strict_document(reply: httpx.Response, what: str, error: type[ProofError]) -> dict[str, Any]:
    """The JSON object of a reply whose contents a check of the log reads, read as ``trueup
    verify`` reads a bundle: a member given twice (which json.loads would resolve to the last,
    another parser to the first) is ``error`` naming it and ``what``, so what is checked is all
    the reply says. The server's refusal is its :class:`TrueupError`, and a reply that is no JSON
    object (a proxy's page) ``BAD_REPLY``: nothing was checked."""
    if not reply.is_success:
        reply_data(reply)  # raises the server's error
    try:
        document = json.loads(reply.text, object_pairs_hook=unique_members(what, error))
    except (ValueError, RecursionError):  # a ProofError is not a ValueError
        document = None
    if not isinstance(document, dict):
        raise not_a_trueup_reply(reply)
    return document


def not_a_trueup_reply(reply: httpx.Response) -> TrueupError:
    """``BAD_REPLY`` without a body: the reply is not a JSON object, so not the server's (a
    proxy's page, say, whatever its status); it proves nothing about the log either way."""
    return TrueupError(
        "BAD_REPLY",
        f"not a Trueup reply: {reply.text[:200]!r}",
        reply.status_code,
        retry_after=_header_seconds(reply),  # a proxy's 503 page, say
        http_request_id=reply.headers.get("x-request-id"),
    )


def reply_data(reply: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a successful reply; :class:`TrueupError` for anything else."""
    body = reply_json(reply)
    if not isinstance(body, dict):
        raise not_a_trueup_reply(reply)
    if reply.is_success and body.get("success") is True and isinstance(body.get("data"), dict):
        data: dict[str, Any] = body["data"]
        return data
    if reply.is_success:  # a 202 IDEMPOTENCY_PENDING that outlasted the retries, say
        code = str(body.get("code", "BAD_REPLY"))
        message = str(body.get("message", "the reply holds no data"))
    else:
        code, message = str(body.get("code", "HTTP_ERROR")), str(body.get("message", reply.reason_phrase))
    retry_after = _advised_seconds(reply, body)
    raise TrueupError(
        code,
        message,
        reply.status_code,
        retry_after=retry_after,
        body=body,
        http_request_id=reply.headers.get("x-request-id"),
    )


def _advised_seconds(reply: httpx.Response, body: Mapping[str, Any]) -> float | None:
    """The server's advice on when to try again: ``retryAfterSeconds``, else a ``Retry-After``
    header of seconds (all a proxy's 429 or 503 may carry), else ``None``."""
    advised = _seconds(body.get("retryAfterSeconds"))
    # As the retries read it (retry_advice): a negative or endless wait is no advice.
    if advised is not None and 0 <= advised < math.inf:
        return advised
    return _header_seconds(reply)


def path_segment(value: str) -> str:
    """``value`` as one path segment: an id holding ``/`` or ``?``, or ``.`` and ``..`` (which
    HTTP clients drop from paths), must not change the route."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")
