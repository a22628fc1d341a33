"""What the client raises: one error type, carrying what the server said."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TrueupError"]


class TrueupError(Exception):
    """A request that did not succeed.

    ``status`` is the HTTP status (``None`` when no reply came), ``code`` the server's error
    code (``VALIDATION_ERROR``, ``INVALID_API_KEY``, …) or one of the client's own:
    ``CONNECTION_ERROR`` (no reply), ``BAD_REPLY`` (not a Trueup reply), ``HTTP_ERROR`` (a JSON
    error without Trueup's code) and ``TIMEOUT`` (:meth:`~trueup.sdk.Client.wait_verified` gave
    up). After the first three, or the server's ``INTERNAL_ERROR``, a write may or may not have
    been stored, and a retry with the same idempotency key, ``idempotency_key``, stores it once.
    ``message`` names the field at fault, as the server wrote it; ``retry_after`` is the
    server's advice in seconds, if any (``retryAfterSeconds``, else a ``Retry-After`` header), on
    an error reply or on a 202 ``IDEMPOTENCY_PENDING`` that outlasted the retries.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        http_request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status is not None else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.idempotency_key = idempotency_key
        """On a write, the ``Idempotency-Key`` it went with (the one made for it when none was
        given): send the same write again with it to store it once."""
        self.http_request_id = http_request_id
        """The reply's ``X-Request-Id``: the id of the HTTP request (not a write's ``req_…``),
        which the server's log lines of it name; quote it to the server's operator (``None``
        when no reply came, or it had none)."""

    def said_of(self, what: str) -> TrueupError:
        """The same error, its message starting with ``what`` (which request of several it is)."""
        return TrueupError(
            self.code,
            f"{what}: {self.message}",
            self.status,
            self.retry_after,
            self.body,
            self.idempotency_key,
            self.http_request_id,
        )
