"""What the write benchmarks send, and the same rows for the raw insert reference.

A batched request carries 1,000 items spread over 1,000 customers, with amounts that are
deterministic, non-zero and mixed in sign; a single-item request carries one item for the
customer of its client. Keys are unique per request through :data:`~trueup.bench.loadspec.MARKER`.
:func:`delta_rows` builds the rows the server would store for such requests (the columns of
the ``deltas`` insert in :mod:`trueup.storage.write_drafts`), for the raw ``executemany``
reference.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime

from trueup.bench.loadspec import CLIENT_MARKER, MARKER, RequestTemplate
from trueup.core.ids import new_request_id
from trueup.core.timestamps import format_canonical

__all__ = [
    "CUSTOMERS",
    "DeltaRow",
    "batch_template",
    "delta_rows",
    "item_amount",
    "item_customer",
    "single_template",
]

CUSTOMERS = 1_000
"""Customers a batched request spreads its items over."""

DeltaRow = tuple[str, str, int, str, str, int, str, None, str, str, str, bytes, str]
"""``(tenant_id, request_id, item_index, item_key, customer_id, amount, reason, metadata,
occurred_at, period, accepted_at, salt, status)``: one stored delta, queued, in the order of
:data:`~trueup.storage.write_drafts.DELTA_INSERT_COLUMNS`."""


def item_amount(index: int) -> int:
    """The amount of item ``index``: non-zero, |amount| < 1,000,000, mixed signs."""
    magnitude = (index * 7_919) % 999_983 + 1
    return magnitude if index % 3 else -magnitude


def item_customer(index: int) -> str:
    return f"cust-{index % CUSTOMERS:04d}"


def _headers(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("X-Api-Key", api_key), ("Content-Type", "application/json"))


def batch_template(api_key: str, items: int = 1_000) -> RequestTemplate:
    """``POST /api/v1/writes`` with ``items`` items; keys ``<token>-<i>``."""
    marker = MARKER.decode()
    document = {
        "items": [
            {"key": f"{marker}-{i}", "accountId": item_customer(i), "bits": item_amount(i)}
            for i in range(items)
        ]
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    return RequestTemplate("POST", "/api/v1/writes", _headers(api_key), body)


def single_template(api_key: str, items: int = 1, customers: int | None = None) -> RequestTemplate:
    """``POST /api/v1/writes`` with ``items`` small items for the sending client's customer (one
    of ``customers``, by the client's number, when given)."""
    marker, client = MARKER.decode(), CLIENT_MARKER.decode()
    document = {
        "items": [
            {"key": f"{marker}-{i}", "accountId": f"client-{client}", "bits": item_amount(i + 1)}
            for i in range(items)
        ]
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    return RequestTemplate("POST", "/api/v1/writes", _headers(api_key), body, customers)


def delta_rows(tenant_id: str, requests: int, items: int = 1_000) -> list[DeltaRow]:
    """The rows ``requests`` batched requests of ``items`` items store (salts random)."""
    accepted_at = format_canonical(datetime.now(UTC))
    period = accepted_at[:7]
    rows: list[DeltaRow] = []
    for number in range(requests):
        request_id = new_request_id(secrets.token_bytes(7), time.time_ns() // 1_000_000)
        token = f"r{number:010d}"
        rows.extend(
            (
                tenant_id,
                request_id,
                i,
                f"{token}-{i}",
                item_customer(i),
                item_amount(i),
                "",
                None,
                accepted_at,
                period,
                accepted_at,
                secrets.token_bytes(16),
                "queued",
            )
            for i in range(items)
        )
    return rows
