"""RFC 9162 §2.1.1 Merkle tree hashing, and the addressing of perfect subtrees.

Hashes are 32-byte SHA-256 digests. A tree of ``n`` leaves is the RFC 9162 Merkle Tree
Hash ``MTH(D[0:n])``: the empty tree hashes to ``SHA-256("")``, a single leaf ``d`` to
``SHA-256(0x00 || d)`` and a larger tree to ``SHA-256(0x01 || MTH(left) || MTH(right))``
where the left part holds the largest power of two strictly below ``n`` leaves.

Nodes are addressed as ``(level, index)``: the perfect subtree whose root sits ``level``
levels above the leaves and which covers the leaves ``[index * 2**level, (index + 1) *
2**level)``. Level 0 nodes are the leaf hashes themselves. Every node of a tree of ``n``
leaves that is not on its right edge is such a perfect subtree; the right edge of the tree
is made of *ephemeral* nodes whose hashes are computed from the perfect subtrees that
compose them (see :func:`range_nodes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, TypeAlias

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "NodeId",
    "StoredNode",
    "fold_right",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from_leaf_hashes",
]

NodeId: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree; see the module docstring."""

StoredNode: TypeAlias = tuple[int, int, bytes]
"""``(level, index, hash)`` of a perfect subtree, as handed to storage."""

HASH_SIZE: Final = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

# RFC 9162 §2.1.1: domain separation between leaf and interior node hashes, so that a
# leaf can never be passed off as an interior node (second-preimage resistance).
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

_sha256 = hashlib.sha256

# RFC 9162 §2.1.1: MTH({}) = HASH(), the hash of the empty string.
EMPTY_ROOT: Final[bytes] = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)`` (32 bytes)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)`` (32 bytes).

    ``left`` and ``right`` are the 32-byte hashes of the two children; their sizes are not
    checked here (this is the hot path of every tree operation).
    """
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the root hash ``MTH`` of the tree whose leaf hashes are ``hashes``, in order.

    Computed level by level: pair neighbours left to right and carry an unpaired last node
    up unchanged. This builds exactly the RFC 9162 §2.1.1 tree (whose left subtree always
    holds the largest power of two below the size) without recursion. An empty sequence
    gives :data:`EMPTY_ROOT`. Cost: ``len(hashes) - 1`` node hashes.
    """
    if not hashes:
        return EMPTY_ROOT
    sha = _sha256
    level = list(hashes)
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)]
        if odd is not None:
            level.append(odd)
    return level[0]


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """Return the perfect subtrees that exactly cover the leaves ``[begin, end)``, left to right.

    This is the unique decomposition into maximal aligned perfect subtrees (a "compact
    range"): for ``begin == 0`` it has one node per set bit of ``end``, largest first. The
    hash of the range is :func:`fold_right` over the hashes of these nodes. Requires
    ``0 <= begin <= end``; an empty range gives an empty list.
    """
    nodes: list[NodeId] = []
    while begin < end:
        # The largest subtree starting at `begin` is limited by the alignment of `begin`
        # (its lowest set bit) and by the leaves left in the range.
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while begin + (1 << level) > end:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a compact range (left to right) into the hash of that range.

    ``fold_right([a, b, c]) == node_hash(a, node_hash(b, c))``. This is the RFC 9162 hash of
    a range that is the left part of one subtree, such as ``[0, n)`` or the leaves of an
    ephemeral node ``[s, n)`` on the right edge: the subtrees of such a range shrink from
    left to right, so they join from the right. Requires a non-empty sequence.
    """
    acc = hashes[-1]
    sha = _sha256
    for h in reversed(hashes[:-1]):
        acc = sha(b"\x01" + h + acc).digest()
    return acc
