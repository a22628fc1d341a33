"""Offline proof bundles: a good one verifies; every single tampering fails, saying where."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from trueup.proof import (
    BundleError,
    CheckpointError,
    CheckpointSigner,
    InclusionProofError,
    LeafEncodingError,
    MemoryTree,
    TreeHead,
    anchor_id,
    leaf_fields_from_json,
    make_bundle,
    private_key_from_seed,
    verify_bundle,
)

from .reference import load_vector

VECTOR = load_vector("bundle_v1.json")
VKEY = VECTOR["verifierKey"]
BUNDLE: dict[str, Any] = VECTOR["bundles"][0]
OTHER_SIGNER = CheckpointSigner(private_key_from_seed(bytes(32)), "trueup.example/log")


@pytest.mark.parametrize("bundle", VECTOR["bundles"], ids=lambda b: b["anchorId"])
def test_the_vector_bundles_verify_against_the_pinned_key(bundle: dict[str, Any]) -> None:
    head = verify_bundle(bundle, VKEY)
    assert (head.size, head.root.hex()) == (bundle["treeSize"], bundle["rootHash"])
    assert verify_bundle(json.loads(json.dumps(bundle)), VKEY, origin="trueup.example/log") == head


def test_make_bundle_reproduces_the_vector_bundle() -> None:
    checkpoint = load_vector("checkpoint_v1.json")
    assert checkpoint["verifierKey"] == VKEY
    rebuilt = make_bundle(
        leaf_index=BUNDLE["leafIndex"],
        fields=leaf_fields_from_json(BUNDLE["leaf"]),
        tree_size=BUNDLE["treeSize"],
        root_hash=bytes.fromhex(BUNDLE["rootHash"]),
        inclusion_proof=[bytes.fromhex(h) for h in BUNDLE["inclusionProof"]],
        checkpoint=BUNDLE["checkpoint"],
    )
    assert rebuilt == BUNDLE
    assert anchor_id(7) == "a_7"


def _set(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        bundle[field] = value

    return change


def _set_leaf(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        bundle["leaf"][field] = value

    return change


def _flip_hex(text: str, position: int = 0) -> str:
    return text[:position] + format(int(text[position], 16) ^ 1, "x") + text[position + 1 :]


def _flip_proof(bundle: dict[str, Any]) -> None:
    bundle["inclusionProof"][-1] = _flip_hex(bundle["inclusionProof"][-1])


def _drop_proof(bundle: dict[str, Any]) -> None:
    bundle["inclusionProof"].pop()


def _move_leaf(bundle: dict[str, Any]) -> None:
    bundle["leafIndex"] += 1
    bundle["anchorId"] = anchor_id(bundle["leafIndex"])


def _leaf_beyond_tree(bundle: dict[str, Any]) -> None:
    bundle["leafIndex"] = bundle["treeSize"]
    bundle["anchorId"] = anchor_id(bundle["leafIndex"])


def _other_leaf_with_its_hash(bundle: dict[str, Any]) -> None:
    other = VECTOR["bundles"][1]
    bundle["leaf"], bundle["leafHash"] = other["leaf"], other["leafHash"]


def _retyped_checkpoint(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"] = bundle["checkpoint"].replace("\n4\n", "\n5\n", 1)


def _foreign_checkpoint(bundle: dict[str, Any]) -> None:
    head = TreeHead(bundle["treeSize"], bytes.fromhex(bundle["rootHash"]), 1)
    bundle["checkpoint"] = OTHER_SIGNER.sign("trueup.example/log", head)


TAMPERINGS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "leaf delta",
        _set_leaf("delta", 1501),
        r"^bundle\.leaf: hashes to [0-9a-f]{64}, not to bundle\.leafHash",
    ),
    (
        "leaf customer",
        _set_leaf("customerId", "someone-else"),
        r"^bundle\.leaf: hashes to",
    ),
    (
        "leaf occurredAt",
        _set_leaf("occurredAt", "2026-03-01T00:00:00.000002Z"),
        r"^bundle\.leaf: hashes to",
    ),
    (
        "salt",
        _set_leaf("salt", _flip_hex(BUNDLE["leaf"]["salt"], 5)),
        r"^bundle\.leaf: hashes to",
    ),
    (
        "salt format",
        _set_leaf("salt", "F0" * 16),
        r"^bundle\.leaf\.salt: must be 32 lower-case hex",
    ),
    (
        "leaf version",
        _set_leaf("v", 2),
        r"^bundle\.leaf\.v: must be 1, got 2$",
    ),
    (
        "leaf member",
        _set_leaf("extra", 1),
        r"^bundle\.leaf: unexpected 'extra'$",
    ),
    (
        "leafHash",
        _set("leafHash", _flip_hex(BUNDLE["leafHash"])),
        r"^bundle\.leaf: hashes to .*, not to bundle\.leafHash",
    ),
    (
        "leaf and leafHash",
        _other_leaf_with_its_hash,
        r"^bundle\.inclusionProof: inclusion proof for leaf 1 in a tree of 4 leaves leads to root",
    ),
    (
        "proof element",
        _flip_proof,
        r"^bundle\.inclusionProof: inclusion proof for leaf 1 in a tree of 4 leaves leads to root",
    ),
    (
        "proof length",
        _drop_proof,
        r"^bundle\.inclusionProof: inclusion proof has 1 hashes; leaf 1 in a tree of 4 leaves needs 2$",
    ),
    (
        "proof format",
        _set("inclusionProof", ["zz"]),
        r"^bundle\.inclusionProof\[0\]: must be 64 lower-case hex digits",
    ),
    (
        "proof type",
        _set("inclusionProof", "00"),
        r"^bundle\.inclusionProof: must be a list of hashes, got str$",
    ),
    (
        "treeSize",
        _set("treeSize", 5),
        r"^bundle\.treeSize: 5 is not the tree size 4 of the signed checkpoint$",
    ),
    (
        "rootHash",
        _set("rootHash", _flip_hex(BUNDLE["rootHash"])),
        r"^bundle\.rootHash: [0-9a-f]{64} is not the root [0-9a-f]{64} of the signed checkpoint$",
    ),
    (
        "rootHash format",
        _set("rootHash", BUNDLE["rootHash"].upper()),
        r"^bundle\.rootHash: must be 64 lower-case hex digits",
    ),
    (
        "checkpoint text",
        _retyped_checkpoint,
        r"^bundle\.checkpoint: bad signature: ",
    ),
    (
        "checkpoint key",
        _foreign_checkpoint,
        r"^bundle\.checkpoint: unknown key: ",
    ),
    (
        "checkpoint type",
        _set("checkpoint", None),
        r"^bundle\.checkpoint: must be a string, got NoneType$",
    ),
    (
        "anchorId",
        _set("anchorId", "a_2"),
        r"^bundle\.anchorId: 'a_2' does not match bundle\.leafIndex 1 \(expected 'a_1'\)$",
    ),
    (
        "leafIndex",
        _set("leafIndex", 3),
        r"^bundle\.anchorId: 'a_1' does not match bundle\.leafIndex 3",
    ),
    (
        "leafIndex and anchorId",
        _move_leaf,
        r"^bundle\.inclusionProof: inclusion proof for leaf 2 in a tree of 4 leaves leads to root",
    ),
    (
        "leafIndex beyond tree",
        _leaf_beyond_tree,
        r"^bundle\.leafIndex: 4 is not below bundle\.treeSize 4$",
    ),
    (
        "leafIndex type",
        _set("leafIndex", "1"),
        r"^bundle\.leafIndex: must be a non-negative integer, got '1'$",
    ),
    (
        "treeSize type",
        _set("treeSize", -4),
        r"^bundle\.treeSize: must be a non-negative integer, got -4$",
    ),
    (
        "version",
        _set("version", 2),
        r"^bundle\.version: must be 1, got 2$",
    ),
]


@pytest.mark.parametrize(("change", "message"), [t[1:] for t in TAMPERINGS], ids=[t[0] for t in TAMPERINGS])
def test_every_single_tampering_fails_with_a_one_line_message_naming_it(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    bundle = copy.deepcopy(BUNDLE)
    change(bundle)
    assert bundle != BUNDLE
    with pytest.raises(BundleError, match=message) as caught:
        verify_bundle(bundle, VKEY)
    assert "\n" not in str(caught.value)


def test_the_lower_level_failure_is_chained_as_the_cause() -> None:
    bundle = copy.deepcopy(BUNDLE)
    _flip_proof(bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, VKEY)
    assert isinstance(caught.value.__cause__, InclusionProofError)
    bundle = copy.deepcopy(BUNDLE)
    _retyped_checkpoint(bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, VKEY)
    assert isinstance(caught.value.__cause__, CheckpointError)
    bundle = copy.deepcopy(BUNDLE)
    _set_leaf("v", 2)(bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, VKEY)
    assert isinstance(caught.value.__cause__, LeafEncodingError)


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ([], r"^bundle: must be a JSON object, got list$"),
        ({k: v for k, v in BUNDLE.items() if k != "checkpoint"}, r"^bundle: missing checkpoint$"),
        ({**BUNDLE, "extra": 1, "more": 2}, r"^bundle: unexpected 'extra', 'more'$"),
    ],
)
def test_a_bundle_of_the_wrong_shape_is_rejected(bundle: object, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle, VKEY)  # type: ignore[arg-type]


def test_a_bundle_from_another_origin_is_rejected_when_the_origin_is_pinned() -> None:
    with pytest.raises(BundleError, match=r"^bundle\.checkpoint: checkpoint origin"):
        verify_bundle(BUNDLE, VKEY, origin="other.example/log")


def test_a_checkpoint_of_another_log_signed_by_the_same_key_is_rejected_by_default() -> None:
    """Without an origin given, the key's name is the origin a bundle must come from."""
    fields = leaf_fields_from_json(BUNDLE["leaf"])
    others = [bytes.fromhex(b["leafHash"]) for b in VECTOR["bundles"]]
    tree = MemoryTree([others[1], bytes.fromhex(BUNDLE["leafHash"]), others[1][::-1], others[0][::-1]])
    head = TreeHead(4, tree.root(), 0)
    parts: dict[str, Any] = {
        "leaf_index": 1,
        "fields": fields,
        "tree_size": 4,
        "root_hash": tree.root(),
        "inclusion_proof": tree.inclusion_proof(1),
    }
    own = make_bundle(**parts, checkpoint=OTHER_SIGNER.sign(OTHER_SIGNER.name, head))
    assert verify_bundle(own, OTHER_SIGNER.verifier_key()) == head
    other_log = make_bundle(**parts, checkpoint=OTHER_SIGNER.sign("other.example/log", head))
    with pytest.raises(BundleError, match=r"^bundle\.checkpoint: checkpoint origin 'other\.example/log'"):
        verify_bundle(other_log, OTHER_SIGNER.verifier_key())
    assert verify_bundle(other_log, OTHER_SIGNER.verifier_key(), origin="other.example/log") == head


def test_a_bad_verifier_key_is_reported_against_the_checkpoint() -> None:
    with pytest.raises(BundleError, match=r"^bundle\.checkpoint: verifier key must be"):
        verify_bundle(BUNDLE, "not-a-key")


def test_make_bundle_refuses_inputs_that_could_never_verify() -> None:
    fields = leaf_fields_from_json(BUNDLE["leaf"])
    others = [bytes.fromhex(b["leafHash"]) for b in VECTOR["bundles"]]
    tree = MemoryTree([others[1], bytes.fromhex(BUNDLE["leafHash"]), others[1][::-1], others[0][::-1]])
    good = {
        "leaf_index": 1,
        "fields": fields,
        "tree_size": 4,
        "root_hash": tree.root(),
        "inclusion_proof": tree.inclusion_proof(1),
    }
    signer = OTHER_SIGNER
    head = TreeHead(4, tree.root(), 0)
    make_bundle(**good, checkpoint=signer.sign("o", head))  # type: ignore[arg-type]
    with pytest.raises(BundleError, match=r"^bundle\.inclusionProof: "):
        make_bundle(**{**good, "leaf_index": 2}, checkpoint=signer.sign("o", head))  # type: ignore[arg-type]
    with pytest.raises(BundleError, match=r"^bundle\.checkpoint: states tree size 5"):
        make_bundle(**good, checkpoint=signer.sign("o", TreeHead(5, tree.root(), 0)))  # type: ignore[arg-type]
    with pytest.raises(BundleError, match=r"^bundle\.checkpoint: malformed note"):
        make_bundle(**good, checkpoint="nonsense")  # type: ignore[arg-type]


def test_a_held_head_must_be_the_bundle_s_tree() -> None:
    """held: the same size and root; a fork (same size, another root) keeps the bundle's note
    as the evidence, a bundle of another size does not (it is no evidence of anything)."""
    head = verify_bundle(BUNDLE, VKEY)
    assert verify_bundle(BUNDLE, VKEY, held=head) == head
    with pytest.raises(BundleError, match=r"^bundle\.treeSize: the bundle proves its leaf") as other_size:
        verify_bundle(BUNDLE, VKEY, held=TreeHead(head.size + 1, head.root, head.timestamp_ms))
    assert other_size.value.rejected_checkpoint is None
    with pytest.raises(BundleError, match="the log has shown two histories") as forked:
        verify_bundle(BUNDLE, VKEY, held=TreeHead(head.size, bytes(32), head.timestamp_ms))
    assert forked.value.rejected_checkpoint == BUNDLE["checkpoint"]
    # The held head's time is not the bundle's business: one size, one root, one tree.
    assert verify_bundle(BUNDLE, VKEY, held=TreeHead(head.size, head.root, 0)) == head
