"""RFC 9162 Merkle trees: hashing, the compact right edge, proofs and their verification.

- :mod:`.hashing` — leaf/node hashes, roots, ``(level, index)`` node addressing;
- :mod:`.compact` — :class:`CompactRange`, the sequencer's in-memory right edge;
- :mod:`.proofs` — inclusion/consistency proofs assembled from stored perfect subtrees;
- :mod:`.memory` — :class:`MemoryTree`, a whole tree in memory with fast proofs;
- :mod:`.verify` — the RFC 9162 §2.1.3.2 / §2.1.4.2 verifiers.
"""

from trueup.proof.merkle.compact import CompactRange, required_nodes
from trueup.proof.merkle.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    NodeId,
    StoredNode,
    fold_right,
    leaf_hash,
    node_hash,
    range_nodes,
    root_from_leaf_hashes,
)
from trueup.proof.merkle.memory import MemoryTree
from trueup.proof.merkle.proofs import (
    NodeLookup,
    consistency_proof,
    consistency_proof_nodes,
    consistency_proof_plan,
    inclusion_proof,
    inclusion_proof_nodes,
    inclusion_proof_plan,
)
from trueup.proof.merkle.verify import (
    consistency_proof_size,
    inclusion_proof_size,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryTree",
    "NodeId",
    "NodeLookup",
    "StoredNode",
    "consistency_proof",
    "consistency_proof_nodes",
    "consistency_proof_plan",
    "consistency_proof_size",
    "fold_right",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "inclusion_proof_plan",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "required_nodes",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]
