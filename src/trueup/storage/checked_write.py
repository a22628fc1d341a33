"""One write request stored on its own, with every check: a replay of its idempotency key, its
keys looked up (an identical repeat points at its original, a differing one is a conflict),
locked periods refused, the plan's allowance charged, then its rows inserted.

The group commit (:mod:`trueup.storage.writes`) sends here, each inside its own savepoint, every
request it cannot store together with others without checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from trueup.core.errors import DuplicateKeyError, PeriodLockedError, PlanLimitExceededError
from trueup.core.ids import record_id
from trueup.core.json_text import quoted
from trueup.storage.engine import Tx, chunks
from trueup.storage.idempotency import replay
from trueup.storage.locks import closed_by, locked_periods
from trueup.storage.outbox import enqueue_repeat_completed
from trueup.storage.write_drafts import (
    DELTA_INSERT_COLUMNS,
    REQUEST_INSERT_COLUMNS,
    DeltaDraft,
    ItemConflict,
    Original,
    WriteDraft,
    WriteResult,
    delta_rows,
)

__all__ = ["add_usage", "commit_one"]

_IN_LIST = 400  # keys per IN (...) query: under SQLite's and psycopg's parameter limits


@dataclass(frozen=True, slots=True)
class _Existing:
    seq: int
    draft: DeltaDraft
    record_id: str
    status: str
    accepted_at: str


_WRITES_NAMES = {"key": "key", "customer_id": "accountId", "amount": "bits"}
_EMIT_NAMES = {"key": "referenceId", "customer_id": "customerId", "amount": "delta"}


def commit_one(tx: Tx, draft: WriteDraft, any_locks: bool) -> WriteResult:
    """Store ``draft`` with every check, inside the caller's savepoint. ``any_locks``: whether
    any period is locked at all (else none is looked up). A
    :class:`~trueup.core.errors.DomainError` refuses the whole request (for a key conflict or a
    locked period, unless it reports them per item)."""
    if draft.idempotency is not None:
        earlier = replay(tx, draft.tenant_id, draft.idempotency)
        if earlier is not None:
            return WriteResult(request_id="", replay=earlier)
    existing = _existing(tx, draft.tenant_id, [item.key for item in draft.items])
    stored, duplicates, conflicts = _classify(draft, existing)
    if stored and any_locks:
        stored = _refuse_locked_periods(tx, draft, stored, conflicts)
        duplicates = _drop_repeats_of_refused(draft, stored, duplicates, conflicts)
    if stored and draft.allowance is not None:
        _charge_allowance(tx, draft, len(stored))
    tx.insert_rows("deltas", DELTA_INSERT_COLUMNS, delta_rows(draft, stored))
    if duplicates:
        _record_duplicates(tx, draft, duplicates)
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
        f"""INSERT INTO write_requests ({", ".join(REQUEST_INSERT_COLUMNS)})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            draft.request_id,
            draft.tenant_id,
            draft.source,
            # Its items as indexed (paging reads items by index): a batch's deltas refused at
            # acceptance (a key's conflict, a locked period) included, which are not stored.
            len(draft.items),
            len(stored),
            len(stored),
            draft.accepted_at,
            draft.accepted_at if repeats_sealed else None,
        ),
    )
    if repeats_sealed:
        enqueue_repeat_completed(tx, draft.tenant_id, draft.request_id, draft.accepted_at)
    elif duplicates and not stored:
        # Some original is still queued: the sequencer completes this request after it
        # (storage.seal, _settle_waits).
        tx.execute(
            "INSERT INTO write_waits (request_id, tenant_id) VALUES (?, ?)",
            (draft.request_id, draft.tenant_id),
        )
    originals = []
    for index, _, first in duplicates:
        key = draft.items[index].key
        if key in existing:
            original = existing[key]
            originals.append(Original(index, original.record_id, original.status, original.accepted_at))
        else:  # repeats an item of this request
            originals.append(Original(index, record_id(draft.request_id, first), "queued", draft.accepted_at))
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
    tx: Tx, draft: WriteDraft, stored: list[int], conflicts: list[ItemConflict]
) -> list[int]:
    keys = [(draft.tenant_id, draft.items[i].customer_id, draft.items[i].occurred_at[:7]) for i in stored]
    locks = locked_periods(tx, keys)
    if not locks:
        return stored
    kept: list[int] = []
    for index, key in zip(stored, keys, strict=True):
        lock = locks.get(key)
        if lock is None:
            kept.append(index)
            continue
        field = ".".join(filter(None, (_item_path(draft, index), "occurredAt")))
        error = PeriodLockedError(
            f"{field}: period {key[2]} of customer {quoted(key[1])} {closed_by(lock, key[2])}; "
            "post the delta to an open period"
        )
        if not draft.per_item_conflicts:
            raise error
        conflicts.append(ItemConflict(index, error))
    return kept


def _existing(tx: Tx, tenant_id: str, keys: list[str]) -> dict[str, _Existing]:
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


def add_usage(tx: Tx, tenant_id: str, period: str, count: int) -> int:
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


def _charge_allowance(tx: Tx, draft: WriteDraft, count: int) -> None:
    period = draft.accepted_at[:7]
    total = add_usage(tx, draft.tenant_id, period, count)
    if draft.allowance is not None and total > draft.allowance:
        used = int(total) - count
        deltas = "delta" if count == 1 else "deltas"
        raise PlanLimitExceededError(
            f"this request would store {count:,} new {deltas} but the plan allows "
            f"{draft.allowance} a month and {used} are used in {period}; "
            "upgrade the plan or wait for the next month"
        )


def _record_duplicates(tx: Tx, draft: WriteDraft, duplicates: list[tuple[int, int | None, int]]) -> None:
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
            # Judged as a stored original would be: its time, given or its acceptance time,
            # is the one it keeps, so a repeat giving another time is a conflict.
            original = draft.items[first_in_request[item.key]]._replace(explicit_time=True)
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
