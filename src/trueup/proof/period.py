"""A period checkpoint checked from its records, without trusting the server.

Locking a customer-month publishes it under a proof root, ``SHA-256(0x03 ‖ nonce ‖ root)``,
where ``root`` is the RFC 9162 tree root whose leaf nodes are the period's leaf hashes (each
already ``SHA-256(0x00 ‖ leaf)``, not hashed again). ``GET /api/v1/verify/{proofRoot}`` shows
the period's summary and its records in pages, each record with its leaf, its leaf hash and its
inclusion proof in the signed tree head the period was locked under. :func:`verify_period`
checks every page against a pinned log key.

The proof root does not commit to the number of records on its own: a list holding an interior
node of the tree in place of the two leaf hashes under it recomputes the same root. So every
leaf hash is recomputed from its record's leaf, proven in the signed tree, and the records must
be as many as the summary says.

What the proof root does not commit to, nothing here can prove: the customer and month come
from the records' leaves (so a period without records proves nothing, and is refused), the
tree head is one that holds every record (the server shows the one the period was locked
under, but a later one holds them too), and the starting balance rests on deltas before the
period (:func:`chain_periods` checks it against the period of the month before, where that
month is locked too). And a server chooses which proof root it answers for: compare the one returned with the
one you hold (``expected_root``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from trueup.proof.canonical import hex_hash
from trueup.proof.checkpoint import verify_checkpoint
from trueup.proof.errors import CheckpointError, InclusionProofError, LeafEncodingError, PeriodError, shown
from trueup.proof.leaf import LeafFields, encode_leaf, leaf_fields_from_json
from trueup.proof.merkle.hashing import leaf_hash, root_from_leaf_hashes
from trueup.proof.merkle.verify import verify_inclusion
from trueup.proof.note import VerifierKey, parse_verifier_key

__all__ = [
    "PERIOD_ROOT_PREFIX",
    "PeriodCheck",
    "VerifiedPeriod",
    "chain_periods",
    "period_proof_root",
    "verify_period",
]

PERIOD_ROOT_PREFIX = b"\x03"
"""Distinct from RFC 9162's 0x00 (leaf) and 0x01 (node)."""

_T = TypeVar("_T")
_HEX_NONCE = re.compile(r"(?:[0-9a-f]{2})+")
_ANCHOR = re.compile(r"a_(0|[1-9][0-9]{0,19})")
_PERIOD = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])")


def period_proof_root(nonce: bytes, leaf_hashes: Sequence[bytes]) -> bytes:
    """``SHA-256(0x03 ‖ nonce ‖ MTH(leaf hashes))``: a period checkpoint's proof root."""
    return hashlib.sha256(PERIOD_ROOT_PREFIX + nonce + root_from_leaf_hashes(leaf_hashes)).digest()


@dataclass(frozen=True, slots=True)
class VerifiedPeriod:
    """A period checkpoint whose every record was proven in the log the pinned key signs.

    ``tenant``, ``customer_id`` and ``period`` are those of every record's leaf;
    ``record_count`` and ``net_change`` are the records' own. ``starting_balance`` is the
    server's statement (``ending_balance`` is it plus ``net_change``); ``tree_size`` and
    ``tree_root`` are a signed tree head that holds every record, not necessarily the one the
    period was locked under.
    """

    proof_root: bytes
    tenant: str
    customer_id: str
    period: str
    record_count: int
    net_change: int
    starting_balance: int
    ending_balance: int
    tree_size: int
    tree_root: bytes


def _member(value: Mapping[str, object], name: str, kind: type[_T], where: str) -> _T:
    got = value.get(name)
    if not isinstance(got, kind) or type(got) is not kind:  # exactly: True is no int here
        raise PeriodError(f"{where}.{name}: must be {kind.__name__}, got {shown(got)}")
    return got


def _root(value: object, where: str) -> bytes:
    """A root as the API writes it: ``0x`` and 64 lower-case hex digits."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PeriodError(f"{where}: must be 0x and 64 lower-case hex digits, got {shown(value)}")
    return _hash(value[2:], where)


def _hash(value: object, where: str) -> bytes:
    return hex_hash(value, where, PeriodError)


def _check_shown(record: Mapping[str, Any], leaf: LeafFields, at: str) -> None:
    """What ``record`` shows of its verified ``leaf`` is the leaf's: its amount, key and time,
    and the status of a sealed delta (the leaf is proven in the signed tree)."""
    if record.get("amount") != leaf.delta or type(record.get("amount")) is not int:
        raise PeriodError(f"{at}.amount: {shown(record.get('amount'))} is not the leaf's {leaf.delta}")
    if record.get("status") != "VERIFIED":
        raise PeriodError(f"{at}.status: {shown(record.get('status'))} is not VERIFIED, as a sealed leaf's")
    if record.get("referenceId") != leaf.key:
        raise PeriodError(f"{at}.referenceId: {shown(record.get('referenceId'))} is not the leaf's key")
    if record.get("time") not in _times(leaf.occurred_at):
        raise PeriodError(f"{at}.time: {shown(record.get('time'))} is not the leaf's {leaf.occurred_at}")


def _times(occurred_at: str) -> tuple[str, ...]:
    """How a page may show a leaf's ``occurredAt`` (``…T08:00:00.000000Z``): as it is, or as
    the API shows times, without a zero fraction (``…T08:00:00Z``)."""
    if occurred_at.endswith(".000000Z"):
        return occurred_at, occurred_at[: -len(".000000Z")] + "Z"
    return (occurred_at,)


def chain_periods(previous: VerifiedPeriod, period: VerifiedPeriod) -> None:
    """Check that ``period`` starts where ``previous``, its customer's month before, ends.

    A period's starting balance is the server's statement (it sums the deltas of every month
    before it); the previous month's ending balance is its own starting balance plus its
    records, each proven. A lock closes its month and the months before it, so nothing of them
    is sealed after it, and the two figures are one: where they differ, the log holds a delta
    of those months that one of the two periods leaves out. Both must have been verified
    against the same pinned key; that their trees are of one log is a separate check (a
    consistency proof between the two signed heads).

    Raises:
        PeriodError: they are of other tenants or customers, ``previous`` is not of the month
            right before, or the balances do not meet.
    """
    if (previous.tenant, previous.customer_id) != (period.tenant, period.customer_id):
        raise PeriodError(
            f"the previous period is of customer {previous.customer_id!r} of tenant {previous.tenant!r}, "
            f"this one of {period.customer_id!r} of {period.tenant!r}"
        )
    if _month_after(previous.period) != period.period:
        raise PeriodError(f"the previous period is {previous.period}, not the month before {period.period}")
    if period.starting_balance != previous.ending_balance:
        raise PeriodError(
            f"period {period.period} states a starting balance of {period.starting_balance}, but period "
            f"{previous.period} ends at {previous.ending_balance} (its starting balance "
            f"{previous.starting_balance} and its records' net change {previous.net_change}): a delta "
            f"of {previous.period} or before is in one figure and not the other"
        )


def _month_after(period: str) -> str | None:
    """``YYYY-MM`` of the month after a verified period's (``None`` after 9999-12): the proof
    layer imports nothing of the rest of Trueup, so not ``trueup.core.periods.next_period``."""
    year, month = int(period[:4]), int(period[5:7])
    if month < 12:
        return f"{year:04d}-{month + 1:02d}"
    return None if year == 9999 else f"{year + 1:04d}-01"


def verify_period(
    pages: Sequence[Mapping[str, object]],
    verifier_key: str | VerifierKey,
    *,
    origin: str | None = None,
    expected_root: bytes | None = None,
) -> VerifiedPeriod:
    """Check the pages of ``GET /api/v1/verify/{proofRoot}`` for a period checkpoint, in order
    from offset 0, against a pinned log key; return what they prove.

    1. The pages agree on everything but their records, and each begins where the one before
       it ended.
    2. ``checkpoint`` is signed by ``verifier_key`` for the log ``origin`` (by default the key's
       name), and states ``treeSize`` and ``treeRoot``.
    3. Each record's leaf hashes to its ``leafHash`` and to the page's ``recompute.leafHashes``
       entry; its ``inclusionProof`` proves that leaf at its ``anchorId`` in that tree; the
       records are in leaf order, of one tenant, of ``customerId`` and of ``period``, and each
       shows its leaf's amount, key and time.
    4. The records are as many as ``summary.recordCount``, their leaf hashes with the nonce
       recompute ``proofRoot``, their amounts sum to ``summary.netChange``, their times span
       ``summary.firstRecordAt`` to ``lastRecordAt``, and ``startingBalance`` plus the net
       change is ``endingBalance``. The starting balance itself rests
       on the deltas before the period, which these pages do not hold: derive the customer's
       balance up to the period's start, or verify the previous period, to check it.

    With ``expected_root`` (the proof root you hold), pages for any other root are refused.

    Raises:
        PeriodError: naming the first check that failed (``page 2.records[3].leaf: ...``).
    """
    if not isinstance(pages, list | tuple) or not pages:
        raise PeriodError("pages: must be a non-empty list, fetched from offset 0")
    check = PeriodCheck(pages[0], verifier_key, origin=origin, expected_root=expected_root)
    for page in pages:
        check.add(page)
    return check.result()


_SHARED = (
    "proofRoot",
    "customerId",
    "period",
    "summary",
    "recordsTotal",
    "treeSize",
    "treeRoot",
    "checkpoint",
)
"""What every page of one period states alike."""


class PeriodCheck:
    """:func:`verify_period` a page at a time, for a reader that fetches them one by one: a
    page that fails is refused as it comes (a server cannot make its reader fetch every page
    before the first check), and only the records' leaf hashes are kept.

    Built from page 1 (checks 2 and what page 1 states); :meth:`add` each page in order from
    page 1 (checks 1 and 3); :meth:`result` when none is left (check 4).
    """

    def __init__(
        self,
        first: object,
        verifier_key: str | VerifierKey,
        *,
        origin: str | None = None,
        expected_root: bytes | None = None,
    ) -> None:
        if not isinstance(first, Mapping):
            raise PeriodError(f"page 1: must be an object, got {type(first).__name__}")
        self._shared = {name: first.get(name) for name in _SHARED}  # not page 1's records
        self.proof_root = _root(first.get("proofRoot"), "page 1.proofRoot")
        if expected_root is not None and not hmac.compare_digest(self.proof_root, expected_root):
            raise PeriodError(f"page 1.proofRoot: 0x{self.proof_root.hex()} is not the root asked for")
        if first.get("type") == "treeHead":  # GET /api/v1/verify/{root} answers for those too
            raise PeriodError(
                f"page 1.type: 0x{self.proof_root.hex()} is the root of a tree head, not a period "
                "checkpoint's proof root (a tree head is checked with its signed checkpoint)"
            )
        self.customer_id = _member(first, "customerId", str, "page 1")
        self.period = _member(first, "period", str, "page 1")
        if not _PERIOD.fullmatch(self.period):
            raise PeriodError(f"page 1.period: must be YYYY-MM, got {shown(self.period)}")
        tree_size = _member(first, "treeSize", int, "page 1")
        tree_root = _root(first.get("treeRoot"), "page 1.treeRoot")
        note = _member(first, "checkpoint", str, "page 1")
        summary: dict[str, Any] = _member(first, "summary", dict, "page 1")
        self.count = _member(summary, "recordCount", int, "page 1.summary")
        self._net = _member(summary, "netChange", int, "page 1.summary")
        self._starting = _member(summary, "startingBalance", int, "page 1.summary")
        self._ending = _member(summary, "endingBalance", int, "page 1.summary")
        if _member(first, "recordsTotal", int, "page 1") != self.count:
            raise PeriodError(f"page 1.recordsTotal: is not the summary's recordCount {self.count}")
        if self.count == 0:
            raise PeriodError(
                "summary.recordCount: 0; a period without records proves nothing: its proof root "
                "commits to no customer, month or balance"
            )
        try:
            key = verifier_key if isinstance(verifier_key, VerifierKey) else parse_verifier_key(verifier_key)
            self.head = verify_checkpoint(note, key, origin=key.name if origin is None else origin)
        except CheckpointError as exc:
            raise PeriodError(f"page 1.checkpoint: {exc}") from exc
        if self.head.size != tree_size or not hmac.compare_digest(self.head.root, tree_root):
            raise PeriodError(
                f"page 1.treeSize, treeRoot: {tree_size} and {tree_root.hex()} are not the size "
                f"{self.head.size} and root {self.head.root.hex()} of the signed checkpoint"
            )
        if self.count > self.head.size:  # the records are distinct leaves of that tree
            raise PeriodError(
                f"page 1.summary.recordCount: {self.count} is more than the signed tree's "
                f"{self.head.size} leaves"
            )
        self._hashes: list[bytes] = []
        self._nonce: bytes | None = None
        self._tenant: str | None = None
        self._last_index = -1
        self._total = 0
        self._first: str | None = None  # the earliest and latest occurredAt of the records' leaves
        self._last: str | None = None
        self._span = (summary.get("firstRecordAt"), summary.get("lastRecordAt"))
        self.pages = 0

    @property
    def records(self) -> int:
        """How many records the pages added so far held."""
        return len(self._hashes)

    def add(self, page: object) -> None:
        """Check the next page; raises :class:`PeriodError` naming what is wrong with it."""
        self.pages += 1
        where = f"page {self.pages}"
        if not isinstance(page, Mapping):
            raise PeriodError(f"{where}: must be an object, got {type(page).__name__}")
        for name in _SHARED:
            if page.get(name) != self._shared[name]:
                raise PeriodError(f"{where}.{name}: differs from page 1's")
        if _member(page, "offset", int, where) != len(self._hashes):
            raise PeriodError(f"{where}.offset: must be {len(self._hashes)}, where the page before ended")
        recompute: dict[str, Any] = _member(page, "recompute", dict, where)
        page_nonce = _member(recompute, "nonce", str, f"{where}.recompute")
        if not _HEX_NONCE.fullmatch(page_nonce) or (
            self._nonce is not None and bytes.fromhex(page_nonce) != self._nonce
        ):
            raise PeriodError(f"{where}.recompute.nonce: must be page 1's, in lower-case hex")
        self._nonce = bytes.fromhex(page_nonce)
        if _member(recompute, "leafHashesTotal", int, f"{where}.recompute") != self.count:
            raise PeriodError(
                f"{where}.recompute.leafHashesTotal: is not the summary's recordCount {self.count}"
            )
        records: list[Any] = _member(page, "records", list, where)
        listed: list[Any] = _member(recompute, "leafHashes", list, f"{where}.recompute")
        if len(listed) != len(records):
            raise PeriodError(f"{where}.recompute.leafHashes: {len(listed)} for {len(records)} records")
        if len(self._hashes) + len(records) > self.count:
            raise PeriodError(f"{where}.records: more records than the summary's recordCount {self.count}")
        for i, record in enumerate(records):
            self._record(record, f"{where}.records[{i}]", listed[i], f"{where}.recompute.leafHashes[{i}]")

    def _record(self, record: object, at: str, listed: object, listed_at: str) -> None:
        if not isinstance(record, Mapping):
            raise PeriodError(f"{at}: must be an object, got {type(record).__name__}")
        try:
            leaf = leaf_fields_from_json(record.get("leaf"))
            hashed = leaf_hash(encode_leaf(leaf))
        except LeafEncodingError as exc:  # its message starts with the leaf's field, as a rule
            message = str(exc)
            raise PeriodError(
                f"{at}.{message}" if message.startswith("leaf") else f"{at}.leaf: {message}"
            ) from exc
        for claimed, named in ((record.get("leafHash"), f"{at}.leafHash"), (listed, listed_at)):
            if not hmac.compare_digest(_hash(claimed, named), hashed):
                raise PeriodError(f"{named}: is not the hash {hashed.hex()} of {at}.leaf")
        anchor = _ANCHOR.fullmatch(_member(record, "anchorId", str, at))
        if anchor is None:
            raise PeriodError(f"{at}.anchorId: must be a_<leaf index>, got {shown(record.get('anchorId'))}")
        index = int(anchor.group(1))
        if index <= self._last_index:
            raise PeriodError(f"{at}.anchorId: leaf {index} does not come after leaf {self._last_index}")
        proof: list[Any] = _member(record, "inclusionProof", list, at)
        nodes = [_hash(node, f"{at}.inclusionProof[{n}]") for n, node in enumerate(proof)]
        try:
            verify_inclusion(hashed, index, self.head.size, nodes, self.head.root)
        except InclusionProofError as exc:
            raise PeriodError(f"{at}.inclusionProof: {exc}") from exc
        if self._tenant is not None and leaf.tenant != self._tenant:
            raise PeriodError(
                f"{at}.leaf.tenant: {shown(leaf.tenant)} is not the others' {shown(self._tenant)}"
            )
        if leaf.customer_id != self.customer_id or leaf.occurred_at[:7] != self.period:
            raise PeriodError(f"{at}.leaf: is not a delta of {shown(self.customer_id)} in {self.period}")
        _check_shown(record, leaf, at)
        self._first = min(self._first or leaf.occurred_at, leaf.occurred_at)
        self._last = max(self._last or leaf.occurred_at, leaf.occurred_at)
        self._tenant, self._last_index = leaf.tenant, index
        self._hashes.append(hashed)
        self._total += leaf.delta

    def result(self) -> VerifiedPeriod:
        """What the pages added prove, once they hold every record (check 4)."""
        if len(self._hashes) != self.count:
            raise PeriodError(
                f"records: {len(self._hashes)} in all, not the summary's recordCount {self.count}"
            )
        recomputed = period_proof_root(self._nonce or b"", self._hashes)
        if not hmac.compare_digest(recomputed, self.proof_root):
            raise PeriodError(
                f"proofRoot: the records recompute {recomputed.hex()}, not {self.proof_root.hex()}"
            )
        if self._total != self._net:
            raise PeriodError(f"summary.netChange: {self._net} is not the records' sum {self._total}")
        if self._starting + self._net != self._ending:
            raise PeriodError(
                f"summary.endingBalance: {self._ending} is not startingBalance {self._starting} + "
                f"netChange {self._net}"
            )
        if self._tenant is None or self._first is None or self._last is None:  # count > 0: for mypy
            raise PeriodError("records: none")
        for name, shown_time, leaf_time in (
            ("firstRecordAt", self._span[0], self._first),
            ("lastRecordAt", self._span[1], self._last),
        ):
            if shown_time not in _times(leaf_time):
                raise PeriodError(f"summary.{name}: {shown(shown_time)} is not the records' {leaf_time}")
        return VerifiedPeriod(
            self.proof_root,
            self._tenant,
            self.customer_id,
            self.period,
            self.count,
            self._net,
            self._starting,
            self._ending,
            self.head.size,
            self.head.root,
        )
