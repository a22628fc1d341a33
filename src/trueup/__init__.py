"""Trueup: a self-hosted, verifiable balance ledger.

Vendors write signed integer deltas against customer accounts; Trueup seals every accepted
delta into an append-only RFC 9162 Merkle log with signed checkpoints, derives balances only
from sealed deltas and localises disagreements between two parties' books.
"""

__version__ = "0.1.0"
