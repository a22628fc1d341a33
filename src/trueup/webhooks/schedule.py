"""When a failed delivery is tried again: exponential backoff with jitter (pure).

Retry ``n`` (1 for the first retry) waits ``min(base · 2^(n-1) · (1 + JITTER · u), CAP_S)``
seconds after the failed attempt, where ``u`` in ``[0, 1)`` is drawn by the caller. With the
default base of 5 s the nominal waits are 5 s, 10 s, 20 s … 2,560 s; jitter spreads the
retries of many deliveries that failed together (a receiver that was down) so that they do
not all arrive at once when it comes back. After ``MAX_RETRIES`` retries a delivery fails.
"""

from __future__ import annotations

__all__ = ["CAP_S", "JITTER", "MAX_ATTEMPTS", "MAX_RETRIES", "retry_delay"]

MAX_RETRIES = 10
"""Retries after the first attempt; a delivery gets at most ``MAX_ATTEMPTS`` attempts."""

MAX_ATTEMPTS = MAX_RETRIES + 1

CAP_S = 3600.0
"""No wait is longer than one hour."""

JITTER = 0.25
"""A wait is stretched by up to this fraction of itself."""


def retry_delay(retry: int, base_s: float, u: float) -> float | None:
    """Seconds to wait before retry number ``retry`` (1-based), or ``None`` past the last.

    ``u`` is a uniform random number in ``[0, 1)``; ``base_s`` must be positive.
    Raises :class:`ValueError` for a retry number below 1 or a bad ``base_s``/``u``.
    """
    if retry < 1:
        raise ValueError(f"retry must be 1 or more, got {retry}")
    if not base_s > 0:
        raise ValueError(f"base_s must be positive, got {base_s}")
    if not 0 <= u < 1:
        raise ValueError(f"u must be in [0, 1), got {u}")
    if retry > MAX_RETRIES:
        return None
    nominal = base_s * 2.0 ** (retry - 1)
    return min(nominal * (1.0 + JITTER * u), CAP_S)
