"""Straightforward test-only definitions from RFC 9162 §2.1, to check the real code against.

These follow the RFC text literally (recursion on the largest power of two below n) and
are written for clarity, not speed; a memo on leaf ranges keeps big trees affordable.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load_vector(name: str) -> Any:
    """Return the parsed JSON of ``tests/vectors/<name>``."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (RFC 9162 §2.1.1 ``k``), for n > 1."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Reference:
    """RFC 9162 MTH, PATH and PROOF over a fixed list of leaf hashes."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.leaves = leaf_hashes
        self.mth = cache(self._mth)

    def _mth(self, begin: int, end: int) -> bytes:
        # RFC 9162 §2.1.1: MTH({}) = HASH(); MTH({d0}) = leaf hash; else split at k.
        n = end - begin
        if n == 0:
            return sha256(b"")
        if n == 1:
            return self.leaves[begin]
        k = split_point(n)
        return sha256(b"\x01" + self.mth(begin, begin + k) + self.mth(begin + k, end))

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, begin: int, end: int) -> list[bytes]:
        # RFC 9162 §2.1.3.1 PATH(m, D[n]).
        n = end - begin
        if n == 1:
            return []
        k = split_point(n)
        if m < k:
            return [*self.path(m, begin, begin + k), self.mth(begin + k, end)]
        return [*self.path(m - k, begin + k, end), self.mth(begin, begin + k)]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def subproof(self, m: int, begin: int, end: int, b: bool) -> list[bytes]:
        # RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
        n = end - begin
        if m == n:
            return [] if b else [self.mth(begin, end)]
        k = split_point(n)
        if m <= k:
            return [*self.subproof(m, begin, begin + k, b), self.mth(begin + k, end)]
        return [*self.subproof(m - k, begin + k, end, False), self.mth(begin, begin + k)]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        # RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), for 0 < m <= n.
        if old == 0:
            return []
        return self.subproof(old, 0, new, True)


def inclusion_shape(index: int, size: int, length: int) -> tuple[str, ...] | None:
    """The left/right pattern RFC 9162 §2.1.3.2 applies to a proof of ``length`` hashes.

    Two (index, size) pairs with the same shape make the verifier compute the same root
    from the same proof, so a verifier cannot (and need not) tell them apart. ``None`` if
    the RFC algorithm rejects the proof for structural reasons.
    """
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    shape: list[str] = []
    for _ in range(length):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            shape.append("L")
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            shape.append("R")
        fn >>= 1
        sn >>= 1
    return tuple(shape) if sn == 0 else None


def consistency_shape(old: int, new: int, length: int) -> tuple[object, ...] | None:
    """The operations RFC 9162 §2.1.4.2 applies to a proof of ``length`` hashes (or None)."""
    if not 0 < old < new or length == 0:
        return None
    seeded = old & (old - 1) == 0
    steps = length + (1 if seeded else 0) - 1
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    shape: list[object] = [seeded]
    for _ in range(steps):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            shape.append("both")
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            shape.append("new")
        fn >>= 1
        sn >>= 1
    return tuple(shape) if sn == 0 else None


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    """``data`` with one bit of byte ``position`` flipped."""
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]
