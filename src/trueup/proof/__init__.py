"""Trueup's verification layer: pure functions and values, no I/O, no clock, no randomness.

- :mod:`.merkle` — RFC 9162 Merkle tree hashing, compact ranges, proofs, verifiers;
- :mod:`.canonical` — RFC 8785 canonical JSON;
- :mod:`.leaf` — the canonical log leaf (DESIGN.md §3);
- :mod:`.note`, :mod:`.checkpoint` — C2SP signed notes and checkpoints (Ed25519);
- :mod:`.bundle` — offline proof bundles for ``trueup verify``;
- :mod:`.period` — a period checkpoint checked from its records;
- :mod:`.errors` — :class:`ProofError` and its subclasses.

It imports only the standard library and ``cryptography``, so the offline verifier runs
without the server's dependencies. Times and salts are passed in by callers.
"""

from trueup.proof.bundle import BUNDLE_VERSION, anchor_id, load_bundle, make_bundle, verify_bundle
from trueup.proof.canonical import MAX_SAFE_INTEGER, JSONValue, canonical_json
from trueup.proof.checkpoint import (
    CheckpointSigner,
    TreeHead,
    checkpoint_body,
    parse_checkpoint,
    parse_checkpoint_body,
    private_key_from_pem,
    private_key_from_seed,
    private_key_to_pem,
    verify_checkpoint,
)
from trueup.proof.errors import (
    BundleError,
    CheckpointError,
    ConsistencyProofError,
    InclusionProofError,
    LeafEncodingError,
    PeriodError,
    ProofError,
    TreeError,
)
from trueup.proof.leaf import (
    LEAF_VERSION,
    SALT_SIZE,
    LeafFields,
    decode_leaf,
    encode_leaf,
    format_occurred_at,
    leaf_bytes,
    leaf_fields_from_json,
    leaf_fields_to_json,
    metadata_digest,
)
from trueup.proof.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    MemoryTree,
    NodeId,
    NodeLookup,
    StoredNode,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    required_nodes,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from trueup.proof.note import VerifierKey, format_verifier_key, key_id, parse_verifier_key
from trueup.proof.period import (
    PERIOD_ROOT_PREFIX,
    PeriodCheck,
    VerifiedPeriod,
    chain_periods,
    period_proof_root,
    verify_period,
)

__all__ = [
    "BUNDLE_VERSION",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_VERSION",
    "MAX_SAFE_INTEGER",
    "PERIOD_ROOT_PREFIX",
    "SALT_SIZE",
    "BundleError",
    "CheckpointError",
    "CheckpointSigner",
    "CompactRange",
    "ConsistencyProofError",
    "InclusionProofError",
    "JSONValue",
    "LeafEncodingError",
    "LeafFields",
    "MemoryTree",
    "NodeId",
    "NodeLookup",
    "PeriodCheck",
    "PeriodError",
    "ProofError",
    "StoredNode",
    "TreeError",
    "TreeHead",
    "VerifiedPeriod",
    "VerifierKey",
    "anchor_id",
    "canonical_json",
    "chain_periods",
    "checkpoint_body",
    "consistency_proof",
    "consistency_proof_nodes",
    "decode_leaf",
    "encode_leaf",
    "format_occurred_at",
    "format_verifier_key",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "key_id",
    "leaf_bytes",
    "leaf_fields_from_json",
    "leaf_fields_to_json",
    "leaf_hash",
    "load_bundle",
    "make_bundle",
    "metadata_digest",
    "node_hash",
    "parse_checkpoint",
    "parse_checkpoint_body",
    "parse_verifier_key",
    "period_proof_root",
    "private_key_from_pem",
    "private_key_from_seed",
    "private_key_to_pem",
    "required_nodes",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_bundle",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_period",
]
