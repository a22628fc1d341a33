"""Trueup's Python client: the HTTP API (docs/api.md) with retries that never store a write
twice, and the offline checks of the log's proofs against a key you pin (docs/sdk.md).

    from trueup.sdk import Client

    with Client("http://127.0.0.1:8000", api_key) as trueup:
        accepted = trueup.write([{"key": "inv-1", "accountId": "cust_1", "bits": 2000}])
        trueup.wait_verified(accepted["requestId"])
        print(trueup.derive("cust_1")["computedBalance"])
"""

from trueup.proof import VerifiedPeriod
from trueup.sdk.client import Client, Followed, VerifiedDelta
from trueup.sdk.errors import TrueupError

__all__ = ["Client", "Followed", "TrueupError", "VerifiedDelta", "VerifiedPeriod"]
