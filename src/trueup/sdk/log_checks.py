"""The log's proofs, checked in the client rather than trusted: a delta's bundle
(``Client.verify_delta``), that the log was only appended to since a checkpoint you hold
(``Client.follow``), and that two signed tree heads are of one log (``Client.check_same_log``),
each against the verifier key you pinned (docs/verification.md); with them, the reads of the log
they build on (``log_key``, ``log_checkpoint``, ``proof_bundle``). A locked period's pages are
checked in :mod:`trueup.sdk.period_checks`, on top of these.

:class:`LogChecks` is the part of :class:`trueup.sdk.Client` that does this, kept apart from the
client's other calls and its transport: it asks through the client's ``_send`` and ``_get``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from trueup.proof import (
    BundleError,
    CheckpointError,
    ConsistencyProofError,
    ProofError,
    TreeHead,
    VerifierKey,
    leaf_fields_from_json,
    load_bundle,
    parse_verifier_key,
    verify_bundle,
    verify_checkpoint,
    verify_consistency,
)
from trueup.proof.canonical import hex_hash
from trueup.proof.errors import shown
from trueup.sdk.envelope import not_a_trueup_reply, path_segment, reply_data, reply_json, strict_document
from trueup.sdk.errors import TrueupError

if TYPE_CHECKING:
    import httpx

__all__ = ["Followed", "LogChecks", "VerifiedDelta", "pinned", "refuse_empty_held"]


@dataclass(frozen=True, slots=True)
class VerifiedDelta:
    """A delta proven to be leaf ``leaf_index`` of the tree the pinned key signed."""

    anchor_id: str
    leaf_index: int
    tree_size: int
    root: bytes
    tenant: str
    customer_id: str
    key: str
    delta: int
    occurred_at: str


@dataclass(frozen=True, slots=True)
class Followed:
    """The log's newest signed checkpoint, proven to extend the one held before; keep
    ``checkpoint`` (the signed note) to follow from next time."""

    head: TreeHead
    checkpoint: str


class LogChecks:
    """The checks of the log's proofs, for :class:`trueup.sdk.Client`."""

    if TYPE_CHECKING:  # the client's transport, which these ask through

        def _send(
            self, method: str, path: str, *, params: Mapping[str, str] | None = None, retry: bool
        ) -> httpx.Response: ...

        def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> dict[str, Any]: ...

    def log_key(self) -> str:
        """The verifier key the server says signs its log. Pin it from a source you trust (the
        operator, ``trueup log-key``): the checks below are only as good as the key given."""
        key = self._get("/api/v1/log/key").get("verifierKey")
        if not isinstance(key, str):
            raise TrueupError("BAD_REPLY", f"the reply holds no verifierKey text, got {shown(key)}", 200)
        return key

    def log_checkpoint(self) -> str:
        """The newest signed checkpoint, as the C2SP signed note (not yet verified: its
        signature is checked by :meth:`follow`); ``BAD_REPLY`` for a reply that is no note."""
        reply = self._send("GET", "/api/v1/log/checkpoint", retry=True)
        if not reply.is_success:
            reply_data(reply)  # raises the server's error (404 while the log has no signed head yet)
        if "\n\n\u2014 " not in reply.text:  # a note's signature lines follow a blank line
            raise TrueupError(  # a proxy's page, say
                "BAD_REPLY",
                f"not a signed checkpoint: {reply.text[:200]!r}",
                reply.status_code,
                http_request_id=reply.headers.get("x-request-id"),
            )
        return reply.text

    def proof_bundle(self, anchor_id: str, *, tree_size: int | None = None) -> dict[str, Any]:
        """The offline proof bundle of one of your deltas (what ``trueup proof`` saves), in the
        newest signed tree head or in the one of ``tree_size``."""
        return self._get(f"/api/v1/log/proof/bundle/{path_segment(anchor_id)}", _tree_size(tree_size))

    def verify_delta(
        self,
        anchor_id: str,
        pinned_key: str | VerifierKey,
        *,
        origin: str | None = None,
        held: str | None = None,
    ) -> VerifiedDelta:
        """Fetch the delta's proof bundle and verify it here against ``pinned_key``: the leaf
        is in the tree of the checkpoint that key signed (for the log named ``origin``,
        by default the key's name). With ``held``, a checkpoint note you verified before
        (:meth:`follow`'s), the bundle is asked for in that tree, and must be of it: same size,
        same root. Raises :class:`~trueup.proof.ProofError` when it is not (for another root
        at the held size, its ``rejected_checkpoint`` is the server's note: evidence to keep), and
        :class:`TrueupError` ``BAD_REPLY`` for a reply that is not a JSON object (not the server's)."""
        key = pinned(pinned_key)
        name = origin or key.name
        held_head = None if held is None else verify_checkpoint(held, key, origin=name)
        if held_head is not None and held_head.size == 0:
            raise ProofError(
                f"the held checkpoint is of the empty tree, which holds no delta ({shown(anchor_id)})"
            )
        reply = self._send(
            "GET",
            f"/api/v1/log/proof/bundle/{path_segment(anchor_id)}",
            retry=True,
            params=_tree_size(None if held_head is None else held_head.size),
        )
        if not reply.is_success:
            try:
                reply_data(reply)  # raises the server's error
            except TrueupError as refused:
                if held_head is not None and _no_head_of(refused, held_head.size):
                    raise ConsistencyProofError(
                        f"the server has no signed tree head of the held size {held_head.size}: a log "
                        "keeps every head it signed, so this is not the log that signed the held "
                        "checkpoint only appended to (restored from an earlier copy, or a fork)"
                    ) from refused
                raise
        # Read as `trueup verify` reads a file: a member given twice (which json.loads would
        # resolve to the last) is refused, so the delta returned is the one the proof checked.
        try:
            bundle = load_bundle(reply.text)
        except BundleError:
            if not isinstance(reply_json(reply), dict):  # a proxy's 200 page, say: nothing was checked
                raise not_a_trueup_reply(reply) from None
            raise
        if held_head is not None:
            size = bundle.get("treeSize")
            if type(size) is int and size != held_head.size:  # a malformed one is verify_bundle's to name
                raise ProofError(
                    f"the server answered with the bundle of the tree of size {size} when asked for the "
                    f"held size {held_head.size}"
                )
        head = verify_bundle(bundle, key, origin=name, held=held_head)
        if bundle["anchorId"] != anchor_id:
            raise ProofError(f"the server proved {bundle['anchorId']!r}, not {anchor_id!r}")
        leaf = leaf_fields_from_json(bundle["leaf"])
        return VerifiedDelta(
            anchor_id=anchor_id,
            leaf_index=cast(int, bundle["leafIndex"]),  # verify_bundle checked it is one
            tree_size=head.size,
            root=head.root,
            tenant=leaf.tenant,
            customer_id=leaf.customer_id,
            key=leaf.key,
            delta=leaf.delta,
            occurred_at=leaf.occurred_at,
        )

    def check_same_log(
        self,
        signed: TreeHead,
        held: TreeHead,
        *,
        names: tuple[str, str] = ("the signed tree", "the held checkpoint"),
    ) -> None:
        """Check that ``signed``, a tree head the pinned key signed (a period's, a bundle's),
        and the ``held`` one, verified before, are of one log: at one size one root, else the
        smaller tree the start of the larger, by the server's RFC 9162 consistency proof between
        them (both are signed heads, which the log keeps). ``names`` are what the messages call
        the two. Raises :class:`~trueup.proof.ConsistencyProofError` when they are not, or when
        the server refuses the proof (a 400 or 404 of its own: a log that signed both has it),
        and :class:`TrueupError` when it could not be asked."""
        one, other = (f"{names[0]} of size {signed.size}", f"{names[1]} of size {held.size}")
        older, newer = sorted((signed, held), key=lambda head: head.size)
        if older.size == newer.size:
            if signed.root != held.root:
                raise ConsistencyProofError(
                    f"{one} has root {signed.root.hex()}, {names[1]} of that size {held.root.hex()}: the "
                    "pinned key signed two histories of the log"
                )
            return
        try:
            data = self._consistency_reply({"from": str(older.size), "to": str(newer.size)})
        except TrueupError as refused:
            if refused.status in (400, 404) and refused.body is not None:
                raise ConsistencyProofError(
                    f"the server gives no consistency proof between {one} and {other}: "
                    f"{shown(refused.message, 200)}"
                ) from refused
            raise
        if not isinstance(data.get("proof"), list):
            raise ProofError("the consistency reply has no list of hex nodes")
        try:
            verify_consistency(older.size, newer.size, older.root, newer.root, _nodes(data["proof"]))
        except ConsistencyProofError as exc:
            raise ConsistencyProofError(f"{one} and {other} are not shown to be of one log: {exc}") from exc

    def follow(
        self, trusted_checkpoint: str, pinned_key: str | VerifierKey, *, origin: str | None = None
    ) -> Followed:
        """The newest signed checkpoint, proven (RFC 9162 consistency) to extend
        ``trusted_checkpoint``, a note you verified before: the log was only appended to.
        Raises :class:`~trueup.proof.ProofError` when either note or the proof fails, when the
        newest checkpoint carries an earlier time than the one held, and when the server gives
        no proof from the size held while its newest signed checkpoint is smaller, or as large
        with another root (a log cut back or rewritten). Where the rejected checkpoint is signed
        by the pinned key, the error's ``rejected_checkpoint`` holds it: evidence to keep."""
        key = pinned(pinned_key)
        name = origin or key.name
        old = verify_checkpoint(trusted_checkpoint, key, origin=name)
        try:
            data = self._consistency_reply({"from": str(old.size)})
        except TrueupError as refused:
            if refused.status in (400, 404):  # no proof from that size: a log cut back gives none
                self._check_not_cut_back(old, key, name, refused)
            raise
        note, nodes = data.get("checkpoint"), data.get("proof")
        if (
            not isinstance(note, str)
            or not isinstance(nodes, list)
            or not all(isinstance(n, str) for n in nodes)
        ):
            raise ProofError("the consistency reply has no checkpoint text or no list of hex nodes")
        new = verify_checkpoint(note, key, origin=name)
        try:
            verify_consistency(old.size, new.size, old.root, new.root, _nodes(nodes))
            if new.timestamp_ms < old.timestamp_ms:
                # The log signs a newer head no earlier than the one before it (the sequencer
                # holds its time while its clock is behind): one that goes back is not its word.
                raise CheckpointError(
                    f"the newest signed checkpoint ({new.size} leaves) carries an earlier time, "
                    f"{new.timestamp_ms} ms, than the {old.timestamp_ms} ms of the one held "
                    f"({old.size} leaves): a log's heads are never signed back in time"
                )
        except ProofError as rejected:
            rejected.rejected_checkpoint = note  # signed by the pinned key: the evidence
            raise
        return Followed(head=new, checkpoint=note)

    def _consistency_reply(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The ``data`` of the server's consistency reply, read as a bundle is: a member given
        twice (a second checkpoint or proof, which json.loads would resolve to the last) is a
        :class:`~trueup.proof.ProofError`, so what is checked is all the reply says; the
        server's refusal is a :class:`TrueupError`, as from any call."""
        reply = self._send("GET", "/api/v1/log/proof/consistency", retry=True, params=params)
        document = strict_document(reply, "the consistency reply", ProofError)
        data = document.get("data")
        if document.get("success") is not True or not isinstance(data, dict):
            return reply_data(reply)  # the envelope's own refusal of a reply without data
        return data

    def _check_not_cut_back(
        self, held: TreeHead, key: VerifierKey, origin: str, refused: TrueupError
    ) -> None:
        """Where the server gives no consistency proof from the size held, its newest signed
        checkpoint may show why: smaller than the one held, or as large with another root, the
        log was not only appended to (:class:`~trueup.proof.ConsistencyProofError`). Larger is
        no better where the server says it has no head of the size held: the log keeps every
        head it signed, so one that signed the held note has it, and this one, grown past it, is
        not that log only appended to (restored from an earlier copy and grown again, say)."""
        note = self.log_checkpoint()
        newest = verify_checkpoint(note, key, origin=origin)
        try:
            if newest.size < held.size:
                raise ConsistencyProofError(
                    f"the log's newest signed checkpoint has {newest.size} leaves, fewer than the "
                    f"{held.size} of the one held: the log was not only appended to"
                )
            if newest.size == held.size:  # a proof between equal sizes is empty: the roots must agree
                verify_consistency(held.size, newest.size, held.root, newest.root, [])
            if newest.size > held.size and _no_head_of(refused, held.size):
                raise ConsistencyProofError(
                    f"the server has no signed tree head of the {held.size} leaves of the checkpoint "
                    f"held ({refused.message}), while its newest signed checkpoint has {newest.size}: "
                    "the log that signed the held one keeps every head it signed, so this is not that "
                    "log only appended to (restored from an earlier copy and grown again, or a fork)"
                )
        except ProofError as rejected:
            rejected.rejected_checkpoint = note
            raise


def pinned(key: str | VerifierKey) -> VerifierKey:
    """A pinned verifier key as given: its text (``name+id+base64``) or already parsed."""
    return key if isinstance(key, VerifierKey) else parse_verifier_key(key)


def _nodes(nodes: list[Any]) -> list[bytes]:
    """A consistency reply's ``proof``: hex hashes, each 32 bytes (:class:`ProofError` else)."""
    return [hex_hash(node, f"the consistency proof's node {i}", ProofError) for i, node in enumerate(nodes)]


def _tree_size(size: int | None) -> dict[str, str] | None:
    """The query that asks for a tree head's size, none for the newest."""
    return None if size is None else {"treeSize": str(size)}


def _no_head_of(refused: TrueupError, size: int) -> bool:
    """Whether ``refused`` is the server saying it has no signed tree head of ``size`` (its
    404 for a consistency proof from a size it never signed), not a 404 of another kind (a
    proxy that routes the path nowhere says "no route")."""
    return (
        refused.status == 404
        and refused.code == "NOT_FOUND"
        and refused.message == f"no signed tree head of size {size}"
    )


def refuse_empty_held(held: TreeHead) -> None:
    """Refuse a held checkpoint of the empty tree (:class:`ValueError`) where it is to tie
    something to the log: every log extends it, so it ties nothing."""
    if held.size == 0:
        raise ValueError(
            "the held checkpoint is of the empty tree, which every log extends: it ties nothing to "
            "the log (follow the log with trueup follow or Client.follow, then hold a later checkpoint)"
        )
