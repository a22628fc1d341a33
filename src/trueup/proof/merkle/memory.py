"""An in-memory RFC 9162 tree holding every perfect-subtree hash, for fast proofs.

Used where the whole log fits in memory: the benchmark, ``trueup audit`` (which rebuilds
the tree from stored leaves) and tests. Level ``L`` is one contiguous ``bytearray`` of the
32-byte hashes of the complete nodes ``(L, 0), (L, 1), ...``, so the tree costs 64 bytes per
leaf and a proof element is one slice, with no per-node Python object.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from typing import NamedTuple

from trueup.proof.errors import TreeError
from trueup.proof.merkle.hashing import EMPTY_ROOT, HASH_SIZE, NodeId, fold_right, range_nodes

__all__ = ["MemoryTree"]


class _Edge(NamedTuple):
    """The right edge of the tree at its current size, worked out once per size."""

    border: list[bytes]
    """``border[L]``: the level-``L`` node on the path to the last leaf, cut at the size."""
    left_levels: list[int]
    """The levels (ascending) at which the last leaf's path has a complete left sibling."""
    left_hashes: list[bytes]
    """Those left siblings' hashes, in the same order."""


class MemoryTree:
    """An append-only Merkle tree of leaf hashes, serving roots and proofs for any size.

    Invariant: ``levels[L]`` holds ``size >> L`` hashes, the complete nodes of level ``L``.
    The right-edge (ephemeral) hashes of the current size are computed once per size and
    cached, so :meth:`inclusion_proof` at the current size costs one slice per level below
    the point where the leaf's path meets the last leaf's, and cached hashes above it.
    Not thread-safe.
    """

    __slots__ = ("_edge", "_levels", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """Build a tree from 32-byte leaf hashes (possibly none).

        Raises:
            TreeError: if a leaf hash is not 32 bytes.
        """
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self._edge: _Edge | None = None
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one 32-byte leaf hash and return its leaf index.

        Raises:
            TreeError: if ``leaf_hash`` is not 32 bytes.
        """
        self.extend((leaf_hash,))
        return self._size - 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append 32-byte leaf hashes in order, completing every node they fill.

        Raises:
            TreeError: if a leaf hash is not 32 bytes (nothing is appended then).
        """
        leaves = leaf_hashes if type(leaf_hashes) is list else list(leaf_hashes)
        if not leaves:
            return
        if set(map(len, leaves)) != {HASH_SIZE} or set(map(type, leaves)) != {bytes}:
            bad = next(i for i, h in enumerate(leaves) if type(h) is not bytes or len(h) != HASH_SIZE)
            raise TreeError(f"leaf hash for index {self._size + bad} must be {HASH_SIZE} bytes")
        sha = hashlib.sha256
        levels = self._levels
        levels[0] += b"".join(leaves)
        self._size += len(leaves)
        self._edge = None
        level = 0
        while True:
            below = levels[level]
            complete = len(below) // (2 * HASH_SIZE)
            if complete == 0:
                break
            if level + 1 == len(levels):
                levels.append(bytearray())
            above = levels[level + 1]
            have = len(above) // HASH_SIZE
            if have == complete:
                break  # nothing new here, so nothing new higher up either
            pairs = bytes(below[have * 2 * HASH_SIZE : complete * 2 * HASH_SIZE])
            # RFC 9162 §2.1.1: parent = SHA-256(0x01 || left || right); pairs are adjacent.
            above += b"".join([sha(b"\x01" + pairs[i : i + 64]).digest() for i in range(0, len(pairs), 64)])
            level += 1

    def node(self, level: int, index: int) -> bytes:
        """Return the hash of the complete node ``(level, index)``.

        Raises:
            TreeError: if that perfect subtree is not complete in this tree.
        """
        if level < 0 or index < 0 or level >= len(self._levels):
            raise TreeError(f"node (level {level}, index {index}) is not in the tree")
        row = self._levels[level]
        offset = index * HASH_SIZE
        if offset + HASH_SIZE > len(row):
            raise TreeError(f"node (level {level}, index {index}) is not in the tree")
        return bytes(row[offset : offset + HASH_SIZE])

    def __getitem__(self, key: NodeId) -> bytes:
        """Return the hash of the complete node ``key = (level, index)``; KeyError if absent.

        This makes the tree a :class:`~trueup.proof.merkle.NodeLookup` for the stored-node
        proof functions.
        """
        try:
            return self.node(*key)
        except TreeError as exc:
            raise KeyError(key) from exc

    def leaf_hash(self, index: int) -> bytes:
        """Return the hash of leaf ``index``.

        Raises:
            TreeError: if ``index`` is not below :attr:`size`.
        """
        return self.node(0, index)

    def _right_edge(self) -> _Edge:
        # border[L] = hash of the level-L node on the path to the last leaf, cut at the
        # current size: a perfect node, or an ephemeral one built from its left child
        # (perfect) and border[L - 1] -- RFC 9162 §2.1.1 applied to the right edge.
        edge = self._edge
        if edge is not None:
            return edge
        n = self._size
        levels = self._levels
        last = n - 1
        sha = hashlib.sha256
        border = [bytes(levels[0][last * HASH_SIZE : n * HASH_SIZE])]
        for level in range(1, last.bit_length() + 1):
            j = last >> level
            if (j + 1) << level <= n:
                row = levels[level]
                border.append(bytes(row[j * HASH_SIZE : (j + 1) * HASH_SIZE]))
            elif (2 * j + 1) << (level - 1) >= n:
                border.append(border[-1])  # the right child is empty: carried up unchanged
            else:
                row = levels[level - 1]
                left = row[2 * j * HASH_SIZE : (2 * j + 1) * HASH_SIZE]
                border.append(sha(b"\x01" + left + border[-1]).digest())
        left_levels = [level for level in range(last.bit_length()) if (last >> level) & 1]
        left_hashes = [self.node(level, (last >> level) - 1) for level in left_levels]
        edge = self._edge = _Edge(border, left_levels, left_hashes)
        return edge

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise TreeError(f"tree size {size} is out of range for a tree of {self._size} leaves")
        return size

    def _range_hash(self, begin: int, end: int) -> bytes:
        return fold_right([self.node(lvl, idx) for lvl, idx in range_nodes(begin, end)])

    def root(self, size: int | None = None) -> bytes:
        """Return the RFC 9162 root of the first ``size`` leaves (default: all of them).

        Raises:
            TreeError: if ``size`` is negative or larger than :attr:`size`.
        """
        n = self._check_size(size)
        if n == 0:
            return EMPTY_ROOT
        if n == self._size:
            return self._right_edge().border[-1]
        return self._range_hash(0, n)

    def _path(self, level: int, index: int, n: int) -> list[bytes]:
        # Same walk as proofs._path_plan, reading hashes straight from the level arrays.
        border = self._right_edge().border if n == self._size else None
        levels = self._levels
        proof: list[bytes] = []
        for lvl in range(level, (n - 1).bit_length()):
            sibling = (index >> (lvl - level)) ^ 1
            start = sibling << lvl
            if start >= n:
                continue
            if start + (1 << lvl) <= n:
                offset = sibling * HASH_SIZE
                proof.append(bytes(levels[lvl][offset : offset + HASH_SIZE]))
            elif border is not None:
                proof.append(border[lvl])
            else:
                proof.append(self._range_hash(start, n))
        return proof

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 inclusion proof of leaf ``index`` in the first ``size`` leaves.

        ``size`` defaults to the current size, the fast case: one slice per level.

        Raises:
            TreeError: unless ``0 <= index < size <= self.size``.
        """
        n = self._check_size(size)
        if not 0 <= index < n:
            raise TreeError(f"leaf index {index} is out of range for a tree of {n} leaves")
        if n == self._size:
            return self._current_path(index)
        return self._path(0, index, n)

    def _current_path(self, index: int) -> list[bytes]:
        # The same proof as _path(0, index, size), in three runs. Let k be the bit length of
        # index ^ last. Below level k - 1 the leaf's ancestors lie left of the last leaf's, so
        # every sibling is a complete node: one slice each. At level k - 1 the sibling is the
        # last leaf's ancestor, cut at the size: border[k - 1]. From level k on the two paths
        # are one, and its siblings are the last leaf's complete left siblings, the same for
        # every leaf at this size (a right sibling there would start past the last leaf).
        edge = self._right_edge()
        k = (index ^ (self._size - 1)).bit_length()
        levels = self._levels
        proof = [
            bytes(levels[level][(start := ((index >> level) ^ 1) * HASH_SIZE) : start + HASH_SIZE])
            for level in range(k - 1)
        ]
        if k:
            proof.append(edge.border[k - 1])
        proof += edge.left_hashes[bisect_left(edge.left_levels, k) :]
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 consistency proof from ``old_size`` to ``new_size`` leaves.

        ``new_size`` defaults to the current size. Empty for equal sizes or ``old_size == 0``.

        Raises:
            TreeError: unless ``0 <= old_size <= new_size <= self.size``.
        """
        n = self._check_size(new_size)
        if not 0 <= old_size <= n:
            raise TreeError(f"cannot prove consistency from {old_size} to {n} leaves")
        if old_size in (0, n):
            return []
        level = (old_size & -old_size).bit_length() - 1
        index = (old_size - 1) >> level
        proof = self._path(level, index, n)
        if old_size != 1 << level:
            proof.insert(0, self.node(level, index))
        return proof

    def __repr__(self) -> str:
        """Show the size, e.g. ``MemoryTree(size=8)``."""
        return f"MemoryTree(size={self._size})"
