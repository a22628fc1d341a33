"""Balances: derive, compare, period checkpoints, customers (DESIGN.md §2.3 to §2.5).

Every derive and compare is computed inside one storage snapshot, the starting checkpoint's
lookup included, so a balance, its page of deltas, its months and the signed tree head returned
with it always describe the same state. (A locked period never changes, so its receipt needs
no snapshot to be looked up.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trueup.core.compare import CompareResult, DeltaRef, MonthNet, compare_balances
from trueup.core.deltas import check_account_id
from trueup.core.errors import (
    CheckpointNotFoundError,
    CustomerNotFoundError,
    ForbiddenError,
    UnavailableError,
    ValidationError,
)
from trueup.core.ids import parse_anchor_id, parse_record_id, random_token
from trueup.core.json_text import quoted
from trueup.core.scopes import (
    BalanceQuery,
    parse_compare_body,
    parse_customer_query,
    parse_derive_query,
    parse_month_range,
    parse_one_month,
)
from trueup.core.strict_json import describe
from trueup.core.timestamps import format_canonical
from trueup.core.unknown_names import refuse_unknown
from trueup.proof import LeafFields, inclusion_proof, inclusion_proof_nodes
from trueup.service.keys import Principal
from trueup.service.log import parse_root
from trueup.service.sealing import leaf_fields_of
from trueup.storage import Storage
from trueup.storage.balance_records import AccountRecord, DeltaRecord, MonthRecord, Scope, ScopeSummary
from trueup.storage.balances import BalanceSnapshot
from trueup.storage.checkpoints import CheckpointRecord
from trueup.storage.heads import HeadRecord

__all__ = ["BalanceService", "CustomerView", "Derived", "NewestProof", "PeriodRecord", "PeriodView"]

Clock = Callable[[], datetime]

LOCK_FIELDS = ("customerId", "period", "timePreset", "startDate", "endDate", "force")
"""The fields of a period lock's body; any other is refused, not ignored."""

_MAX_STORED = 2**63 - 1  # amounts are 64-bit integers in storage

_PAIR_CHECKS = 500
"""Work bound of compare's pair search per party: deltas fetched plus pairs tried."""


@dataclass(frozen=True, slots=True)
class NewestProof:
    """The inclusion proof of the newest delta in scope, in the returned tree head."""

    leaf_index: int
    leaf_hash: bytes
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Derived:
    customer_id: str
    query: BalanceQuery
    scope: Scope
    summary: ScopeSummary
    deltas: tuple[DeltaRecord, ...]
    head: HeadRecord
    newest: NewestProof | None
    checkpoint: dict[str, Any] | None

    @property
    def balance(self) -> int:
        return self.query.starting_balance + self.summary.total


@dataclass(frozen=True, slots=True)
class PeriodRecord:
    delta: DeltaRecord
    leaf_hash: bytes
    leaf: LeafFields


@dataclass(frozen=True, slots=True)
class PeriodView:
    checkpoint: CheckpointRecord
    records: tuple[PeriodRecord, ...]
    head: HeadRecord
    first_at: str | None
    last_at: str | None


class _Finder:
    """compare's DeltaFinder over one snapshot."""

    def __init__(self, snapshot: BalanceSnapshot, tenant_id: str, customer_id: str, scope: Scope) -> None:
        self._snapshot = snapshot
        self._args = (tenant_id, customer_id, scope)

    def by_amount(self, amount: int, limit: int) -> Sequence[DeltaRef]:
        if not -_MAX_STORED <= amount <= _MAX_STORED:
            return []  # no stored delta can have it (and the database could not even compare)
        return [_ref(*row) for row in self._snapshot.by_amount(*self._args, amount, limit)]

    def in_month(self, period: str, limit: int) -> Sequence[DeltaRef]:
        return [_ref(*row) for row in self._snapshot.in_month(*self._args, period, limit)]


def _ref(leaf_index: int, amount: int, period: str, occurred_at: str, reason: str) -> DeltaRef:
    return DeltaRef(leaf_index, f"a_{leaf_index}", amount, period, occurred_at, reason)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _signed_head(head: HeadRecord | None) -> HeadRecord:
    """``head``, or a 503 while the log has none: its sequencer stores the first (empty) one
    when it starts, so there is none only before that (``serve --no-sequencer`` on a new log)."""
    if head is None:
        raise UnavailableError(
            "the log has no signed tree head yet: its sequencer has not started; retry shortly",
            retry_after_seconds=1,
        )
    return head


@dataclass(frozen=True, slots=True)
class CustomerView:
    """One customer as ``GET /customers/{customerId}`` shows it."""

    account: AccountRecord
    query: BalanceQuery
    """Its ``period`` (or none) and the page of deltas asked for."""
    months: tuple[MonthRecord, ...]
    deltas_in_scope: int
    deltas: tuple[DeltaRecord, ...]


class BalanceService:
    def __init__(self, storage: Storage, clock: Clock = _utcnow) -> None:
        self._storage = storage
        self._clock = clock

    # -- derive and compare -----------------------------------------------------------------

    def derive(self, principal: Principal, customer_id: str, params: Mapping[str, str]) -> Derived:
        check_account_id(customer_id, "customerId")
        query = parse_derive_query(params, self._clock())
        with self._storage.balances.snapshot() as snapshot:
            if not snapshot.known_customer(principal.tenant_id, customer_id):
                raise CustomerNotFoundError(f"customer {quoted(customer_id)} has no deltas")
            scope, checkpoint = self._scope(snapshot, principal, query, customer_id)
            head = _signed_head(snapshot.head())
            summary = snapshot.summary(principal.tenant_id, customer_id, scope)
            page = snapshot.page(
                principal.tenant_id, customer_id, scope, query.limit, query.offset, query.descending
            )
            newest = None
            if summary.newest_leaf is not None and summary.newest_leaf < head.size:
                newest = _newest_proof(snapshot, summary.newest_leaf, head.size)
        return Derived(customer_id, query, scope, summary, tuple(page), head, newest, checkpoint)

    def compare(self, principal: Principal, document: Any) -> tuple[CompareResult, int, HeadRecord]:
        """The verdict, the starting balance used and the head it was derived under."""
        request = parse_compare_body(document, self._clock())
        tenant_id, customer_id = principal.tenant_id, request.customer_id
        with self._storage.balances.snapshot() as snapshot:
            if not snapshot.known_customer(tenant_id, customer_id):
                raise CustomerNotFoundError(f"customer {quoted(customer_id)} has no deltas")
            scope, _ = self._scope(snapshot, principal, request.query, customer_id)
            head = _signed_head(snapshot.head())
            summary = snapshot.summary(tenant_id, customer_id, scope)
            result = compare_balances(
                customer_id=customer_id,
                neutral_balance=request.query.starting_balance + summary.total,
                your_balance=request.your_balance,
                their_balance=request.their_balance,
                months=[_month_net(month) for month in summary.months],
                finder=_Finder(snapshot, tenant_id, customer_id, scope),
                your_windows=request.your_windows,
                their_windows=request.their_windows,
                max_pair_checks=_PAIR_CHECKS,
                time_scoped=request.query.start is not None or request.query.end is not None,
            )
        return result, request.query.starting_balance, head

    def _scope(
        self, snapshot: BalanceSnapshot, principal: Principal, query: BalanceQuery, customer_id: str
    ) -> tuple[Scope, dict[str, Any] | None]:
        """The scope a query asks for, and a description of its checkpoint (if any).

        A period checkpoint (``chk_…`` or its proof root) must be this customer's: another
        customer's lock says nothing about this one's balance. Tree heads and anchors are
        positions in the shared log and apply to any customer.
        """
        if query.checkpoint is None:
            return Scope(start=query.start, end=query.end), None
        value = query.checkpoint
        if value.startswith("chk_"):
            return self._period_lock_scope(snapshot, principal, query, customer_id)
        if query.checkpoint_type == "anchorId":
            leaf = parse_anchor_id(value)
            if leaf is None:
                record = parse_record_id(value)
                located = None if record is None else snapshot.record(principal.tenant_id, *record)
                leaf = None if located is None else located.leaf_index
                if record is None:
                    raise ValidationError(
                        "startingCheckpoint",
                        f"must be an anchorId a_<n> or a recordId, got {describe(value)}",
                    )
            elif snapshot.record_at_leaf(principal.tenant_id, leaf) is None:
                leaf = None
            if leaf is None:
                raise CheckpointNotFoundError(
                    f"startingCheckpoint {quoted(value)} is not a sealed delta of yours"
                )
            return Scope(min_leaf=leaf + 1), {"value": value, "type": "anchorId", "leafIndex": leaf}
        if parse_anchor_id(value) is not None or parse_record_id(value) is not None:
            raise ValidationError(
                "startingCheckpoint",
                f"{describe(value)} is a delta's id, which needs startingCheckpointType=anchorId "
                "(or recordId); itemsRoot, the default, and proofRoot take a root of 64 hex digits, "
                "0x optional, or a chk_ id",
            )
        root = parse_root(value, "startingCheckpoint")
        head = snapshot.head_by_root(root)
        if head is not None:
            return Scope(min_leaf=head.size), {
                "value": "0x" + root.hex(),
                "type": "itemsRoot",
                "treeSize": head.size,
            }
        period_lock = snapshot.checkpoint_by_root(root, principal.tenant_id)
        if period_lock is not None:
            if period_lock.customer_id == customer_id:
                return _checkpoint_scope(period_lock)
            raise CheckpointNotFoundError(
                f"startingCheckpoint {quoted(value[:80])} is not a checkpoint of customer "
                f"{quoted(customer_id)}"
            )
        raise CheckpointNotFoundError(
            f"startingCheckpoint {quoted(value)} is not a tree head or checkpoint of this log"
        )

    @staticmethod
    def _period_lock_scope(
        snapshot: BalanceSnapshot, principal: Principal, query: BalanceQuery, customer_id: str
    ) -> tuple[Scope, dict[str, Any]]:
        """The scope after a period checkpoint named by its ``chk_…`` id."""
        value = query.checkpoint or ""
        if query.checkpoint_type == "anchorId":  # read as asked, as a delta's id is
            raise ValidationError(
                "startingCheckpoint",
                f"{describe(value)} is a period checkpoint's id, which needs "
                "startingCheckpointType=itemsRoot (the default) or proofRoot; anchorId and recordId "
                "take a delta's id",
            )
        found = snapshot.checkpoint(principal.tenant_id, value)
        if found is None or found.customer_id != customer_id:
            raise CheckpointNotFoundError(
                f"startingCheckpoint {quoted(value[:80])} is not a checkpoint of customer "
                f"{quoted(customer_id)}"
            )
        return _checkpoint_scope(found)

    # -- period checkpoints -----------------------------------------------------------------

    def require_lock_access(self, principal: Principal) -> None:
        """403 for a read-only key, which the route asks before it reads the body."""
        if principal.read_only:
            raise ForbiddenError("this API key is read-only; locking a period writes")

    def lock_period(self, principal: Principal, document: Any) -> tuple[CheckpointRecord, bool]:
        """Lock ``{customerId, period}`` (idempotent); ``True`` when newly locked. The month may
        also be given as PacSpace's SDK sends it (:func:`~trueup.core.scopes.parse_one_month`)."""
        self.require_lock_access(principal)
        if not isinstance(document, dict):
            raise ValidationError("body", f"must be a JSON object, got {describe(document)}")
        refuse_unknown(document, LOCK_FIELDS, "field")
        if "customerId" not in document:
            raise ValidationError("customerId", "is required")
        customer_id = check_account_id(document["customerId"], "customerId")
        now = self._clock()
        period = parse_one_month(document, now)
        force = document.get("force", False)
        if not isinstance(force, bool):
            raise ValidationError("force", f"must be true or false, got {describe(force)}")
        existing = self._storage.checkpoints.find(principal.tenant_id, customer_id, period)
        if existing is not None:
            return existing, False
        current = format_canonical(now)[:7]
        if current < period:  # a lock closes the months before it too: all of them, for good
            raise ValidationError(
                "period",
                f"{period} has not begun; a lock can be forced only for the current month, {current}",
            )
        if current == period and not force:
            raise ValidationError("period", f'{period} is not over yet; pass "force": true to lock it early')
        with self._storage.balances.snapshot() as snapshot:
            if not snapshot.known_customer(principal.tenant_id, customer_id):
                raise CustomerNotFoundError(f"customer {quoted(customer_id)} has no deltas")
            _signed_head(snapshot.head())  # a lock binds to a signed head
        return self._storage.checkpoints.lock(
            "chk_" + random_token(secrets.token_bytes(15)),
            principal.tenant_id,
            customer_id,
            period,
            secrets.token_bytes(32),
            format_canonical(now),
        )

    def checkpoints(
        self,
        principal: Principal,
        customer_id: str | None,
        months: Mapping[str, str],
        limit: int,
        offset: int,
    ) -> tuple[list[CheckpointRecord], int]:
        """The tenant's period locks, of one customer or all, in the months ``months`` names
        (``period``, or ``timePreset``/``startDate``/``endDate``:
        :func:`~trueup.core.scopes.parse_month_range`; all months when it names none)."""
        if customer_id is not None:
            check_account_id(customer_id, "customerId")
        span = parse_month_range(months, self._clock())
        return self._storage.checkpoints.list(principal.tenant_id, customer_id, span, limit, offset)

    def receipt(self, principal: Principal, customer_id: str, month: Mapping[str, str]) -> CheckpointRecord:
        """The lock of one customer's month, named by ``period`` or as the SDK names a month
        (:func:`~trueup.core.scopes.parse_one_month`)."""
        check_account_id(customer_id, "customerId")
        period = parse_one_month(month, self._clock())
        found = self._storage.checkpoints.find(principal.tenant_id, customer_id, period)
        if found is None:
            with self._storage.balances.snapshot() as snapshot:
                known = snapshot.known_customer(principal.tenant_id, customer_id)
            if not known:  # no lock could be taken for it: say so, as the lock would
                raise CustomerNotFoundError(f"customer {quoted(customer_id)} has no deltas")
            raise CheckpointNotFoundError(
                f"period {period} of customer {quoted(customer_id)} is not locked; lock it with "
                "POST /api/v1/balance/checkpoint first"
            )
        return found

    def period_view(self, record: CheckpointRecord, limit: int, offset: int) -> PeriodView:
        """A locked period seen through its proof root: a page of its records with their
        leaves and leaf hashes, and the head it was locked under. The proof root is
        recomputed from the leaf hashes of all pages, in order."""
        with self._storage.balances.snapshot() as snapshot:
            page = snapshot.period_page(record.tenant_id, record.customer_id, record.period, limit, offset)
            first, last = snapshot.period_span(record.tenant_id, record.customer_id, record.period)
            head = _signed_head(snapshot.head_at(record.tree_size))
        records = tuple(
            PeriodRecord(
                delta=delta,
                leaf_hash=digest,
                leaf=leaf_fields_of(
                    record.tenant_id,
                    record.customer_id,
                    delta.key,
                    delta.amount,
                    delta.occurred_at,
                    delta.metadata,
                    delta.salt,
                ),
            )
            for delta, digest in page
        )
        return PeriodView(record, records, head, first, last)

    def checkpoint_by_root(self, root: bytes) -> CheckpointRecord | None:
        return self._storage.checkpoints.by_root(root)

    # -- customers --------------------------------------------------------------------------

    def customers(
        self, principal: Principal, search: str | None, limit: int, page: int
    ) -> tuple[list[AccountRecord], int]:
        with self._storage.balances.snapshot() as snapshot:
            return snapshot.customers(principal.tenant_id, search, limit, (page - 1) * limit)

    def customer(self, principal: Principal, customer_id: str, params: Mapping[str, str]) -> CustomerView:
        """One customer: its account figures, and its monthly totals and a page of its verified
        deltas, the most recently sealed first, of all months or of ``period``
        (:func:`~trueup.core.scopes.parse_customer_query`), from one snapshot."""
        check_account_id(customer_id, "customerId")
        query = parse_customer_query(params, self._clock())
        scope = Scope(start=query.start, end=query.end)
        with self._storage.balances.snapshot() as snapshot:
            account = snapshot.account(principal.tenant_id, customer_id)
            if account is None:
                if snapshot.known_customer(principal.tenant_id, customer_id):
                    return CustomerView(AccountRecord(customer_id, 0, 0, "", "", -1), query, (), 0, ())
                raise CustomerNotFoundError(f"customer {quoted(customer_id)} has no deltas")
            summary = snapshot.summary(principal.tenant_id, customer_id, scope)
            page = snapshot.page(
                principal.tenant_id, customer_id, scope, query.limit, query.offset, query.descending
            )
        return CustomerView(account, query, summary.months, summary.count, tuple(page))


def _checkpoint_scope(record: CheckpointRecord) -> tuple[Scope, dict[str, Any]]:
    return (
        Scope(min_leaf=record.tree_size, after_period=record.period),
        {
            "value": record.id,
            "type": "periodCheckpoint",
            "period": record.period,
            "treeSize": record.tree_size,
            "closingBalance": record.closing_balance,
        },
    )


def _month_net(month: MonthRecord) -> MonthNet:
    return MonthNet(
        period=month.period, credits=month.credits, debits=month.debits, net=month.net, count=month.count
    )


def _newest_proof(snapshot: BalanceSnapshot, leaf_index: int, tree_size: int) -> NewestProof:
    wanted = [(0, leaf_index), *inclusion_proof_nodes(leaf_index, tree_size)]
    nodes = snapshot.nodes(wanted)
    path = inclusion_proof(leaf_index, tree_size, nodes)
    return NewestProof(leaf_index, nodes[(0, leaf_index)], tuple(path))
