"""Accepting deltas: the all-or-nothing write transaction (what was written is read back
through :mod:`trueup.storage.write_views`; idempotency keys are :mod:`trueup.storage.idempotency`).

:meth:`WriteStore.commit` takes many write requests and commits them in ONE transaction (one
fsync). Plain requests are stored together inside one savepoint and the others each inside
their own; when a savepoint fails its requests are stored again one by one, so one request's
conflict never fails its neighbours.
Nothing here decides *when* to commit: the group committer in the service layer does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from trueup.core.errors import (
    DomainError,
    DuplicateKeyError,
    PeriodLockedError,
    PlanLimitExceededError,
)
from trueup.core.ids import record_id
from trueup.storage.engine import Engine, Tx, chunks
from trueup.storage.errors import IntegrityConflictError, StorageError, StorageUnavailableError
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse, replay
from trueup.storage.locks import locked_periods
from trueup.storage.outbox import enqueue_repeat_completed
from trueup.storage.write_views import (
    RecordView,
    RequestView,
    read_record,
    read_record_at_leaf,
    read_request,
    read_used,
)

log = logging.getLogger(__name__)

__all__ = [
    "DeltaDraft",
    "IdempotencyClaim",
    "ItemConflict",
    "Original",
    "StoredResponse",
    "WriteDraft",
    "WriteResult",
    "WriteStore",
]

_IN_LIST = 400  # keys per IN (...) query: under SQLite's and psycopg's parameter limits


class DeltaDraft(NamedTuple):
    """One delta ready to store. ``metadata`` is canonical JSON text; times are canonical.

    A NamedTuple rather than a frozen dataclass: a thousand are built per write request, and
    a frozen dataclass's ``__init__`` costs several times more.
    """

    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: str | None
    occurred_at: str
    explicit_time: bool
    salt: bytes


@dataclass(frozen=True, slots=True)
class ItemConflict:
    """An item refused alone (emit batches report conflicts per item)."""

    index: int
    error: DomainError


class Original(NamedTuple):
    """The stored delta that an identical repeat (item ``item`` of a request) stands for."""

    item: int
    record_id: str
    status: str
    accepted_at: str
    """When the original was accepted (canonical): the record's ``createdAt``."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed request stored: indices of new items and of identical repeats."""

    request_id: str
    stored: tuple[int, ...] = ()
    duplicates: tuple[int, ...] = ()
    conflicts: tuple[ItemConflict, ...] = ()
    replay: StoredResponse | None = None
    originals: tuple[Original, ...] = ()
    accepted_at: str = ""
    """When the request was accepted (canonical); empty for a replay."""


@dataclass(frozen=True, slots=True)
class WriteDraft:
    """One write request to commit.

    ``allowance`` is the tenant's monthly allowance of accepted deltas (``None``: unlimited).
    ``per_item_conflicts``: a key conflict refuses that item only instead of the request.
    ``render`` builds the reply stored under the idempotency key, inside the transaction.
    """

    tenant_id: str
    request_id: str
    source: str
    accepted_at: str
    items: Sequence[DeltaDraft]
    idempotency: IdempotencyClaim | None = None
    allowance: int | None = None
    per_item_conflicts: bool = False
    positions: tuple[int, ...] = ()  # each item's index in the request body, when they differ
    render: Callable[[WriteResult], StoredResponse] | None = field(default=None, compare=False)


@dataclass(slots=True)
class _Group:
    """What one group commit learns once and shares between its requests."""

    any_locks: bool
    usage: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_usage(self, draft: WriteDraft, stored: int) -> None:
        """Meter ``stored`` deltas of an unmetered draft (metered ones were charged already)."""
        if draft.allowance is None and stored:
            key = (draft.tenant_id, draft.accepted_at[:7])
            self.usage[key] = self.usage.get(key, 0) + stored


@dataclass(frozen=True, slots=True)
class _Existing:
    seq: int
    draft: DeltaDraft
    record_id: str
    status: str
    accepted_at: str


_DELTA_INSERT_COLUMNS = (
    "tenant_id",
    "request_id",
    "item_index",
    "item_key",
    "customer_id",
    "amount",
    "reason",
    "metadata",
    "occurred_at",
    "period",
    "accepted_at",
    "salt",
    "status",
)

_REQUEST_INSERT_COLUMNS = (
    "id",
    "tenant_id",
    "source",
    "item_count",
    "stored_count",
    "pending_count",
    "accepted_at",
    "verified_at",
)


def _delta_rows(draft: WriteDraft, indexes: Sequence[int] | None = None) -> list[tuple[object, ...]]:
    """The ``deltas`` rows (``_DELTA_INSERT_COLUMNS``) of the draft's items at ``indexes``
    (all of them by default), queued."""
    items = draft.items
    return [
        (
            draft.tenant_id,
            draft.request_id,
            index,
            item.key,
            item.customer_id,
            item.amount,
            item.reason,
            item.metadata,
            item.occurred_at,
            item.occurred_at[:7],
            draft.accepted_at,
            item.salt,
            "queued",
        )
        for index in (range(len(items)) if indexes is None else indexes)
        for item in (items[index],)
    ]


_WRITES_NAMES = {"key": "key", "customer_id": "accountId", "amount": "bits"}
_EMIT_NAMES = {"key": "referenceId", "customer_id": "customerId", "amount": "delta"}


class WriteStore:
    """Stores write requests and answers questions about them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- committing -------------------------------------------------------------------------

    def commit(self, drafts: Sequence[WriteDraft]) -> list[WriteResult | Exception]:
        """Commit every draft in one durable transaction; per-draft errors are returned.

        A draft that raises a :class:`DomainError` (conflict, plan limit) stores nothing and
        leaves the others untouched. Storage failures raise and nothing is committed.

        Consecutive plain drafts (see :meth:`_plain`) are stored together with a few statements;
        the others one by one, each in its own savepoint. Either way deltas are stored, and so
        sealed, in the order of ``drafts``.
        """
        outcomes: list[WriteResult | Exception] = []
        with self._engine.write() as tx:
            group = _Group(any_locks=tx.one("SELECT 1 FROM period_checkpoints LIMIT 1") is not None)
            plain = set(self._plain(drafts, group))
            run: list[WriteDraft] = []  # consecutive plain drafts: stored in request order
            for index, draft in enumerate(drafts):
                if index in plain:
                    run.append(draft)
                    continue
                outcomes += self._commit_run(tx, run, group)
                run = []
                outcomes.append(self._commit_one_with_retry(tx, draft, group))
            outcomes += self._commit_run(tx, run, group)
            # Unmetered-plan usage is counted once per group: nothing to check per request.
            for (tenant_id, period), count in group.usage.items():
                self._add_usage(tx, tenant_id, period, count)
        return outcomes

    def _commit_run(
        self, tx: Tx, run: Sequence[WriteDraft], group: _Group, keys_checked: bool = False
    ) -> list[WriteResult | Exception]:
        """Store consecutive plain drafts together; one by one if that fails.

        Their keys are not looked up first: the unique key index refuses a key stored before
        (a client's retry, say) and only then, with ``keys_checked`` false, are the run's keys
        looked up (:meth:`_commit_checked`). Looking every run's keys up first cost about a sixth
        of a single-item write's CPU in the group commit.
        """
        if not run:
            return []
        try:
            with tx.savepoint():
                results = self._commit_plain(tx, run)
        except IntegrityConflictError:
            if not keys_checked:
                return self._commit_checked(tx, run, group)
            # checked, and still refused: another process stored one of these keys meanwhile
        except StorageError:
            raise  # the database itself failed: nothing in this transaction can commit
        except Exception:
            log.exception("storing %d plain write requests together failed; one by one", len(run))
        else:
            for draft, result in zip(run, results, strict=True):
                group.count_usage(draft, len(result.stored))
            return list(results)
        return [self._commit_one_with_retry(tx, draft, group) for draft in run]

    def _commit_checked(
        self, tx: Tx, run: Sequence[WriteDraft], group: _Group
    ) -> list[WriteResult | Exception]:
        """A run that holds a stored key: the drafts with one go one by one (each a repeat, a
        conflict or both), the others together between them, in request order."""
        by_tenant: dict[str, list[str]] = {}
        for draft in run:
            by_tenant.setdefault(draft.tenant_id, []).extend(item.key for item in draft.items)
        taken = {
            (tenant_id, key)
            for tenant_id, keys in by_tenant.items()
            for key in self._taken(tx, tenant_id, keys)
        }
        outcomes: list[WriteResult | Exception] = []
        together: list[WriteDraft] = []
        for draft in run:
            if any((draft.tenant_id, item.key) in taken for item in draft.items):
                outcomes += self._commit_run(tx, together, group, keys_checked=True)
                together = []
                outcomes.append(self._commit_one_with_retry(tx, draft, group))
            else:
                together.append(draft)
        outcomes += self._commit_run(tx, together, group, keys_checked=True)
        return outcomes

    def _plain(self, drafts: Sequence[WriteDraft], group: _Group) -> list[int]:
        """Positions of the drafts that may store every item as it is: no idempotency key, no
        allowance to charge, no locked period anywhere, and no key twice in the group. Storing
        them needs no per-request checks, unless a key was stored before (see
        :meth:`_commit_run`)."""
        if group.any_locks:
            return []
        seen: dict[tuple[str, str], int] = {}
        for draft in drafts:
            for item in draft.items:
                name = (draft.tenant_id, item.key)
                seen[name] = seen.get(name, 0) + 1
        return [
            index
            for index, draft in enumerate(drafts)
            if draft.idempotency is None
            and draft.allowance is None
            and draft.items
            and all(seen[(draft.tenant_id, item.key)] == 1 for item in draft.items)
        ]

    def _commit_plain(self, tx: Tx, drafts: Sequence[WriteDraft]) -> list[WriteResult]:
        tx.insert_rows(
            "deltas", _DELTA_INSERT_COLUMNS, [row for draft in drafts for row in _delta_rows(draft)]
        )
        tx.insert_rows(
            "write_requests",
            _REQUEST_INSERT_COLUMNS,
            [
                (draft.request_id, draft.tenant_id, draft.source, n, n, n, draft.accepted_at, None)
                for draft in drafts
                for n in (len(draft.items),)
            ],
        )
        return [
            WriteResult(
                request_id=draft.request_id,
                stored=tuple(range(len(draft.items))),
                accepted_at=draft.accepted_at,
            )
            for draft in drafts
        ]

    def _commit_one_with_retry(self, tx: Tx, draft: WriteDraft, group: _Group) -> WriteResult | Exception:
        # A concurrent writer on another process may insert the same item key or idempotency
        # key between our check and our insert; the unique index catches it and one retry
        # sees the other writer's row.
        for attempt in range(2):
            try:
                with tx.savepoint():
                    result = self._commit_one(tx, draft, group)
            except DomainError as error:
                return error
            except IntegrityConflictError:
                if attempt == 1:
                    raise
            except StorageError:
                raise  # the database itself failed: nothing in this transaction can commit
            except Exception as exc:
                log.exception("write request %s failed; its group goes on", draft.request_id)
                return exc
            else:
                group.count_usage(draft, len(result.stored))
                return result
        raise AssertionError("unreachable")

    def _commit_one(self, tx: Tx, draft: WriteDraft, group: _Group) -> WriteResult:
        if draft.idempotency is not None:
            earlier = replay(tx, draft.tenant_id, draft.idempotency)
            if earlier is not None:
                return WriteResult(request_id="", replay=earlier)
        existing = self._existing(tx, draft.tenant_id, [item.key for item in draft.items])
        stored, duplicates, conflicts = _classify(draft, existing)
        if stored and group.any_locks:
            stored = self._refuse_locked_periods(tx, draft, stored, conflicts)
            duplicates = _drop_repeats_of_refused(draft, stored, duplicates, conflicts)
        if stored and draft.allowance is not None:
            self._charge_allowance(tx, draft, len(stored))
        tx.insert_rows("deltas", _DELTA_INSERT_COLUMNS, _delta_rows(draft, stored))
        if duplicates:
            self._record_duplicates(tx, draft, duplicates)
        # A request that only repeats deltas already sealed (a retry) is complete at once.
        repeats_sealed = (
            bool(duplicates)
            and not stored
            and all(
                original_seq is not None and existing[draft.items[index].key].status != "queued"
                for index, original_seq, _ in duplicates
            )
        )
        tx.execute(
            f"""INSERT INTO write_requests ({", ".join(_REQUEST_INSERT_COLUMNS)})
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                draft.request_id,
                draft.tenant_id,
                draft.source,
                len(draft.items),
                len(stored),
                len(stored),
                draft.accepted_at,
                draft.accepted_at if repeats_sealed else None,
            ),
        )
        if repeats_sealed:
            enqueue_repeat_completed(tx, draft.tenant_id, draft.request_id, draft.accepted_at)
        originals = []
        for index, _, first in duplicates:
            key = draft.items[index].key
            if key in existing:
                original = existing[key]
                originals.append(Original(index, original.record_id, original.status, original.accepted_at))
            else:  # repeats an item of this request
                originals.append(
                    Original(index, record_id(draft.request_id, first), "queued", draft.accepted_at)
                )
        result = WriteResult(
            request_id=draft.request_id,
            stored=tuple(stored),
            duplicates=tuple(index for index, _, _ in duplicates),
            conflicts=tuple(conflicts),
            originals=tuple(originals),
            accepted_at=draft.accepted_at,
        )
        if draft.idempotency is not None and draft.render is not None:
            response = draft.render(result)
            tx.execute(
                """INSERT INTO idempotency_keys (tenant_id, idem_key, route, body_hash,
                       status_code, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    draft.tenant_id,
                    draft.idempotency.key,
                    draft.idempotency.route,
                    draft.idempotency.body_hash,
                    response.status_code,
                    response.body,
                    draft.accepted_at,
                ),
            )
        return result

    def _refuse_locked_periods(
        self, tx: Tx, draft: WriteDraft, stored: list[int], conflicts: list[ItemConflict]
    ) -> list[int]:
        keys = [(draft.tenant_id, draft.items[i].customer_id, draft.items[i].occurred_at[:7]) for i in stored]
        locks = locked_periods(tx, keys)
        if not locks:
            return stored
        kept: list[int] = []
        for index, key in zip(stored, keys, strict=True):
            checkpoint_id = locks.get(key)
            if checkpoint_id is None:
                kept.append(index)
                continue
            field = ".".join(filter(None, (_item_path(draft, index), "occurredAt")))
            error = PeriodLockedError(
                f"{field}: period {key[2]} of customer {key[1]!r} is locked by checkpoint "
                f"{checkpoint_id}; post the delta to an open period"
            )
            if not draft.per_item_conflicts:
                raise error
            conflicts.append(ItemConflict(index, error))
        return kept

    def stored_response(self, tenant_id: str, claim: IdempotencyClaim) -> StoredResponse | None:
        """The reply stored under an idempotency key (raises on a mismatching body)."""
        with self._engine.read() as tx:
            return replay(tx, tenant_id, claim)

    def write_remembered(
        self,
        tenant_id: str,
        claim: IdempotencyClaim | None,
        response: StoredResponse,
        at: str,
        write: Callable[[Tx], None],
    ) -> StoredResponse:
        """Run ``write`` (a change made outside :meth:`commit`) and store its reply under the
        idempotency key, in one transaction; return the reply that stands.

        The key is claimed first. When it already holds a reply (a retry, or a concurrent
        request that committed first, which this one waits for on the key's unique index),
        ``write`` does not run and that reply stands. When ``write`` raises, nothing is stored.
        """
        with self._engine.write() as tx:
            if claim is None:
                write(tx)
                return response
            claimed = tx.execute(
                """INSERT INTO idempotency_keys (tenant_id, idem_key, route, body_hash,
                       status_code, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING idem_key""",
                (tenant_id, claim.key, claim.route, claim.body_hash, response.status_code, response.body, at),
            )
            if claimed:
                write(tx)
                return response
            stored = replay(tx, tenant_id, claim)  # 409 for another body
        if stored is None:  # the conflicting row was there a moment ago; keys are never deleted
            raise StorageUnavailableError("an idempotency key vanished while it was being read")
        return stored

    def _taken(self, tx: Tx, tenant_id: str, keys: list[str]) -> list[str]:
        """Which of ``keys`` the tenant has stored already (read from the key index alone)."""
        taken: list[str] = []
        for part in chunks(keys, _IN_LIST):
            keys_match, params = tx.one_of("item_key", part, "text")
            rows = tx.execute(
                f"SELECT item_key FROM deltas WHERE tenant_id = ? AND {keys_match}", (tenant_id, *params)
            )
            taken.extend(str(row[0]) for row in rows)
        return taken

    def _existing(self, tx: Tx, tenant_id: str, keys: list[str]) -> dict[str, _Existing]:
        found: dict[str, _Existing] = {}
        unique = list(dict.fromkeys(keys))
        for part in chunks(unique, _IN_LIST):
            keys_match, params = tx.one_of("item_key", part, "text")
            rows = tx.execute(
                f"""SELECT item_key, seq, customer_id, amount, reason, metadata, occurred_at,
                           request_id, item_index, status, accepted_at
                    FROM deltas WHERE tenant_id = ? AND {keys_match}""",
                (tenant_id, *params),
            )
            for (
                key,
                seq,
                customer_id,
                amount,
                reason,
                metadata,
                occurred_at,
                req,
                idx,
                status,
                accepted,
            ) in rows:
                found[key] = _Existing(
                    seq=int(seq),
                    draft=DeltaDraft(
                        key=key,
                        customer_id=customer_id,
                        amount=int(amount),
                        reason=reason,
                        metadata=metadata,
                        occurred_at=occurred_at,
                        explicit_time=True,
                        salt=b"",
                    ),
                    record_id=record_id(req, int(idx)),
                    status=str(status),
                    accepted_at=str(accepted),
                )
        return found

    def _add_usage(self, tx: Tx, tenant_id: str, period: str, count: int) -> int:
        """Add to the tenant's monthly meter and return the new total.

        The upsert takes the row lock, so concurrent writers (any process) queue here and an
        allowance checked against the total is never overshot.
        """
        total = tx.scalar(
            """INSERT INTO usage_months (tenant_id, period, accepted_count) VALUES (?, ?, ?)
               ON CONFLICT (tenant_id, period)
               DO UPDATE SET accepted_count = usage_months.accepted_count + excluded.accepted_count
               RETURNING accepted_count""",
            (tenant_id, period, count),
        )
        return int(total)

    def _charge_allowance(self, tx: Tx, draft: WriteDraft, count: int) -> None:
        period = draft.accepted_at[:7]
        total = self._add_usage(tx, draft.tenant_id, period, count)
        if draft.allowance is not None and total > draft.allowance:
            used = int(total) - count
            raise PlanLimitExceededError(
                f"this request would store {count} new deltas but the plan allows "
                f"{draft.allowance} a month and {used} are used in {period}; "
                "upgrade the plan or wait for the next month"
            )

    def _record_duplicates(
        self, tx: Tx, draft: WriteDraft, duplicates: list[tuple[int, int | None, int]]
    ) -> None:
        rows: list[tuple[str, int, int]] = []
        for index, original_seq, first_index in duplicates:
            seq = original_seq
            if seq is None:
                seq = int(
                    tx.scalar(
                        "SELECT seq FROM deltas WHERE request_id = ? AND item_index = ?",
                        (draft.request_id, first_index),
                    )
                )
            rows.append((draft.request_id, index, seq))
        tx.executemany(
            "INSERT INTO write_duplicates (request_id, item_index, original_seq) VALUES (?, ?, ?)",
            rows,
        )

    # -- reading ----------------------------------------------------------------------------

    def used(self, tenant_id: str, period: str) -> int:
        """New deltas the tenant stored in ``period`` (the plan's meter)."""
        with self._engine.read() as tx:
            return read_used(tx, tenant_id, period)

    def request(self, tenant_id: str, request_id: str, limit: int, offset: int) -> RequestView | None:
        """A request of ``tenant_id`` with items ``offset .. offset+limit-1``, or ``None``."""
        with self._engine.read() as tx:
            return read_request(tx, tenant_id, request_id, limit, offset)

    def record(self, tenant_id: str, request_id: str, item_index: int) -> RecordView | None:
        """The delta stored for one item (following a duplicate to its original)."""
        with self._engine.read() as tx:
            return read_record(tx, tenant_id, request_id, item_index)

    def record_at_leaf(self, tenant_id: str, leaf_index: int) -> RecordView | None:
        with self._engine.read() as tx:
            return read_record_at_leaf(tx, tenant_id, leaf_index)


def _classify(
    draft: WriteDraft, existing: dict[str, _Existing]
) -> tuple[list[int], list[tuple[int, int | None, int]], list[ItemConflict]]:
    """Split a draft's items into new ones, identical repeats and conflicting repeats.

    Duplicates are ``(index, original seq or None, first index in this request)``. A conflict
    raises :class:`DuplicateKeyError` unless the draft reports conflicts per item.
    """
    names = _WRITES_NAMES if draft.source == "writes" else _EMIT_NAMES
    stored: list[int] = []
    duplicates: list[tuple[int, int | None, int]] = []
    conflicts: list[ItemConflict] = []
    first_in_request: dict[str, int] = {}
    for index, item in enumerate(draft.items):
        if item.key in existing:
            original: DeltaDraft = existing[item.key].draft
            repeat: tuple[int, int | None, int] = (index, existing[item.key].seq, -1)
        elif item.key in first_in_request:
            original = draft.items[first_in_request[item.key]]
            repeat = (index, None, first_in_request[item.key])
        else:
            first_in_request[item.key] = index
            stored.append(index)
            continue
        differing = _differing_fields(item, original, names)
        if not differing:
            duplicates.append(repeat)
            continue
        error = DuplicateKeyError(item.key, differing, _item_path(draft, index), names["key"])
        if not draft.per_item_conflicts:
            raise error
        conflicts.append(ItemConflict(index, error))
    return stored, duplicates, conflicts


def _drop_repeats_of_refused(
    draft: WriteDraft,
    stored: list[int],
    duplicates: list[tuple[int, int | None, int]],
    conflicts: list[ItemConflict],
) -> list[tuple[int, int | None, int]]:
    """An in-request repeat of an item that was refused is refused the same way."""
    kept = set(stored)
    errors = {conflict.index: conflict.error for conflict in conflicts}
    remaining = []
    for repeat in duplicates:
        index, original_seq, first = repeat
        if original_seq is None and first not in kept:
            conflicts.append(ItemConflict(index, errors[first]))
        else:
            remaining.append(repeat)
    return remaining


def _item_path(draft: WriteDraft, index: int) -> str:
    """Where an item sits in its request body, for error messages."""
    position = draft.positions[index] if draft.positions else index
    if draft.source == "writes":
        return f"items[{position}]"
    return f"deltas[{position}]" if draft.source == "batch" else ""


def _differing_fields(new: DeltaDraft, old: DeltaDraft, names: dict[str, str]) -> tuple[str, ...]:
    differing: list[str] = []
    if new.customer_id != old.customer_id:
        differing.append(names["customer_id"])
    if new.amount != old.amount:
        differing.append(names["amount"])
    if new.reason != old.reason:
        differing.append("reason")
    if new.metadata != old.metadata:
        differing.append("metadata")
    # A repeat without occurredAt defaults to its own acceptance time: only an explicit
    # time that differs makes the content different.
    if new.explicit_time and old.explicit_time and new.occurred_at != old.occurred_at:
        differing.append("occurredAt")
    return tuple(differing)
