"""Verification of RFC 9162 inclusion and consistency proofs.

Both verifiers follow the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step, and
first check the inputs the RFC takes for granted (hash sizes, index and size ranges, the
exact proof length) so that every failure names the check that failed. They hold no state
and do no I/O; a verifier trusts nothing but the root hashes it is given.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from trueup.proof.errors import ConsistencyProofError, InclusionProofError, ProofError, shown
from trueup.proof.merkle.hashing import EMPTY_ROOT, HASH_SIZE

__all__ = [
    "consistency_proof_size",
    "inclusion_proof_size",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256


def inclusion_proof_size(index: int, size: int) -> int:
    """Return the number of hashes in the inclusion proof of leaf ``index`` in a tree of ``size``.

    The path splits where the paths to ``index`` and to the last leaf ``size - 1`` diverge:
    below that point every level has a sibling ("inner" part), above it only the levels
    where the path turns right have one ("border" part). Requires ``0 <= index < size``.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Return the number of hashes in the consistency proof from ``old_size`` to ``new_size``.

    Zero when the sizes are equal or the old tree is empty. Otherwise it is the inclusion
    path of the last perfect subtree of the old tree, plus that subtree's own hash unless
    the old tree is itself perfect (RFC 9162 §2.1.4.2 step 2 supplies it from the old
    root). Requires ``0 <= old_size <= new_size``.
    """
    if old_size in (0, new_size):
        return 0
    shift = (old_size & -old_size).bit_length() - 1
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    seed = 0 if old_size == 1 << shift else 1
    return seed + (inner - shift) + border


def _check_hash(value: bytes, what: str, error: type[ProofError]) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise error(f"{what} must be {HASH_SIZE} bytes, got {got}")


def _check_proof_hashes(proof: Sequence[bytes], kind: str, error: type[ProofError]) -> None:
    for position, element in enumerate(proof):
        _check_hash(element, f"{kind} proof hash {position}", error)


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root hash that ``proof`` proves leaf ``index`` (hash ``leaf_hash``) under.

    Implements RFC 9162 §2.1.3.2 steps 1-4 after checking that ``leaf_hash`` and every proof
    element are 32 bytes, ``0 <= index < size`` and the proof has exactly
    :func:`inclusion_proof_size` hashes. Compare the result with a trusted root, or call
    :func:`verify_inclusion` which does.

    Raises:
        InclusionProofError: naming the input check that failed.
    """
    _check_hash(leaf_hash, "leaf hash", InclusionProofError)
    if type(index) is not int or type(size) is not int or index < 0 or size < 0:  # not True, not 1.0
        raise InclusionProofError(
            f"leaf index {shown(index)} and tree size {shown(size)} must be non-negative integers"
        )
    # RFC 9162 §2.1.3.2 step 1: leaf_index must be below tree_size.
    if index >= size:
        raise InclusionProofError(f"leaf index {index} is out of range for a tree of {size} leaves")
    expected = inclusion_proof_size(index, size)
    if not isinstance(proof, list | tuple):
        raise InclusionProofError(f"inclusion proof must be a list of hashes, got {type(proof).__name__}")
    if len(proof) != expected:
        raise InclusionProofError(
            f"inclusion proof has {len(proof)} hashes; leaf {index} in a tree of "
            f"{size} leaves needs {expected}"
        )
    _check_proof_hashes(proof, "inclusion", InclusionProofError)
    sha = _sha256
    # RFC 9162 §2.1.3.2 steps 2-3.
    fn, sn = index, size - 1
    r = leaf_hash
    # RFC 9162 §2.1.3.2 step 4.
    for p in proof:
        if sn == 0:  # pragma: no cover - unreachable once the length is checked
            raise InclusionProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    # RFC 9162 §2.1.3.2 step 5 (first half): the path must end at the root.
    if sn != 0:  # pragma: no cover - unreachable once the length is checked
        raise InclusionProofError("inclusion proof ends below the root")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` proves leaf ``index`` with hash ``leaf_hash`` is in the tree ``root``.

    ``root`` is the trusted RFC 9162 root of the tree of ``size`` leaves; ``proof`` is the
    audit path, lowest level first, as :func:`~trueup.proof.merkle.inclusion_proof` makes it.
    Returns ``None`` when the proof verifies.

    Raises:
        InclusionProofError: with the failed check (hash size, index out of range, proof
            length, or root mismatch with both roots in hex).
    """
    _check_hash(root, "root hash", InclusionProofError)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    # RFC 9162 §2.1.3.2 step 5: compare the computed root with the trusted one.
    if not hmac.compare_digest(computed, root):
        raise InclusionProofError(
            f"inclusion proof for leaf {index} in a tree of {size} leaves leads to root "
            f"{computed.hex()}, not the expected root {root.hex()}"
        )


def _check_consistency_inputs(old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]) -> None:
    _check_hash(old_root, "old root hash", ConsistencyProofError)
    sizes_are_ints = type(old_size) is int and type(new_size) is int  # not True, not 1.0
    if not sizes_are_ints or old_size < 0 or new_size < 0:
        raise ConsistencyProofError(
            f"tree sizes {shown(old_size)} and {shown(new_size)} must be non-negative integers"
        )
    if old_size > new_size:
        raise ConsistencyProofError(f"old tree size {old_size} is larger than new tree size {new_size}")
    expected = consistency_proof_size(old_size, new_size)
    if not isinstance(proof, list | tuple):
        raise ConsistencyProofError(f"consistency proof must be a list of hashes, got {type(proof).__name__}")
    if len(proof) != expected:
        raise ConsistencyProofError(
            f"consistency proof has {len(proof)} hashes; sizes {old_size} -> {new_size} need {expected}"
        )
    _check_proof_hashes(proof, "consistency", ConsistencyProofError)


def root_from_consistency_proof(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> bytes:
    """Check ``proof`` against the trusted ``old_root`` and return the new root it implies.

    Implements RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``, after checking hash sizes
    and the exact proof length. Equal sizes need an empty proof and return ``old_root``.
    An empty old tree determines no new root, so ``old_size == 0`` raises; use
    :func:`verify_consistency`, which handles that case.

    Raises:
        ConsistencyProofError: naming the failed check (sizes, proof length, hash size, or
            an old root that the proof does not reproduce).
    """
    _check_consistency_inputs(old_size, new_size, old_root, proof)
    if old_size == 0:
        raise ConsistencyProofError("a consistency proof from the empty tree does not determine the new root")
    if old_size == new_size:
        return old_root
    sha = _sha256
    path = list(proof)
    # RFC 9162 §2.1.4.2 step 2: a perfect old tree is its own first subtree.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # RFC 9162 §2.1.4.2 steps 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # RFC 9162 §2.1.4.2 step 5.
    fr = sr = path[0]
    # RFC 9162 §2.1.4.2 step 6.
    for c in path[1:]:
        if sn == 0:  # pragma: no cover - unreachable once the length is checked
            raise ConsistencyProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # RFC 9162 §2.1.4.2 step 7.
    if sn != 0:  # pragma: no cover - unreachable once the length is checked
        raise ConsistencyProofError("consistency proof ends below the root")
    if not hmac.compare_digest(fr, old_root):
        raise ConsistencyProofError(
            f"consistency proof from {old_size} to {new_size} leaves does not reproduce the "
            f"old root: computed {fr.hex()}, expected {old_root.hex()}"
        )
    return sr


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``new_root`` (``new_size`` leaves) extends the tree ``old_root``.

    ``proof`` is the RFC 9162 consistency proof as
    :func:`~trueup.proof.merkle.consistency_proof` makes it. Equal sizes need an empty
    proof and equal roots; from the empty tree the proof must be empty and ``old_root``
    must be ``SHA-256("")`` (every tree extends the empty tree). Returns ``None`` when the
    proof verifies.

    Raises:
        ConsistencyProofError: naming the failed check, with both roots in hex on a mismatch.
    """
    _check_hash(new_root, "new root hash", ConsistencyProofError)
    _check_consistency_inputs(old_size, new_size, old_root, proof)
    if old_size == 0:
        # Every tree extends the empty tree (the proof is empty, checked above); only the
        # claimed empty roots can be wrong.
        if not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise ConsistencyProofError(
                f"old root of an empty tree must be {EMPTY_ROOT.hex()}, got {old_root.hex()}"
            )
        if new_size == 0 and not hmac.compare_digest(new_root, EMPTY_ROOT):
            raise ConsistencyProofError(
                f"new root of an empty tree must be {EMPTY_ROOT.hex()}, got {new_root.hex()}"
            )
        return
    computed = root_from_consistency_proof(old_size, new_size, old_root, proof)
    if not hmac.compare_digest(computed, new_root):
        if old_size == new_size:
            raise ConsistencyProofError(
                f"trees of equal size {old_size} have different roots {old_root.hex()} and {new_root.hex()}"
            )
        raise ConsistencyProofError(
            f"consistency proof from {old_size} to {new_size} leaves does not reproduce the "
            f"new root: computed {computed.hex()}, expected {new_root.hex()}"
        )
