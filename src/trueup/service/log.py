"""The log's read side: signed checkpoints, RFC 9162 proofs, proof bundles, public verify."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from trueup.core.errors import NotFoundError, ValidationError
from trueup.core.ids import parse_anchor_id
from trueup.core.json_text import quoted
from trueup.proof import (
    CheckpointSigner,
    JSONValue,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    make_bundle,
)
from trueup.service.keys import Principal
from trueup.service.sealing import record_leaf
from trueup.storage import Storage
from trueup.storage.heads import HeadRecord
from trueup.storage.write_views import RecordView

__all__ = ["InclusionAnswer", "LogService", "parse_root"]


@dataclass(frozen=True, slots=True)
class InclusionAnswer:
    record: RecordView
    leaf_index: int
    head: HeadRecord
    proof: tuple[bytes, ...]


_HEX_64 = re.compile(r"[0-9a-fA-F]{64}")


def parse_root(text: str, field: str = "root") -> bytes:
    """A 32-byte root from ``0x``-prefixed (or bare) hex; :class:`ValidationError` otherwise."""
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if len(digits) != 64:
        raise ValidationError(
            field, f"must be 32 bytes of hex (64 digits, 0x optional), got {quoted(text[:80])}"
        )
    if _HEX_64.fullmatch(digits) is None:  # bytes.fromhex alone would skip spaces
        raise ValidationError(field, f"is not hex: {quoted(text[:80])}")
    return bytes.fromhex(digits)


class LogService:
    def __init__(self, storage: Storage, signer: CheckpointSigner) -> None:
        self._storage = storage
        self._signer = signer

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key that checks this log's checkpoints."""
        return self._signer.verifier_key()

    def latest(self) -> HeadRecord:
        head = self._storage.log.head()
        if head is None:
            raise NotFoundError("the log has no signed tree head yet")
        return head

    def head_at(self, size: int | None) -> HeadRecord:
        """The head of tree size ``size`` (the newest when ``None``)."""
        if size is None:
            return self.latest()
        head = self._storage.log.head_at(size)
        if head is None:
            raise NotFoundError(f"no signed tree head of size {size}")
        return head

    def head_by_root(self, root: bytes) -> HeadRecord | None:
        return self._storage.log.head_by_root(root)

    def inclusion(self, principal: Principal, anchor: str, tree_size: int | None) -> InclusionAnswer:
        """The inclusion proof of the caller's delta ``anchor`` in the head of ``tree_size``."""
        leaf_index = parse_anchor_id(anchor)
        if leaf_index is None:
            raise ValidationError("anchorId", f"must look like a_<leaf index>, got {quoted(anchor[:80])}")
        record = self._storage.writes.record_at_leaf(principal.tenant_id, leaf_index)
        if record is None:
            raise NotFoundError(f"anchorId {quoted(anchor)} not found")
        head = self.head_at(tree_size)
        if leaf_index >= head.size:
            raise ValidationError("treeSize", f"leaf {leaf_index} is not in the tree of size {head.size}")
        return InclusionAnswer(record, leaf_index, head, tuple(self.inclusion_path(leaf_index, head.size)))

    def inclusion_path(self, leaf_index: int, tree_size: int) -> list[bytes]:
        return self.inclusion_paths([leaf_index], tree_size)[0]

    def inclusion_paths(self, leaf_indices: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """The inclusion proofs of several leaves in one tree, their nodes read in one go."""
        wanted = [inclusion_proof_nodes(index, tree_size) for index in leaf_indices]
        nodes = self._storage.log.nodes(node for ids in wanted for node in ids)
        return [inclusion_proof(index, tree_size, nodes) for index in leaf_indices]

    def consistency(self, old_size: int, new_size: int | None) -> tuple[HeadRecord, HeadRecord, list[bytes]]:
        """The RFC 9162 consistency proof between two stored heads."""
        if new_size is not None and old_size > new_size:  # before either is looked up
            raise ValidationError("from", f"must not exceed to ({old_size} > {new_size})")
        new = self.head_at(new_size)
        old = self.head_at(old_size)
        if old.size > new.size:
            raise ValidationError("from", f"must not exceed to ({old.size} > {new.size})")
        nodes = self._storage.log.nodes(consistency_proof_nodes(old.size, new.size))
        return old, new, consistency_proof(old.size, new.size, nodes)

    def bundle(self, principal: Principal, anchor: str, tree_size: int | None = None) -> dict[str, JSONValue]:
        """An offline proof bundle for ``trueup verify`` (leaf, inclusion proof, checkpoint), in
        the head of ``tree_size`` (the newest when ``None``): one a reader holds already, whose
        root the bundle's must then be."""
        answer = self.inclusion(principal, anchor, tree_size)
        fields = record_leaf(answer.record)
        return make_bundle(
            leaf_index=answer.leaf_index,
            fields=fields,
            tree_size=answer.head.size,
            root_hash=answer.head.root,
            inclusion_proof=answer.proof,
            checkpoint=answer.head.checkpoint,
        )
