"""Offline proof bundles: everything needed to check one sealed delta without the server.

A bundle is a JSON object::

    {"version": 1, "anchorId": "a_<leafIndex>", "leafIndex": <int>,
     "leaf": {<leaf fields, salt in hex>}, "leafHash": "<hex>",
     "treeSize": <int>, "rootHash": "<hex>", "inclusionProof": ["<hex>", ...],
     "checkpoint": "<C2SP signed note>"}

Hashes are 64 lower-case hex digits. :func:`verify_bundle` re-derives the leaf hash from
the leaf fields, checks the inclusion proof against the root, and checks that a checkpoint
signed by a pinned key states that very tree size and root. Like all of
:mod:`trueup.proof`, this module needs only the standard library and ``cryptography``, so
``trueup verify`` runs with nothing else installed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Final

from trueup.proof.canonical import JSONValue, hex_hash, unique_members
from trueup.proof.checkpoint import TreeHead, parse_checkpoint, verify_checkpoint
from trueup.proof.errors import BundleError, CheckpointError, InclusionProofError, LeafEncodingError, shown
from trueup.proof.leaf import LeafFields, encode_leaf, leaf_fields_from_json, leaf_fields_to_json
from trueup.proof.merkle.hashing import leaf_hash
from trueup.proof.merkle.verify import verify_inclusion
from trueup.proof.note import VerifierKey, parse_verifier_key

__all__ = ["BUNDLE_VERSION", "anchor_id", "load_bundle", "make_bundle", "verify_bundle"]

BUNDLE_VERSION: Final = 1
"""The ``version`` of bundles this module writes and accepts."""

_KEYS: Final = frozenset(
    {
        "version",
        "anchorId",
        "leafIndex",
        "leaf",
        "leafHash",
        "treeSize",
        "rootHash",
        "inclusionProof",
        "checkpoint",
    }
)


def anchor_id(leaf_index: int) -> str:
    """Return the anchor id of a leaf: ``"a_"`` followed by its decimal leaf index."""
    return f"a_{leaf_index}"


def make_bundle(
    *,
    leaf_index: int,
    fields: LeafFields,
    tree_size: int,
    root_hash: bytes,
    inclusion_proof: Sequence[bytes],
    checkpoint: str,
) -> dict[str, JSONValue]:
    """Build the bundle for leaf ``leaf_index`` (see the module docstring for its shape).

    Checks what can be checked without the public key, so a server never hands out a
    bundle that cannot verify: the proof leads from the leaf to ``root_hash``, and the
    checkpoint (parsed, not verified) states ``tree_size`` and ``root_hash``.

    Raises:
        BundleError: naming the inconsistent input.
    """
    lh = leaf_hash(encode_leaf(fields))
    try:
        verify_inclusion(lh, leaf_index, tree_size, inclusion_proof, root_hash)
    except InclusionProofError as exc:
        raise BundleError(f"bundle.inclusionProof: {exc}") from exc
    try:
        _, head = parse_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise BundleError(f"bundle.checkpoint: {exc}") from exc
    if head.size != tree_size or head.root != root_hash:
        raise BundleError(
            f"bundle.checkpoint: states tree size {head.size} and root {head.root.hex()}, "
            f"not {tree_size} and {root_hash.hex()}"
        )
    return {
        "version": BUNDLE_VERSION,
        "anchorId": anchor_id(leaf_index),
        "leafIndex": leaf_index,
        "leaf": leaf_fields_to_json(fields),
        "leafHash": lh.hex(),
        "treeSize": tree_size,
        "rootHash": root_hash.hex(),
        "inclusionProof": [element.hex() for element in inclusion_proof],
        "checkpoint": checkpoint,
    }


def load_bundle(text: str) -> Mapping[str, object]:
    """Parse a bundle file's text: one JSON object, or the API's reply that holds it as ``data``.

    Stricter than ``json.loads``, which keeps the last of two members of the same name: a file
    with two ``leaf`` members (or two ``delta`` members in its leaf) would show a reader one
    delta while another is checked, so a duplicate member anywhere is refused. The API's
    envelope is unwrapped only when it holds no bundle member of its own, for the same reason.

    Raises:
        BundleError: for text that is not such a JSON object.
    """
    try:
        document = json.loads(
            text, object_pairs_hook=unique_members("bundle", BundleError), parse_constant=_not_json
        )
    except BundleError:
        raise
    except ValueError as exc:  # json.JSONDecodeError, and int()'s limit on very long numbers
        raise BundleError(f"bundle: not JSON ({exc})") from exc
    except RecursionError as exc:
        raise BundleError("bundle: nested too deeply to be a bundle") from exc
    if not isinstance(document, dict):
        raise BundleError(f"bundle: must be a JSON object, got {type(document).__name__}")
    data = document.get("data")
    if isinstance(data, dict) and not _KEYS & document.keys():
        return data
    return document


def _not_json(text: str) -> object:
    raise BundleError(f"bundle: {text} is not JSON")


def _natural(bundle: Mapping[str, object], name: str) -> int:
    value = bundle[name]
    if type(value) is not int or value < 0:
        raise BundleError(f"bundle.{name}: must be a non-negative integer, got {shown(value)}")
    return value


def _hash(value: object, where: str) -> bytes:
    return hex_hash(value, where, BundleError)


def _check_shape(bundle: object) -> Mapping[str, object]:
    if not isinstance(bundle, Mapping):
        raise BundleError(f"bundle: must be a JSON object, got {type(bundle).__name__}")
    names = set(bundle)
    if names != _KEYS:
        missing = sorted(_KEYS - names)
        extra = sorted(shown(name) for name in names - _KEYS)
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(extra)}"] if extra else []
        raise BundleError(f"bundle: {'; '.join(parts)}")
    version = bundle["version"]
    if type(version) is not int or version != BUNDLE_VERSION:
        raise BundleError(f"bundle.version: must be {BUNDLE_VERSION}, got {shown(version)}")
    return bundle


def verify_bundle(
    bundle: Mapping[str, object],
    verifier_key: str | VerifierKey,
    *,
    origin: str | None = None,
    held: TreeHead | None = None,
) -> TreeHead:
    """Verify a proof bundle against a pinned checkpoint key; return the signed tree head.

    Checks, in this order, each failure raising with a one-line message that starts with
    the field at fault:

    1. shape: the nine members, ``version`` 1, integer ``leafIndex``/``treeSize``, hex
       hashes, a string ``checkpoint``;
    2. ``anchorId`` is ``"a_" + leafIndex``;
    3. ``checkpoint`` is signed by ``verifier_key`` and has origin ``origin``, by default the
       key's name (a Trueup log's origin is its key's name): without it, a checkpoint of another
       log signed by the same key would pass;
    4. ``treeSize`` and ``rootHash`` are the ones the checkpoint signs;
    5. ``leaf`` is a valid leaf whose RFC 9162 leaf hash is ``leafHash``;
    6. ``leafIndex`` is below ``treeSize`` and ``inclusionProof`` leads from ``leafHash``
       to ``rootHash`` (RFC 9162 §2.1.3.2);
    7. with ``held`` (the head of a checkpoint the caller holds, verified before), the leaf is
       in the held tree and the bundle's tree is that one: the same size and root. Another root
       at that size means the pinned
       key signed two histories of the log; the error's ``rejected_checkpoint`` is then the
       bundle's checkpoint, which with the held one is the evidence.

    Raises:
        BundleError: for any failed check; a lower-level error is chained as ``__cause__``.
    """
    checked = _check_shape(bundle)
    leaf_index = _natural(checked, "leafIndex")
    tree_size = _natural(checked, "treeSize")
    root_hash = _hash(checked["rootHash"], "bundle.rootHash")
    claimed_leaf_hash = _hash(checked["leafHash"], "bundle.leafHash")
    proof_value = checked["inclusionProof"]
    if not isinstance(proof_value, list):
        raise BundleError(
            f"bundle.inclusionProof: must be a list of hashes, got {type(proof_value).__name__}"
        )
    proof = [_hash(item, f"bundle.inclusionProof[{i}]") for i, item in enumerate(proof_value)]
    note = checked["checkpoint"]
    if not isinstance(note, str):
        raise BundleError(f"bundle.checkpoint: must be a string, got {type(note).__name__}")

    anchor = checked["anchorId"]
    if anchor != anchor_id(leaf_index):
        raise BundleError(
            f"bundle.anchorId: {shown(anchor)} does not match bundle.leafIndex {leaf_index} "
            f"(expected {shown(anchor_id(leaf_index))})"
        )

    try:
        key = verifier_key if isinstance(verifier_key, VerifierKey) else parse_verifier_key(verifier_key)
        head = verify_checkpoint(note, key, origin=key.name if origin is None else origin)
    except CheckpointError as exc:
        raise BundleError(f"bundle.checkpoint: {exc}") from exc
    if head.size != tree_size:
        raise BundleError(
            f"bundle.treeSize: {tree_size} is not the tree size {head.size} of the signed checkpoint"
        )
    if not hmac.compare_digest(head.root, root_hash):
        raise BundleError(
            f"bundle.rootHash: {root_hash.hex()} is not the root {head.root.hex()} of the signed checkpoint"
        )

    try:
        fields = leaf_fields_from_json(checked["leaf"])
        computed_leaf_hash = leaf_hash(encode_leaf(fields))
    except LeafEncodingError as exc:
        # Leaf messages start with the leaf field ("leaf.salt: ..."); keep that path.
        message = str(exc)
        where = f"bundle.{message}" if message.startswith("leaf") else f"bundle.leaf: {message}"
        raise BundleError(where) from exc
    if not hmac.compare_digest(computed_leaf_hash, claimed_leaf_hash):
        raise BundleError(
            f"bundle.leaf: hashes to {computed_leaf_hash.hex()}, not to bundle.leafHash "
            f"{claimed_leaf_hash.hex()}"
        )

    if leaf_index >= tree_size:
        raise BundleError(f"bundle.leafIndex: {leaf_index} is not below bundle.treeSize {tree_size}")
    try:
        verify_inclusion(computed_leaf_hash, leaf_index, tree_size, proof, root_hash)
    except InclusionProofError as exc:
        raise BundleError(f"bundle.inclusionProof: {exc}") from exc
    if held is not None:
        _check_held_tree(head, held, leaf_index, note)
    return head


def _check_held_tree(head: TreeHead, held: TreeHead, leaf_index: int, note: str) -> None:
    if leaf_index >= held.size:
        raise BundleError(
            f"bundle.leafIndex: leaf {leaf_index} is not in the held checkpoint's tree of size "
            f"{held.size}: it was sealed after that checkpoint, which cannot prove it (a later one can: "
            "trueup follow moves a held checkpoint on)"
        )
    if head.size != held.size:
        raise BundleError(
            f"bundle.treeSize: the bundle proves its leaf in the tree of size {head.size}, not in the "
            f"held checkpoint's tree of size {held.size} (ask for the bundle of that size: "
            f"trueup proof --tree-size {held.size}, or Client.proof_bundle with tree_size={held.size})"
        )
    if not hmac.compare_digest(head.root, held.root):
        fork = BundleError(
            f"bundle.checkpoint: signed by the pinned key for size {head.size} with root "
            f"{head.root.hex()}, where the held checkpoint of that size states {held.root.hex()}: "
            "the log has shown two histories; keep both checkpoints as evidence"
        )
        fork.rejected_checkpoint = note
        raise fork
