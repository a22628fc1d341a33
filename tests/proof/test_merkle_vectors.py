"""The RFC 6962 reference vectors (tests/vectors/rfc6962.json), through every code path."""

from __future__ import annotations

import pytest

from trueup.proof import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProofError,
    InclusionProofError,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

from .reference import flip, load_vector, sha256

VECTORS = load_vector("rfc6962.json")
LEAVES = [bytes.fromhex(x) for x in VECTORS["leafInputs"]]
LEAF_HASHES = [leaf_hash(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in VECTORS["rootHashes"]]
NODES = {
    (level, index): bytes.fromhex(h)
    for level, row in enumerate(VECTORS["nodeHashes"])
    for index, h in enumerate(row)
}
INCLUSION = [
    (case["leafIndex"], case["treeSize"], [bytes.fromhex(h) for h in case["proof"]])
    for case in VECTORS["inclusionProofs"]
]
CONSISTENCY = [
    (case["oldSize"], case["newSize"], [bytes.fromhex(h) for h in case["proof"]])
    for case in VECTORS["consistencyProofs"]
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_empty_root_is_sha256_of_nothing() -> None:
    assert sha256(b"") == EMPTY_ROOT == ROOTS[0]


def test_leaf_hashes_are_the_level_zero_nodes() -> None:
    assert [NODES[(0, i)] for i in range(8)] == LEAF_HASHES


def test_node_hashes_combine_their_children() -> None:
    for (level, index), value in NODES.items():
        if level:
            assert node_hash(NODES[(level - 1, 2 * index)], NODES[(level - 1, 2 * index + 1)]) == value


@pytest.mark.parametrize("size", range(9))
def test_root_of_every_prefix_matches_the_vectors(size: int) -> None:
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]
    assert MemoryTree(LEAF_HASHES[:size]).root() == ROOTS[size]
    assert MemoryTree(LEAF_HASHES).root(size) == ROOTS[size]
    compact = CompactRange.empty()
    compact.extend(LEAF_HASHES[:size])
    assert compact.root() == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_compact_range_holds_the_vector_compact_tree(size: int) -> None:
    compact = CompactRange.empty()
    for h in LEAF_HASHES[:size]:
        compact.append(h)
    expected = [NODES[(level, index)] for level, index in VECTORS["compactTrees"][size]]
    assert list(compact.hashes) == expected


def test_compact_range_reports_every_node_of_the_vector_tree() -> None:
    stored = {(level, index): h for level, index, h in CompactRange().extend(LEAF_HASHES)}
    assert stored == NODES


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proof_is_reproduced_and_verifies(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert MemoryTree(LEAF_HASHES[:size]).inclusion_proof(index) == proof
    assert MemoryTree(LEAF_HASHES).inclusion_proof(index, size) == proof
    assert inclusion_proof(index, size, NODES) == proof
    assert root_from_inclusion_proof(LEAF_HASHES[index], index, size, proof) == ROOTS[size]
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_reference_consistency_proof_is_reproduced_and_verifies(
    old: int, new: int, proof: list[bytes]
) -> None:
    assert MemoryTree(LEAF_HASHES[:new]).consistency_proof(old) == proof
    assert MemoryTree(LEAF_HASHES).consistency_proof(old, new) == proof
    assert consistency_proof(old, new, NODES) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    # The corruptions transparency-dev/merkle's verifier tests apply to every good proof.
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size // 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, sha256(b"WrongLeaf")),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = flip(bad[i], 0, 8)
        probes.append((f"flipped proof[{i}]", index, size, bad, root, leaf))
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_reference_inclusion_proofs_are_rejected(index: int, size: int, proof: list[bytes]) -> None:
    verified = []
    for desc, i, n, p, root, leaf in _inclusion_probes(index, size, proof, ROOTS[size], LEAF_HASHES[index]):
        try:
            verify_inclusion(leaf, i, n, p, root)
        except InclusionProofError:
            continue
        verified.append(desc)
    assert verified == []


@pytest.mark.parametrize(("old", "new", "proof"), [c for c in CONSISTENCY if c[2]])
def test_corrupted_reference_consistency_proofs_are_rejected(old: int, new: int, proof: list[bytes]) -> None:
    root1, root2 = ROOTS[old], ROOTS[new]
    probes = [
        ("old - 1", old - 1, new, root1, root2, proof),
        ("old + 1", old + 1, new, root1, root2, proof),
        ("old ^ 2", old ^ 2, new, root1, root2, proof),
        ("new * 2", old, new * 2, root1, root2, proof),
        ("new // 2", old, new // 2, root1, root2, proof),
        ("wrong old root", old, new, SOME_HASH, root2, proof),
        ("wrong new root", old, new, root1, SOME_HASH, proof),
        ("swapped roots", old, new, root2, root1, proof),
        ("empty proof", old, new, root1, root2, []),
        ("trailing old root", old, new, root1, root2, [*proof, root1]),
        ("trailing new root", old, new, root1, root2, [*proof, root2]),
        ("preceding old root", old, new, root1, root2, [root1, *proof]),
        ("preceding new root", old, new, root1, root2, [root2, *proof]),
        ("preceding proof[0]", old, new, root1, root2, [proof[0], *proof]),
        ("truncated", old, new, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = flip(bad[i], 0, 16)
        probes.append((f"flipped proof[{i}]", old, new, root1, root2, bad))
    verified = []
    for desc, m, n, r1, r2, p in probes:
        try:
            verify_consistency(m, n, r1, r2, p)
        except ConsistencyProofError:
            continue
        verified.append(desc)
    assert verified == []


def test_single_leaf_tree_proves_its_leaf_with_an_empty_proof() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    with pytest.raises(InclusionProofError, match="leaf hash must be 32 bytes, got 0 bytes"):
        verify_inclusion(b"", 0, 1, [], h)
    with pytest.raises(InclusionProofError, match="root hash must be 32 bytes, got 0 bytes"):
        verify_inclusion(h, 0, 1, [], b"")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1)])
def test_inclusion_in_a_tree_that_does_not_hold_the_index_is_rejected(index: int, size: int) -> None:
    with pytest.raises(InclusionProofError, match="out of range"):
        verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


@pytest.mark.parametrize(
    ("old", "new", "root1", "root2", "proof"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, []),
        (0, 1, EMPTY_ROOT, SOME_HASH, []),
        (1, 1, SOME_HASH, SOME_HASH, []),
        (3, 3, ROOTS[3], ROOTS[3], []),
    ],
)
def test_trivially_consistent_sizes_verify_with_an_empty_proof(
    old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> None:
    verify_consistency(old, new, root1, root2, proof)


@pytest.mark.parametrize(
    ("old", "new", "root1", "root2", "proof", "message"),
    [
        (1, 1, ROOTS[1], ROOTS[2], [], "trees of equal size 1 have different roots"),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], "has 1 hashes; sizes 0 -> 0 need 0"),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], "has 1 hashes; sizes 0 -> 1 need 0"),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], "has 1 hashes; sizes 1 -> 1 need 0"),
        (0, 3, SOME_HASH, ROOTS[3], [], "old root of an empty tree must be e3b0"),
        (0, 0, EMPTY_ROOT, SOME_HASH, [], "new root of an empty tree must be e3b0"),
        (1, 0, ROOTS[1], EMPTY_ROOT, [], "old tree size 1 is larger than new tree size 0"),
        (2, 1, ROOTS[2], ROOTS[1], [], "old tree size 2 is larger than new tree size 1"),
        (1, 2, ROOTS[1], ROOTS[2], [], "has 0 hashes; sizes 1 -> 2 need 1"),
        (6, 8, ROOTS[5], ROOTS[8], CONSISTENCY[2][2], "does not reproduce the old root"),
        (6, 8, ROOTS[6], ROOTS[7], CONSISTENCY[2][2], "does not reproduce the new root"),
    ],
)
def test_inconsistent_tree_heads_are_rejected_with_the_failed_check(
    old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes], message: str
) -> None:
    with pytest.raises(ConsistencyProofError, match=message):
        verify_consistency(old, new, root1, root2, proof)


def test_inclusion_failures_name_the_check_that_failed() -> None:
    index, size, proof = INCLUSION[-1]
    leaf, root = LEAF_HASHES[index], ROOTS[size]
    with pytest.raises(
        InclusionProofError, match=r"^inclusion proof has 2 hashes; leaf 5 in a tree of 8 leaves needs 3$"
    ):
        verify_inclusion(leaf, index, size, proof[:2], root)
    with pytest.raises(InclusionProofError, match=r"^inclusion proof hash 1 must be 32 bytes, got 31 bytes$"):
        verify_inclusion(leaf, index, size, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(
        InclusionProofError,
        match=rf"leads to root [0-9a-f]{{64}}, not the expected root {SOME_HASH.hex()}$",
    ):
        verify_inclusion(leaf, index, size, proof, SOME_HASH)
    with pytest.raises(InclusionProofError, match="must be non-negative integers"):
        verify_inclusion(leaf, -1, size, proof, root)
    with pytest.raises(InclusionProofError, match="must be non-negative integers"):
        verify_inclusion(leaf, 5.0, size, proof, root)  # type: ignore[arg-type]
    with pytest.raises(ConsistencyProofError, match="must be non-negative integers"):
        verify_consistency(-1, size, root, root, [])
