"""Every tree, root and proof equals RFC 9162's recursive definitions; tampering always fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueup.proof import (
    CompactRange,
    ConsistencyProofError,
    InclusionProofError,
    MemoryTree,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    required_nodes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

from .reference import Reference, consistency_shape, flip, inclusion_shape

MAX_SIZE = 2000
PROPERTY = settings(max_examples=60, deadline=None)


def make_leaves(size: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(seed.to_bytes(4, "big") + i.to_bytes(4, "big")) for i in range(size)]


def stored_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """What storage would hold: every node CompactRange reports while the leaves go in."""
    return {(level, index): h for level, index, h in CompactRange().extend(leaves)}


class _Guarded(dict[tuple[int, int], bytes]):
    """A node store that fails the test if a proof asks for a node outside the tree."""

    def __init__(self, nodes: dict[tuple[int, int], bytes], size: int) -> None:
        super().__init__(nodes)
        self.size = size

    def __getitem__(self, key: tuple[int, int]) -> bytes:
        level, index = key
        assert (index + 1) << level <= self.size, f"node {key} is not inside [0, {self.size})"
        return super().__getitem__(key)


sizes = st.integers(min_value=1, max_value=MAX_SIZE)


def test_every_proof_of_every_small_tree_equals_the_rfc_definition_and_verifies() -> None:
    leaves = make_leaves(40, seed=7)
    ref = Reference(leaves)
    whole = MemoryTree(leaves)
    nodes = stored_nodes(leaves)
    for size in range(1, len(leaves) + 1):
        root = ref.root(size)
        prefix = MemoryTree(leaves[:size])
        guarded = _Guarded(nodes, size)
        assert root_from_leaf_hashes(leaves[:size]) == root
        assert prefix.root() == whole.root(size) == root
        for index in range(size):
            expected = ref.inclusion_proof(index, size)
            assert prefix.inclusion_proof(index) == expected
            assert whole.inclusion_proof(index, size) == expected
            assert inclusion_proof(index, size, guarded) == expected
            for level, node_index in inclusion_proof_nodes(index, size):
                assert (node_index + 1) << level <= size
            verify_inclusion(leaves[index], index, size, expected, root)
        for old in range(size + 1):
            expected = ref.consistency_proof(old, size)
            assert prefix.consistency_proof(old) == expected
            assert whole.consistency_proof(old, size) == expected
            assert consistency_proof(old, size, guarded) == expected
            for level, node_index in consistency_proof_nodes(old, size):
                assert (node_index + 1) << level <= size
            verify_consistency(old, size, ref.root(old), root, expected)


@PROPERTY
@given(size=sizes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_roots_of_all_builders_equal_the_recursive_definition(
    size: int, seed: int, data: st.DataObject
) -> None:
    leaves = make_leaves(size, seed)
    expected = Reference(leaves).root(size)
    assert root_from_leaf_hashes(leaves) == expected

    # CompactRange one leaf at a time, and in random chunks; both report the same nodes.
    one_by_one = CompactRange.empty()
    appended = [node for h in leaves for node in one_by_one.append(h)]
    chunked = CompactRange.empty()
    extended = []
    cuts = sorted(data.draw(st.lists(st.integers(0, size), max_size=6), label="cuts"))
    start = 0
    for cut in [*cuts, size]:
        extended += chunked.extend(leaves[start:cut])
        start = cut
    assert one_by_one.root() == chunked.root() == expected
    assert one_by_one == chunked
    assert sorted(appended) == sorted(extended)

    # Rebuilt from stored nodes at a random cut point, then continued.
    nodes = {(level, index): h for level, index, h in extended}
    cut = data.draw(st.integers(0, size), label="restart")
    resumed = CompactRange.from_nodes(cut, [nodes[n] for n in required_nodes(cut)])
    assert resumed.root() == Reference(leaves).root(cut)
    resumed.extend(leaves[cut:])
    assert resumed.root() == expected
    assert resumed == chunked

    # MemoryTree, built in chunks.
    tree = MemoryTree(leaves[:cut])
    tree.extend(leaves[cut:])
    assert tree.root() == expected
    assert tree.size == size


@PROPERTY
@given(size=sizes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_proofs_from_memory_and_from_stored_nodes_equal_the_definition_and_verify(
    size: int, seed: int, data: st.DataObject
) -> None:
    leaves = make_leaves(size, seed)
    ref = Reference(leaves)
    tree = MemoryTree(leaves)
    nodes = stored_nodes(leaves)
    for _ in range(5):
        n = data.draw(st.integers(1, size), label="tree size")
        index = data.draw(st.integers(0, n - 1), label="leaf index")
        old = data.draw(st.integers(0, n), label="old size")
        guarded = _Guarded(nodes, n)

        expected = ref.inclusion_proof(index, n)
        assert tree.inclusion_proof(index, n) == expected
        assert inclusion_proof(index, n, guarded) == expected
        verify_inclusion(leaves[index], index, n, expected, ref.root(n))

        expected = ref.consistency_proof(old, n)
        assert tree.consistency_proof(old, n) == expected
        assert consistency_proof(old, n, guarded) == expected
        verify_consistency(old, n, ref.root(old), ref.root(n), expected)


@PROPERTY
@given(size=sizes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_any_flipped_bit_makes_an_inclusion_proof_fail(size: int, seed: int, data: st.DataObject) -> None:
    leaves = make_leaves(size, seed)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1), label="leaf index")
    proof = tree.inclusion_proof(index)
    root = tree.root()
    leaf = leaves[index]
    target = data.draw(st.integers(-2, len(proof) - 1), label="what to flip")
    position = data.draw(st.integers(0, 31), label="byte")
    mask = 1 << data.draw(st.integers(0, 7), label="bit")
    if target == -2:
        leaf = flip(leaf, position, mask)
    elif target == -1:
        root = flip(root, position, mask)
    else:
        proof[target] = flip(proof[target], position, mask)
    with pytest.raises(InclusionProofError):
        verify_inclusion(leaf, index, size, proof, root)


@PROPERTY
@given(size=st.integers(2, MAX_SIZE), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_any_flipped_bit_makes_a_consistency_proof_fail(size: int, seed: int, data: st.DataObject) -> None:
    leaves = make_leaves(size, seed)
    tree = MemoryTree(leaves)
    old = data.draw(st.integers(1, size - 1), label="old size")
    proof = tree.consistency_proof(old)
    old_root, new_root = tree.root(old), tree.root()
    target = data.draw(st.integers(-2, len(proof) - 1), label="what to flip")
    position = data.draw(st.integers(0, 31), label="byte")
    mask = 1 << data.draw(st.integers(0, 7), label="bit")
    if target == -2:
        old_root = flip(old_root, position, mask)
    elif target == -1:
        new_root = flip(new_root, position, mask)
    else:
        proof[target] = flip(proof[target], position, mask)
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old, size, old_root, new_root, proof)


@PROPERTY
@given(size=sizes, seed=st.integers(0, 2**32 - 1), data=st.data())
def test_a_wrong_index_or_size_fails_unless_the_rfc_verifier_cannot_tell_them_apart(
    size: int, seed: int, data: st.DataObject
) -> None:
    # The RFC 9162 verifier binds the index and size only through the shape of the path:
    # leaf 0 of 3 and leaf 0 of 4 hash the proof identically. A wrong claim must fail
    # exactly when its shape differs (the signed checkpoint is what pins the true size).
    leaves = make_leaves(size, seed)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1), label="leaf index")
    proof, root = tree.inclusion_proof(index), tree.root()
    wrong_index = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index), label="index")
    wrong_size = data.draw(st.integers(-2, 2 * size + 2).filter(lambda n: n != size), label="size")
    same_shape = inclusion_shape(index, size, len(proof))
    for i, n in ((wrong_index, size), (index, wrong_size)):
        indistinguishable = same_shape is not None and inclusion_shape(i, n, len(proof)) == same_shape
        if indistinguishable:
            verify_inclusion(leaves[index], i, n, proof, root)
        else:
            with pytest.raises(InclusionProofError):
                verify_inclusion(leaves[index], i, n, proof, root)

    if size < 2:
        return
    old = data.draw(st.integers(1, size - 1), label="old size")
    proof = tree.consistency_proof(old)
    old_root = tree.root(old)
    shape = consistency_shape(old, size, len(proof))
    wrong_old = data.draw(st.integers(-1, size + 1).filter(lambda m: m != old), label="old")
    wrong_new = data.draw(st.integers(-1, 2 * size).filter(lambda m: m != size), label="new")
    for m, n in ((wrong_old, size), (old, wrong_new)):
        if shape is not None and consistency_shape(m, n, len(proof)) == shape:
            verify_consistency(m, n, old_root, root, proof)
        else:
            with pytest.raises(ConsistencyProofError):
                verify_consistency(m, n, old_root, root, proof)


@pytest.mark.parametrize("new_size", [2.5, "5", None])
def test_from_the_empty_tree_the_sizes_are_checked_too(new_size: object) -> None:
    # The empty tree's shortcut (every tree extends it) once ran before the size checks.
    empty = root_from_leaf_hashes([])
    with pytest.raises(ConsistencyProofError, match="must be non-negative integers"):
        verify_consistency(0, new_size, empty, b"\0" * 32, [])  # type: ignore[arg-type]
