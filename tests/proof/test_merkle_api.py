"""The contracts of CompactRange, MemoryTree and the stored-node proof functions."""

from __future__ import annotations

import pytest

from trueup.proof import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProofError,
    InclusionProofError,
    MemoryTree,
    ProofError,
    TreeError,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    required_nodes,
    verify_consistency,
    verify_inclusion,
)
from trueup.proof.merkle import consistency_proof_plan, fold_right, range_nodes

LEAVES = [leaf_hash(bytes([i])) for i in range(16)]


def test_append_returns_the_leaf_then_every_parent_it_completes() -> None:
    compact = CompactRange.from_nodes(3, [node_hash(LEAVES[0], LEAVES[1]), LEAVES[2]])
    completed = compact.append(LEAVES[3])
    h23 = node_hash(LEAVES[2], LEAVES[3])
    h0123 = node_hash(node_hash(LEAVES[0], LEAVES[1]), h23)
    assert completed == [(0, 3, LEAVES[3]), (1, 1, h23), (2, 0, h0123)]
    assert compact.size == 4
    assert compact.hashes == (h0123,)


def test_extend_reports_the_same_nodes_as_appending_one_by_one_ordered_by_level() -> None:
    one_by_one = CompactRange.empty()
    appended = [node for h in LEAVES[:11] for node in one_by_one.append(h)]
    batched = CompactRange.from_nodes(0, [])
    extended = batched.extend(iter(LEAVES[:11]))
    assert sorted(appended) == sorted(extended)
    assert [level for level, _, _ in extended] == sorted(level for level, _, _ in extended)
    assert extended[:11] == [(0, i, h) for i, h in enumerate(LEAVES[:11])]
    assert batched == one_by_one


def test_extend_with_nothing_changes_nothing() -> None:
    compact = CompactRange.empty()
    assert compact.extend([]) == []
    assert compact.size == 0
    assert compact.root() == EMPTY_ROOT


@pytest.mark.parametrize("bad", [b"short", b"x" * 33, "s" * 32, bytearray(32)])
def test_a_malformed_leaf_hash_leaves_the_compact_range_unchanged(bad: object) -> None:
    compact = CompactRange.empty()
    compact.extend(LEAVES[:5])
    before = compact.copy()
    with pytest.raises(TreeError, match="leaf hash for index 7 must be 32 bytes"):
        compact.extend([LEAVES[5], LEAVES[6], bad, LEAVES[8]])  # type: ignore[list-item]
    with pytest.raises(TreeError, match="leaf hash for index 5 must be 32 bytes"):
        compact.append(bad)  # type: ignore[arg-type]
    assert compact == before
    assert compact.root() == before.root()


def test_copy_is_independent_of_the_original() -> None:
    original = CompactRange.empty()
    original.extend(LEAVES[:3])
    clone = original.copy()
    clone.append(LEAVES[3])
    assert (original.size, clone.size) == (3, 4)
    assert original != clone


@pytest.mark.parametrize(
    ("size", "nodes"),
    [
        (0, []),
        (1, [(0, 0)]),
        (6, [(2, 0), (1, 2)]),
        (7, [(2, 0), (1, 2), (0, 6)]),
        (8, [(3, 0)]),
        (13, [(3, 0), (2, 2), (0, 12)]),
    ],
)
def test_required_nodes_are_the_perfect_subtrees_of_the_size_largest_first(
    size: int, nodes: list[tuple[int, int]]
) -> None:
    assert required_nodes(size) == nodes
    assert range_nodes(0, size) == nodes


def test_from_nodes_rejects_hashes_that_do_not_fit_the_size() -> None:
    with pytest.raises(TreeError, match="a tree of 6 leaves has 2 compact-range nodes, got 1"):
        CompactRange.from_nodes(6, [LEAVES[0]])
    with pytest.raises(TreeError, match="compact-range hash 1 is not a 32-byte hash"):
        CompactRange.from_nodes(6, [LEAVES[0], b"short"])
    with pytest.raises(TreeError, match="must not be negative"):
        CompactRange.from_nodes(-1, [])
    with pytest.raises(TreeError, match="must not be negative"):
        required_nodes(-1)


def test_a_compact_range_is_not_hashable_and_shows_its_size_and_root() -> None:
    compact = CompactRange.empty()
    with pytest.raises(TypeError):
        hash(compact)
    assert repr(compact) == f"CompactRange(size=0, root={EMPTY_ROOT.hex()[:16]}…)"


def test_stored_node_proofs_name_a_missing_or_malformed_node() -> None:
    nodes = {(level, index): h for level, index, h in CompactRange().extend(LEAVES[:6])}
    del nodes[(1, 2)]
    with pytest.raises(TreeError, match=r"stored node \(level 1, index 2\) is missing"):
        inclusion_proof(0, 6, nodes)
    nodes[(1, 2)] = b"short"
    with pytest.raises(TreeError, match=r"stored node \(level 1, index 2\) is not a 32-byte hash"):
        consistency_proof(4, 6, nodes)


def test_stored_node_proofs_reject_impossible_requests() -> None:
    with pytest.raises(TreeError, match="leaf index 6 is out of range for a tree of 6 leaves"):
        inclusion_proof_nodes(6, 6)
    with pytest.raises(TreeError, match="cannot prove consistency from 7 to 6 leaves"):
        consistency_proof_nodes(7, 6)
    assert consistency_proof_nodes(0, 6) == []
    assert consistency_proof_nodes(6, 6) == []


def test_an_ephemeral_proof_element_is_folded_from_its_perfect_subtrees() -> None:
    # Leaf 0 in a tree of 7: its last proof element covers leaves [4, 7), which is not a
    # perfect subtree; it is rebuilt from (1, 2) and (0, 6).
    assert inclusion_proof_nodes(0, 7) == [(0, 1), (1, 1), (1, 2), (0, 6)]
    nodes = {(level, index): h for level, index, h in CompactRange().extend(LEAVES[:7])}
    proof = inclusion_proof(0, 7, nodes)
    assert proof[-1] == fold_right([nodes[(1, 2)], nodes[(0, 6)]])
    assert proof[-1] == node_hash(nodes[(1, 2)], nodes[(0, 6)])
    assert consistency_proof_plan(3, 7) == [[(0, 2)], [(0, 3)], [(1, 0)], [(1, 2), (0, 6)]]


def test_memory_tree_rejects_sizes_and_indexes_outside_the_tree() -> None:
    tree = MemoryTree(LEAVES[:5])
    assert tree.append(LEAVES[5]) == 5
    with pytest.raises(TreeError, match="tree size 7 is out of range for a tree of 6 leaves"):
        tree.root(7)
    with pytest.raises(TreeError, match="leaf index 6 is out of range for a tree of 6 leaves"):
        tree.inclusion_proof(6)
    with pytest.raises(TreeError, match="cannot prove consistency from 5 to 4 leaves"):
        tree.consistency_proof(5, 4)
    with pytest.raises(TreeError, match=r"node \(level 1, index 3\) is not in the tree"):
        tree.node(1, 3)
    with pytest.raises(KeyError):
        tree[(5, 0)]
    with pytest.raises(TreeError, match="leaf hash for index 6 must be 32 bytes"):
        tree.extend([b"short"])
    assert tree.size == 6
    assert repr(tree) == "MemoryTree(size=6)"


def test_memory_tree_serves_stored_node_proofs_too() -> None:
    tree = MemoryTree(LEAVES[:11])
    assert inclusion_proof(3, 9, tree) == tree.inclusion_proof(3, 9)
    assert consistency_proof(5, 11, tree) == tree.consistency_proof(5)
    assert tree.root(0) == EMPTY_ROOT


def test_every_error_of_the_layer_is_a_proof_error() -> None:
    with pytest.raises(ProofError):
        MemoryTree([b"short"])


def test_the_verifiers_take_only_integers_and_lists_as_the_bundle_reader_does() -> None:
    """``True`` is an int to Python (and equals 1); a proof that is no list raised a TypeError
    instead of the proof's own error."""
    tree = MemoryTree()
    for i in range(3):
        tree.append(leaf_hash(b"%d" % i))
    root, old_root = tree.root(), tree.root(2)
    proof = tree.inclusion_proof(1, 3)
    verify_inclusion(leaf_hash(b"1"), 1, 3, proof, root)
    with pytest.raises(InclusionProofError, match="must be non-negative integers"):
        verify_inclusion(leaf_hash(b"1"), True, 3, proof, root)
    with pytest.raises(InclusionProofError, match="must be a list of hashes, got NoneType"):
        verify_inclusion(leaf_hash(b"1"), 1, 3, None, root)  # type: ignore[arg-type]
    consistency = tree.consistency_proof(2, 3)
    verify_consistency(2, 3, old_root, root, consistency)
    with pytest.raises(ConsistencyProofError, match="must be non-negative integers"):
        verify_consistency(2, 3.0, old_root, root, consistency)  # type: ignore[arg-type]
    with pytest.raises(ConsistencyProofError, match="must be a list of hashes, got generator"):
        verify_consistency(2, 3, old_root, root, (node for node in consistency))  # type: ignore[arg-type]
