"""Trueup: a self-hosted, verifiable balance ledger.

Vendors write signed integer deltas against customer accounts; Trueup seals every accepted
delta into an append-only RFC 9162 Merkle log with signed checkpoints, derives balances only
from sealed deltas and localises disagreements between two parties' books.

``trueup.verify_webhook(secret, headers, body)`` checks a webhook delivery (see
docs/webhooks.md); it is loaded on first use, so ``import trueup`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trueup.webhooks.signing import WebhookVerificationError, verify_webhook

__all__ = ["WebhookVerificationError", "__version__", "verify_webhook"]

__version__ = "0.1.0"

_LAZY = {"verify_webhook", "WebhookVerificationError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from trueup.webhooks import signing  # noqa: PLC0415 - loaded on first use only

        return getattr(signing, name)
    raise AttributeError(f"module 'trueup' has no attribute {name!r}")
