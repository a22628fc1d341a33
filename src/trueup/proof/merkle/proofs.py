"""RFC 9162 inclusion and consistency proofs built from stored perfect-subtree hashes.

Storage keeps the hash of every perfect subtree ``(level, index)`` of the log (the
sequencer writes them as :class:`~trueup.proof.merkle.CompactRange` completes them). A
proof is served in two steps, so that storage fetches exactly what it needs in one query:

1. ``*_proof_nodes(...)`` lists the node ids the proof needs, all of them perfect subtrees
   lying fully inside the tree of the requested size;
2. ``*_proof(..., nodes)`` assembles the proof from a mapping ``(level, index) -> hash``.

A proof element whose subtree is incomplete in a tree of that size (an *ephemeral* node on
the right edge) is computed from the perfect subtrees that compose it, as RFC 9162 §2.1.1
defines the hash of such a node.
"""

from __future__ import annotations

from typing import Protocol

from trueup.proof.errors import TreeError
from trueup.proof.merkle.hashing import HASH_SIZE, NodeId, fold_right, range_nodes

__all__ = [
    "NodeLookup",
    "consistency_proof",
    "consistency_proof_nodes",
    "consistency_proof_plan",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "inclusion_proof_plan",
]


class NodeLookup(Protocol):
    """Anything indexable by ``(level, index)`` that returns a 32-byte hash (e.g. a dict).

    A missing node raises :class:`KeyError`.
    """

    def __getitem__(self, key: NodeId, /) -> bytes: ...


def _path_plan(level: int, index: int, size: int) -> list[list[NodeId]]:
    # The audit path of node (level, index) in a tree of `size` leaves, lowest level first.
    # At each level above the node, the sibling of the node's ancestor is a proof element
    # unless it lies wholly beyond the tree (the ancestor is then carried up unchanged).
    # A sibling cut by the right edge is the ephemeral node [start, size).
    plan: list[list[NodeId]] = []
    for lvl in range(level, (size - 1).bit_length()):
        sibling = (index >> (lvl - level)) ^ 1
        start = sibling << lvl
        if start >= size:
            continue
        if start + (1 << lvl) <= size:
            plan.append([(lvl, sibling)])
        else:
            plan.append(range_nodes(start, size))
    return plan


def inclusion_proof_plan(index: int, size: int) -> list[list[NodeId]]:
    """Return the inclusion proof of leaf ``index`` in a tree of ``size`` leaves, as node ids.

    One entry per proof hash, lowest level first (RFC 9162 §2.1.3.1 ``PATH(m, D[n])``
    order). An entry of one node is that node's hash; a longer entry is an ephemeral node,
    whose hash is :func:`~trueup.proof.merkle.fold_right` of its nodes' hashes.

    Raises:
        TreeError: unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise TreeError(f"leaf index {index} is out of range for a tree of {size} leaves")
    return _path_plan(0, index, size)


def consistency_proof_plan(old_size: int, new_size: int) -> list[list[NodeId]]:
    """Return the consistency proof from ``old_size`` to ``new_size`` leaves, as node ids.

    Same entry format as :func:`inclusion_proof_plan`, in RFC 9162 §2.1.4.1
    ``PROOF(m, D[n])`` order. It is the inclusion path of the last perfect subtree of the
    old tree, preceded by that subtree itself unless the old tree is perfect (the verifier
    then already holds it as the old root). Empty when the sizes are equal or the old tree
    is empty.

    Raises:
        TreeError: unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise TreeError(f"cannot prove consistency from {old_size} to {new_size} leaves")
    if old_size in (0, new_size):
        return []
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    plan = _path_plan(level, index, new_size)
    if old_size != 1 << level:
        plan.insert(0, [(level, index)])
    return plan


def _flatten(plan: list[list[NodeId]]) -> list[NodeId]:
    return [node for entry in plan for node in entry]


def _assemble(plan: list[list[NodeId]], nodes: NodeLookup) -> list[bytes]:
    proof: list[bytes] = []
    for entry in plan:
        hashes = [_fetch(nodes, node) for node in entry]
        proof.append(hashes[0] if len(hashes) == 1 else fold_right(hashes))
    return proof


def _fetch(nodes: NodeLookup, node: NodeId) -> bytes:
    try:
        value = nodes[node]
    except KeyError as exc:
        raise TreeError(f"stored node (level {node[0]}, index {node[1]}) is missing") from exc
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise TreeError(f"stored node (level {node[0]}, index {node[1]}) is not a {HASH_SIZE}-byte hash")
    return value


def inclusion_proof_nodes(index: int, size: int) -> list[NodeId]:
    """Return every stored node needed for the inclusion proof of leaf ``index`` in ``size``.

    All are perfect subtrees inside ``[0, size)``, each listed once, in proof order. Pass
    their hashes to :func:`inclusion_proof`.

    Raises:
        TreeError: unless ``0 <= index < size``.
    """
    return _flatten(inclusion_proof_plan(index, size))


def inclusion_proof(index: int, size: int, nodes: NodeLookup) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    ``nodes`` maps at least the ids of :func:`inclusion_proof_nodes` to their hashes. The
    result lists 32-byte hashes, lowest level first, as :func:`verify_inclusion` expects.

    Raises:
        TreeError: for an out-of-range index, or a node missing from ``nodes`` or not 32 bytes.
    """
    return _assemble(inclusion_proof_plan(index, size), nodes)


def consistency_proof_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """Return every stored node needed for the consistency proof from ``old_size`` to ``new_size``.

    All are perfect subtrees inside ``[0, new_size)``, each listed once, in proof order.

    Raises:
        TreeError: unless ``0 <= old_size <= new_size``.
    """
    return _flatten(consistency_proof_plan(old_size, new_size))


def consistency_proof(old_size: int, new_size: int, nodes: NodeLookup) -> list[bytes]:
    """Return the RFC 9162 consistency proof from the tree of ``old_size`` to ``new_size`` leaves.

    ``nodes`` maps at least the ids of :func:`consistency_proof_nodes` to their hashes. The
    result is what :func:`verify_consistency` expects (empty for equal sizes or an empty
    old tree).

    Raises:
        TreeError: for sizes out of order, or a node missing from ``nodes`` or not 32 bytes.
    """
    return _assemble(consistency_proof_plan(old_size, new_size), nodes)
