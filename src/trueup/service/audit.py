"""``trueup audit``: rebuild the log and every balance from the stored deltas and compare.

The audit trusts nothing derived. First the database checks its own file (SQLite's
``PRAGMA integrity_check``: a file damaged where the walk below never reads, an index say, would
pass it). Then it re-encodes each sealed delta into its leaf, rebuilds the tree, and checks, in
order, that

1. leaf indices run 0, 1, 2, … with no gap (a deleted row shows up here), and every row
   holds values of the kinds its columns take;
2. each re-encoded leaf hashes to the stored leaf node (an edited amount, key, time, salt …);
3. every stored node equals the rebuilt one, and no other node is stored;
4. every signed tree head states the rebuilt root of its size (so each head is a prefix of
   the next: consistency between successive heads), and its signature verifies; each delta
   names as its seal's head the first head that holds it, and the newest head holds them all;
5. the running figures kept with each delta (and its state, verified, which no unsealed delta
   has), and the account and month totals, equal sums recomputed from the deltas;
6. every period checkpoint states the figures and proof root of its customer-month's deltas
   sealed before its tree head (which is stored), no delta of that month or of a month before
   it (which its lock closes too) was sealed after it, and none of the locks counted was deleted
   (:mod:`trueup.service.audit_locks`).

A delta's ``reason`` is in no leaf (DESIGN.md §3), so an edit of it cannot be detected.

It stops at the first mismatch and names it. A head signed at an earlier time than a smaller
head before it is not a mismatch (the key signed both, and the tree is right) but a warning: the
server keeps a head's time from going back when the clock does, and a database sealed by a
Trueup from before that can hold such heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from trueup.core.ids import record_id
from trueup.proof import (
    CompactRange,
    ProofError,
    encode_leaf,
    leaf_hash,
    parse_verifier_key,
    verify_checkpoint,
)
from trueup.service.audit_locks import SHOWN, LockAudit, MismatchError
from trueup.service.sealing import leaf_fields_of
from trueup.storage import Storage
from trueup.storage.checked_rows import MalformedRowError
from trueup.storage.errors import StorageCorruptError
from trueup.storage.heads import HeadRecord
from trueup.storage.log import SealedDelta

__all__ = ["AuditReport", "audit_log"]

_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    leaves: int
    heads: int
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    """What checked out but a reader of the log should know (heads whose signed time goes back)."""


@dataclass(slots=True)
class _Running:
    balance: int = 0
    count: int = 0
    account_no: int | None = None
    last_leaf: int = -1
    first_verified: str = ""
    last_verified: str = ""


def audit_log(
    storage: Storage, verifier_key: str, progress: Callable[[int], None] | None = None
) -> AuditReport:
    """Audit the whole log; ``verifier_key`` is the C2SP key that must have signed every head."""
    auditor = _Auditor(storage, verifier_key)
    try:
        _check_file(storage)
        # One snapshot for every read of the audit: on a log a server keeps sealing, leaves,
        # heads, nodes, totals and checkpoints are all of one moment (in steps, the nodes and
        # totals read last would hold seals the walk never saw).
        with storage.engine.read():
            auditor.run(progress)
    except (MismatchError, MalformedRowError) as exc:  # a row of the wrong kind is a mismatch too
        return AuditReport(False, auditor.tree.size, auditor.heads_checked, str(exc), auditor.warnings())
    except StorageCorruptError as exc:
        problem = f"{exc} (restore the database from a backup: docs/operations.md)"
        return AuditReport(False, auditor.tree.size, auditor.heads_checked, problem, auditor.warnings())
    return AuditReport(True, auditor.tree.size, auditor.heads_checked, warnings=auditor.warnings())


def _check_file(storage: Storage) -> None:
    """Raise :class:`StorageCorruptError` naming what the database's check of its own file finds."""
    damage = storage.engine.damage()
    if damage:
        # One line: SQLite's findings hold line breaks of their own ("*** in database main ***\n…").
        findings = "; ".join(" ".join(finding.split()) for finding in damage)
        raise StorageCorruptError(f"the database file is damaged: {findings}")


class _Auditor:
    def __init__(self, storage: Storage, verifier_key: str) -> None:
        self.storage = storage
        self.verifier_key = verifier_key
        # Trueup names its key after its log: a head signed with it for another log is not ours.
        # (A malformed key is reported by the first head's signature check.)
        try:
            self.origin: str | None = parse_verifier_key(verifier_key).name
        except ProofError:
            self.origin = None
        self.tree = CompactRange.empty()
        self.heads_checked = 0
        self.latest_signed: HeadRecord | None = None
        """The head with the latest signed time so far (heads are checked in size order)."""
        self.backdated: list[tuple[HeadRecord, HeadRecord]] = []
        """The first heads signed earlier than a smaller one, each with that one (a few kept)."""
        self.backdated_count = 0
        self.accounts: dict[tuple[str, str], _Running] = {}
        self.months: dict[tuple[str, str, str], list[int]] = {}
        self.locks = LockAudit(storage)

    def run(self, progress: Callable[[int], None] | None) -> None:
        head_iter = self._heads()
        next_head: HeadRecord | None = next(head_iter, None)
        if next_head is None:
            raise MismatchError("the log has no signed tree head")
        if next_head.size != 0:
            # Stored signed when the database is first opened (before any delta), and what a
            # consistency proof from size 0 and the empty root's /verify are answered from.
            raise MismatchError(
                f"tree head 0: missing (the first stored head has size {next_head.size}); every log "
                "stores its empty head when it is first opened, so it was deleted"
            )
        next_head = self._check_heads_at(0, next_head, head_iter)
        last = -1
        after: int | None = None  # from the first row: one given a negative index is read too
        while True:
            batch = self.storage.log.sealed(after, _CHUNK)
            if not batch:
                break
            for delta in batch:
                if delta.leaf_index < 0:
                    raise MismatchError(
                        f"leaf a_{delta.leaf_index}: a leaf index is never negative (the row was added "
                        "or its index edited)"
                    )
                if delta.leaf_index != last + 1:
                    raise MismatchError(
                        f"leaf {last + 1} is missing: stored leaves jump from a_{last} to "
                        f"a_{delta.leaf_index} (a delta row was deleted or its leaf index changed)"
                    )
                last = delta.leaf_index
            after = last
            hashes = self._check_leaves(batch)
            for delta in batch:
                self._check_balances(delta)
            # Heads fall between leaves: walk the tree forward head by head.
            next_head = self._advance(batch, hashes, next_head, head_iter)
            if progress is not None:
                progress(self.tree.size)
        if next_head is not None:
            raise MismatchError(
                f"tree head {next_head.size} is signed but only {self.tree.size} sealed deltas "
                "are stored (rows were deleted)"
            )
        unsealed = self.storage.log.verified_without_leaf()
        if unsealed is not None:
            raise MismatchError(
                f"delta {record_id(*unsealed)}: stored as verified, but no seal gave it a leaf (its "
                "state was edited)"
            )
        self._check_node_count()
        self._check_totals()
        self.locks.run()

    def _heads(self) -> Iterator[HeadRecord]:
        after: int | None = None  # from the first row: one given a negative size is read too
        while True:
            page = self.storage.log.heads(after, _CHUNK)
            if not page:
                return
            if page[0].size < 0:
                raise MismatchError(
                    f"tree head {page[0].size}: a tree size is never negative (the row was added or "
                    "its size edited)"
                )
            yield from page
            after = page[-1].size

    def _check_leaves(self, batch: list[SealedDelta]) -> list[bytes]:
        """The rebuilt leaf hashes of ``batch``, each checked against the stored leaf node."""
        stored = self.storage.log.nodes((0, d.leaf_index) for d in batch)
        hashes = []
        for delta in batch:
            try:
                fields = leaf_fields_of(
                    delta.tenant_id,
                    delta.customer_id,
                    delta.key,
                    delta.amount,
                    delta.occurred_at,
                    delta.metadata,
                    delta.salt,
                )
                rebuilt = leaf_hash(encode_leaf(fields))
            except ProofError as exc:  # a field no leaf can hold (a 2-byte salt, a 30 February)
                raise MismatchError(
                    f"leaf a_{delta.leaf_index}: the stored delta makes no leaf: {exc}"
                ) from exc
            node = stored.get((0, delta.leaf_index))
            if node is None:
                raise MismatchError(
                    f"leaf a_{delta.leaf_index}: its leaf node is missing (it was deleted, or the "
                    "delta was added)"
                )
            if node != rebuilt:
                raise MismatchError(
                    f"leaf a_{delta.leaf_index}: the stored delta (customer {delta.customer_id!r}, "
                    f"key {delta.key!r}, amount {delta.amount}) does not hash to the sealed leaf; "
                    "the delta or the leaf node was altered"
                )
            hashes.append(rebuilt)
        return hashes

    def _advance(
        self,
        batch: list[SealedDelta],
        hashes: list[bytes],
        next_head: HeadRecord | None,
        head_iter: Iterator[HeadRecord],
    ) -> HeadRecord | None:
        start = self.tree.size
        position = 0
        while position < len(hashes):
            if next_head is None:
                raise MismatchError(
                    f"leaves a_{start + position} to a_{start + len(hashes) - 1} are stored as sealed, "
                    "but no signed tree head holds them (a head was deleted, or they were added)"
                )
            stop = min(len(hashes), max(position, next_head.size - start))
            # One seal signs one head: its deltas name it as theirs, the first head to hold them.
            for delta in batch[position:stop]:
                if delta.sealed_size != next_head.size:
                    raise MismatchError(
                        f"leaf a_{delta.leaf_index}: sealed under tree head {delta.sealed_size}, but the "
                        f"first signed head that holds it is {next_head.size} (a head was deleted, "
                        "the delta's head edited, or a head's size)"
                    )
            created = self.tree.extend(hashes[position:stop])
            self._check_nodes(created)
            position = stop
            next_head = self._check_heads_at(self.tree.size, next_head, head_iter)
        return next_head

    def _check_node_count(self) -> None:
        """Every node the rebuilt tree has is stored and equal (checked as it grew); any more
        would be a node beyond it, which the next seal would collide with."""
        expected = sum(self.tree.size >> level for level in range(self.tree.size.bit_length()))
        stored = self.storage.log.node_count()
        if stored != expected:
            raise MismatchError(
                f"{stored} tree nodes are stored, but a tree of {self.tree.size} leaves has {expected}: "
                "nodes were added beyond the signed tree"
            )

    def _check_nodes(self, created: list[tuple[int, int, bytes]]) -> None:
        inner = [(level, index) for level, index, _ in created if level > 0]
        stored = self.storage.log.nodes(inner)
        for level, index, digest in created:
            if level == 0:
                continue
            found = stored.get((level, index))
            if found is None:
                raise MismatchError(f"tree node (level {level}, index {index}) is missing (it was deleted)")
            if found != digest:
                raise MismatchError(f"tree node (level {level}, index {index}) differs from the rebuilt one")

    def _check_heads_at(
        self, size: int, head: HeadRecord | None, head_iter: Iterator[HeadRecord]
    ) -> HeadRecord | None:
        while head is not None and head.size == size:
            if head.root != self.tree.root():
                raise MismatchError(
                    f"tree head {head.size}: its root 0x{head.root.hex()} is not the root of the "
                    f"first {head.size} stored leaves (0x{self.tree.root().hex()})"
                )
            try:
                verified = verify_checkpoint(head.checkpoint, self.verifier_key, origin=self.origin)
            except ProofError as exc:
                # The first head signed by another key is more likely a key that is not this
                # log's than a log whose every head was forged: say which key to give.
                hint = (
                    " (the first head: audit with the log's own key, its key file or --key; every "
                    "process of one log needs its key file and origin)"
                    if self.heads_checked == 0 and "unknown key" in str(exc)
                    else ""
                )
                raise MismatchError(f"tree head {head.size}: checkpoint signature: {exc}{hint}") from exc
            if (verified.size, verified.root) != (head.size, head.root):
                raise MismatchError(f"tree head {head.size}: the signed checkpoint states another tree")
            # The API serves the stored timestamp (treeHead.timestamp, verificationProof.timestamp,
            # recordedAt): it must be the one the checkpoint signs.
            if verified.timestamp_ms != head.timestamp_ms:
                raise MismatchError(
                    f"tree head {head.size}: its stored timestamp {head.timestamp_ms} is not the signed "
                    f"checkpoint's {verified.timestamp_ms}"
                )
            self._check_time(head)
            self.heads_checked += 1
            head = next(head_iter, None)
        return head

    def _check_time(self, head: HeadRecord) -> None:
        latest = self.latest_signed
        if latest is not None and head.timestamp_ms < latest.timestamp_ms:
            self.backdated_count += 1
            if len(self.backdated) < SHOWN:
                self.backdated.append((head, latest))
        else:
            self.latest_signed = head

    def warnings(self) -> tuple[str, ...]:
        return self._backdated_warning() + self.locks.warnings()

    def _backdated_warning(self) -> tuple[str, ...]:
        if not self.backdated_count:
            return ()
        shown = "; ".join(
            f"tree head {head.size} at {head.timestamp_ms} ms, after head {latest.size} at "
            f"{latest.timestamp_ms} ms"
            for head, latest in self.backdated
        )
        more = self.backdated_count - len(self.backdated)
        return (
            f"{self.backdated_count} signed tree heads carry an earlier time than a smaller head "
            f"before them (the clock went back while they were signed): {shown}"
            + (f"; and {more} more" if more else ""),
        )

    def _check_balances(self, delta: SealedDelta) -> None:
        account = self.accounts.setdefault(
            (delta.tenant_id, delta.customer_id), _Running(account_no=delta.account_no)
        )
        # Balance queries find a customer's deltas by this number: a delta without it, or
        # with another customer's, would be left out of its customer's pages and searches.
        if delta.account_no is None:
            raise MismatchError(f"leaf a_{delta.leaf_index}: sealed without an account number")
        if delta.account_no != account.account_no:
            raise MismatchError(
                f"leaf a_{delta.leaf_index}: account number {delta.account_no} differs from "
                f"the {account.account_no} of the customer's other deltas"
            )
        if delta.status != "verified":
            raise MismatchError(f"leaf a_{delta.leaf_index}: sealed, but its state is {delta.status!r}")
        account.balance += delta.amount
        account.count += 1
        account.last_leaf = delta.leaf_index
        account.first_verified = account.first_verified or delta.verified_at
        account.last_verified = delta.verified_at
        month = self.months.setdefault((delta.tenant_id, delta.customer_id, delta.period), [0, 0, 0])
        month[0 if delta.amount > 0 else 1] += delta.amount
        month[2] += 1
        if delta.occurred_at[:7] != delta.period:
            raise MismatchError(
                f"leaf a_{delta.leaf_index}: period {delta.period} does not match "
                f"occurredAt {delta.occurred_at}"
            )
        if (delta.cust_seq, delta.running_balance) != (account.count, account.balance):
            raise MismatchError(
                f"leaf a_{delta.leaf_index}: stored running balance {delta.running_balance} "
                f"(delta #{delta.cust_seq}) but the customer's deltas sum to {account.balance} "
                f"(delta #{account.count})"
            )
        if (delta.month_seq, delta.month_credits, delta.month_debits) != (month[2], month[0], month[1]):
            raise MismatchError(
                f"leaf a_{delta.leaf_index}: stored month figures differ from the sums "
                f"recomputed for {delta.period}"
            )

    def _check_totals(self) -> None:
        stored_accounts = self.storage.log.account_totals()
        for key, running in self.accounts.items():
            stored = stored_accounts.pop(key, None)
            if stored is None:
                raise MismatchError(
                    f"account {key[1]!r}: no stored balance, but its deltas sum to "
                    f"{running.balance} over {running.count} (the account's row was deleted)"
                )
            if (stored.balance, stored.delta_count) != (running.balance, running.count):
                raise MismatchError(
                    f"account {key[1]!r}: stored balance {stored.balance} over {stored.delta_count} "
                    f"deltas, but its deltas sum to {running.balance} over {running.count}"
                )
            if stored.account_no != running.account_no:
                raise MismatchError(
                    f"account {key[1]!r}: number {stored.account_no} differs from the "
                    f"{running.account_no} its deltas carry"
                )
            # derive proves its balance with the inclusion proof of this leaf
            if stored.last_leaf_index != running.last_leaf:
                raise MismatchError(
                    f"account {key[1]!r}: its newest delta is stored as a_{stored.last_leaf_index}, "
                    f"but it is a_{running.last_leaf}"
                )
            # the customer's firstActivity and lastActivity: when its first and newest deltas were sealed
            for figure, delta, stored_at, sealed_at in (
                ("first", "first", stored.first_activity, running.first_verified),
                ("last", "newest", stored.last_activity, running.last_verified),
            ):
                if stored_at != sealed_at:
                    raise MismatchError(
                        f"account {key[1]!r}: its {figure} activity is stored as {stored_at}, but its "
                        f"{delta} delta was verified at {sealed_at}"
                    )
        if stored_accounts:
            key = next(iter(stored_accounts))
            raise MismatchError(f"account {key[1]!r} has a stored balance but no sealed deltas")
        stored_months = self.storage.log.month_totals()
        for month_key, (credits, debits, count) in self.months.items():
            figures = stored_months.pop(month_key, None)
            if figures is None:
                raise MismatchError(
                    f"account {month_key[1]!r}, {month_key[2]}: no stored month totals, but its "
                    f"deltas give credits {credits}, debits {debits} over {count} (the month's row "
                    "was deleted)"
                )
            if figures != (credits, debits, count):
                raise MismatchError(
                    f"account {month_key[1]!r}, {month_key[2]}: stored month totals credits "
                    f"{figures[0]}, debits {figures[1]} over {figures[2]}, but its deltas give "
                    f"credits {credits}, debits {debits} over {count}"
                )
        if stored_months:
            month_key = next(iter(stored_months))
            raise MismatchError(
                f"account {month_key[1]!r}, {month_key[2]}: month totals without sealed deltas"
            )
