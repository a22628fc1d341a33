"""The right edge of an append-only RFC 9162 tree: what the sequencer keeps in memory.

A tree of ``size`` leaves decomposes into one perfect subtree per set bit of ``size``,
largest (leftmost) first. Those few hashes (at most 64) are all that is needed to append
leaves and compute the root, so sealing a batch never reads or rehashes history: each
appended leaf costs one leaf-level store plus, on average, one node hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat

from trueup.proof.errors import TreeError
from trueup.proof.merkle.hashing import EMPTY_ROOT, HASH_SIZE, NodeId, StoredNode

__all__ = ["CompactRange", "required_nodes"]


def required_nodes(size: int) -> list[NodeId]:
    """Return the ``(level, index)`` nodes to load to rebuild the compact range of ``size``.

    One perfect subtree per set bit of ``size``, largest first; their hashes, in this order,
    are what :meth:`CompactRange.from_nodes` takes.

    Raises:
        TreeError: if ``size`` is negative.
    """
    if size < 0:
        raise TreeError(f"tree size {size} must not be negative")
    nodes: list[NodeId] = []
    begin = 0
    for level in _set_bits_descending(size):
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _set_bits_descending(size: int) -> Iterator[int]:
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            yield level


class CompactRange:
    """The perfect-subtree hashes covering leaves ``[0, size)``, largest first.

    Invariant: ``len(hashes) == size.bit_count()`` and ``hashes[i]`` is the hash of the
    ``i``-th node of :func:`required_nodes`. Not thread-safe: one writer (the sequencer)
    owns it; use :meth:`copy` to hand a snapshot elsewhere.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        """Create the compact range of the empty tree (same as :meth:`empty`)."""
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def empty(cls) -> CompactRange:
        """Return the compact range of the empty tree."""
        return cls()

    @classmethod
    def from_nodes(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Rebuild the compact range of a tree of ``size`` leaves from stored node hashes.

        ``hashes`` are the hashes of the nodes :func:`required_nodes` lists for ``size``,
        in that order.

        Raises:
            TreeError: if ``size`` is negative, the number of hashes is not the number of
                set bits of ``size``, or a hash is not 32 bytes.
        """
        if size < 0:
            raise TreeError(f"tree size {size} must not be negative")
        if len(hashes) != size.bit_count():
            raise TreeError(
                f"a tree of {size} leaves has {size.bit_count()} compact-range nodes, "
                f"got {len(hashes)} hashes"
            )
        for position, value in enumerate(hashes):
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise TreeError(f"compact-range hash {position} is not a {HASH_SIZE}-byte hash")
        compact = cls()
        compact._size = size
        compact._hashes = list(hashes)
        return compact

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree hashes, largest first (the nodes of :func:`required_nodes`)."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        """Return an independent copy (appending to one does not change the other)."""
        clone = CompactRange()
        clone._size = self._size
        clone._hashes = self._hashes.copy()
        return clone

    def append(self, leaf_hash: bytes) -> list[StoredNode]:
        """Append one leaf hash; return every node it completes as ``(level, index, hash)``.

        The list starts with the leaf itself ``(0, old_size, leaf_hash)`` and goes up one
        level per completed parent. The caller stores them so proofs can be served later.

        Raises:
            TreeError: if ``leaf_hash`` is not 32 bytes.
        """
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise TreeError(f"leaf hash for index {self._size} must be {HASH_SIZE} bytes")
        sha = hashlib.sha256
        hashes = self._hashes
        index = self._size
        h = leaf_hash
        completed: list[StoredNode] = [(0, index, h)]
        level = 0
        # RFC 9162 §2.1.1: a node at an odd index is a right child; its left sibling is the
        # last hash of the range, and together they complete their parent.
        while index & 1:
            h = sha(b"\x01" + hashes.pop() + h).digest()
            index >>= 1
            level += 1
            completed.append((level, index, h))
        hashes.append(h)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[StoredNode]:
        """Append leaf hashes in order; return every completed node as ``(level, index, hash)``.

        Returns the same nodes as calling :meth:`append` for each hash, ordered by level:
        first the new leaves in order, then the completed level-1 nodes, and so on. Works a
        level at a time, so the per-leaf cost is close to one SHA-256 call (this is the
        sealing hot path). If any hash is not 32 bytes the range is left unchanged.

        Raises:
            TreeError: if some leaf hash is not 32 bytes.
        """
        leaves = leaf_hashes if type(leaf_hashes) is list else list(leaf_hashes)
        count = len(leaves)
        if not count:
            return []
        if set(map(len, leaves)) != {HASH_SIZE} or not all(type(h) is bytes for h in leaves):
            bad = next(i for i, h in enumerate(leaves) if type(h) is not bytes or len(h) != HASH_SIZE)
            raise TreeError(f"leaf hash for index {self._size + bad} must be {HASH_SIZE} bytes")
        sha = hashlib.sha256
        start = self._size
        completed: list[StoredNode] = list(zip(repeat(0), range(start, start + count), leaves))
        # The current right edge keyed by level: one node per set bit of `start`.
        edge = dict(zip(_set_bits_descending(start), self._hashes, strict=True))
        leftovers: dict[int, bytes] = {}
        level = 0
        first = start  # index of cur[0] at this level; always start >> level
        cur = leaves
        while cur:
            if first & 1:
                # cur[0] is a right child: its left sibling is the edge node of this level.
                cur = [edge.pop(level), *cur]
                first -= 1
            if len(cur) & 1:
                leftovers[level] = cur[-1]
            # RFC 9162 §2.1.1: each (left, right) pair completes its parent node.
            pairs = zip(cur[::2], cur[1::2], strict=False)  # an odd last node waits
            parents = [sha(b"\x01" + a + b).digest() for a, b in pairs]
            first >>= 1
            level += 1
            completed.extend(zip(repeat(level), range(first, first + len(parents)), parents))
            cur = parents
        edge.update(leftovers)
        self._hashes = [edge[lvl] for lvl in sorted(edge, reverse=True)]
        self._size = start + count
        return completed

    def root(self) -> bytes:
        """Return the RFC 9162 root hash of the tree of :attr:`size` leaves (32 bytes)."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        sha = hashlib.sha256
        acc = hashes[-1]
        # The subtrees shrink from left to right, so they join from the right.
        for h in reversed(hashes[:-1]):
            acc = sha(b"\x01" + h + acc).digest()
        return acc

    def __eq__(self, other: object) -> bool:
        """Compact ranges are equal when they cover the same size with the same hashes."""
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        """Show the size and root, e.g. ``CompactRange(size=8, root=5dc9…)``."""
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}…)"
