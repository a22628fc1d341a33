"""The Merkle log's storage: the queue of unsealed deltas, tree nodes, signed heads, and the
one transaction that seals a batch together with the balances derived from it.

Only the sequencer calls :meth:`LogStore.seal`. The transaction is fenced on the previous tree
size, so a stale sequencer that lost its election can never append: its commit fails on the
tree head's primary key or the size check, and every delta it seals or fails must still be
queued (a seal that only fails deltas leaves the size as it was).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

from trueup.storage.engine import Engine, Row, Tx, chunks
from trueup.storage.errors import StorageError
from trueup.storage.locks import lock_count, locked_periods
from trueup.storage.outbox import enqueue_seal_events
from trueup.storage.tenants import store_pepper_check

__all__ = [
    "BalanceOverflowError",
    "HeadRecord",
    "LogStore",
    "QueuedDelta",
    "SealConflictError",
    "SealOutcome",
    "SealPlan",
    "SealedDelta",
]

_VALUES_CHUNK = 300


class SealConflictError(StorageError):
    """The log moved under the sequencer (another sequencer sealed); reload and retry."""


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class BalanceOverflowError(StorageError):
    """Sealing some of a plan's deltas would take a figure stored with them (an account's
    running balance, a month's credits or debits) beyond 64 bits. Nothing was written;
    ``reasons`` (by ``seq``) says which deltas and why, so the sequencer can fail just those
    and seal the rest: one account's figures never stop the log."""

    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__(f"{len(reasons)} deltas would take a running figure beyond 64 bits")
        self.reasons = reasons


@dataclass(frozen=True, slots=True)
class HeadRecord:
    """A signed tree head: ``root`` is raw 32 bytes, ``checkpoint`` the signed note text."""

    size: int
    root: bytes
    timestamp_ms: int
    checkpoint: str


class QueuedDelta(NamedTuple):
    """An accepted, unsealed delta: everything the sequencer needs to build its leaf
    (a NamedTuple: a thousand are read per seal)."""

    seq: int
    tenant_id: str
    request_id: str
    item_index: int
    key: str
    customer_id: str
    amount: int
    reason: str
    metadata: str | None
    occurred_at: str
    period: str
    salt: bytes


@dataclass(frozen=True, slots=True)
class SealedDelta:
    """A sealed delta with the figures the sequencer stored for it (what an audit re-checks)."""

    leaf_index: int
    tenant_id: str
    customer_id: str
    key: str
    amount: int
    occurred_at: str
    period: str
    metadata: str | None
    salt: bytes
    sealed_size: int
    cust_seq: int
    running_balance: int
    month_seq: int
    month_credits: int
    month_debits: int
    account_no: int | None


@dataclass(frozen=True, slots=True)
class SealPlan:
    """What one seal appends: leaves in order from ``previous_size``, the new nodes, the head.

    ``failed`` deltas get no leaf (for example a period locked after their acceptance).
    """

    previous_size: int
    leaves: Sequence[QueuedDelta]
    failed: Sequence[tuple[QueuedDelta, str]]
    nodes: Sequence[tuple[int, int, bytes]]
    head: HeadRecord
    verified_at: str
    locks_seen: int = 0


@dataclass(frozen=True, slots=True)
class SealOutcome:
    head: HeadRecord
    completed_requests: tuple[str, ...]
    sealed_count: int
    failed_count: int
    events: int = 0
    """Webhook events written to the outbox by this seal."""


class LogStore:
    """Reads and appends the log."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- the queue --------------------------------------------------------------------------

    def queued(self, limit: int) -> list[QueuedDelta]:
        """The oldest ``limit`` unsealed deltas, in acceptance order."""
        with self._engine.read() as tx:
            rows = tx.execute(
                """SELECT seq, tenant_id, request_id, item_index, item_key, customer_id, amount,
                          reason, metadata, occurred_at, period, salt
                   FROM deltas WHERE status = 'queued' ORDER BY seq LIMIT ?""",
                (limit,),
            )
        # Both drivers return typed integers and text; only BLOB/BYTEA needs normalising.
        return [
            QueuedDelta(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bytes(r[11]))
            for r in rows
        ]

    def period_locks(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> tuple[dict[tuple[str, str, str], str], int]:
        """Locked ``(tenant, customer, period)`` among ``keys``, and the number of locks."""
        with self._engine.read() as tx:
            return locked_periods(tx, keys), lock_count(tx)

    def queued_at_least(self, limit: int) -> int:
        """How many deltas are queued, counting no further than ``limit`` (a bounded cost)."""
        with self._engine.read() as tx:
            value = tx.scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM deltas WHERE status = 'queued' LIMIT ?) AS q",
                (limit,),
            )
        return int(value or 0)

    def queue_stats(self) -> tuple[int, str | None]:
        """``(number of queued deltas, acceptance time of the oldest)``."""
        with self._engine.read() as tx:
            row = tx.one("SELECT COUNT(*), MIN(accepted_at) FROM deltas WHERE status = 'queued'")
        assert row is not None
        return int(row[0]), None if row[1] is None else str(row[1])

    # -- heads and nodes --------------------------------------------------------------------

    def head(self) -> HeadRecord | None:
        """The newest signed tree head, or ``None`` before the first one."""
        with self._engine.read() as tx:
            return latest_head(tx)

    def head_at(self, size: int) -> HeadRecord | None:
        with self._engine.read() as tx:
            return head_at(tx, size)

    def head_by_root(self, root: bytes) -> HeadRecord | None:
        """The head with this root (the largest, should a root ever repeat)."""
        with self._engine.read() as tx:
            return head_by_root(tx, root)

    def heads(self, after_size: int, limit: int) -> list[HeadRecord]:
        """Heads with ``size > after_size`` in size order (for audits)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                """SELECT tree_size, root_hash, timestamp_ms, checkpoint FROM tree_heads
                   WHERE tree_size > ? ORDER BY tree_size LIMIT ?""",
                (after_size, limit),
            )
        return [_head(row) for row in rows]

    def nodes(self, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored nodes by ``(level, index)``; missing ones are simply absent."""
        with self._engine.read() as tx:
            return read_nodes(tx, ids)

    def sealed(self, after_leaf: int, limit: int) -> list[SealedDelta]:
        """Verified deltas with ``leaf_index > after_leaf`` in leaf order (for audits)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                """SELECT leaf_index, tenant_id, customer_id, item_key, amount, occurred_at,
                          period, metadata, salt, sealed_size, cust_seq, running_balance,
                          month_seq, month_credits, month_debits, account_no
                   FROM deltas WHERE leaf_index IS NOT NULL AND leaf_index > ?
                   ORDER BY leaf_index LIMIT ?""",
                (after_leaf, limit),
            )
        return [
            SealedDelta(
                leaf_index=int(r[0]),
                tenant_id=str(r[1]),
                customer_id=str(r[2]),
                key=str(r[3]),
                amount=int(r[4]),
                occurred_at=str(r[5]),
                period=str(r[6]),
                metadata=None if r[7] is None else str(r[7]),
                salt=bytes(r[8]),
                sealed_size=int(r[9]),
                cust_seq=int(r[10]),
                running_balance=int(r[11]),
                month_seq=int(r[12]),
                month_credits=int(r[13]),
                month_debits=int(r[14]),
                account_no=None if r[15] is None else int(r[15]),
            )
            for r in rows
        ]

    def account_totals(self) -> dict[tuple[str, str], tuple[int, int, int | None]]:
        """``(balance, delta_count, account_no)`` of every account (for audits)."""
        with self._engine.read() as tx:
            rows = tx.execute("SELECT tenant_id, customer_id, balance, delta_count, account_no FROM accounts")
        return {
            (str(r[0]), str(r[1])): (int(r[2]), int(r[3]), None if r[4] is None else int(r[4])) for r in rows
        }

    def month_totals(self) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        """``(credits, debits, count)`` of every customer-month (for audits)."""
        with self._engine.read() as tx:
            rows = tx.execute(
                "SELECT tenant_id, customer_id, period, credits, debits, delta_count FROM account_months"
            )
        return {(str(r[0]), str(r[1]), str(r[2])): (int(r[3]), int(r[4]), int(r[5])) for r in rows}

    # -- sealing ----------------------------------------------------------------------------

    def store_first_head(self, head: HeadRecord, pepper_check: int | None = None) -> None:
        """Store the signed head of the empty tree if the log has no head yet, and with it (in
        the same transaction) the key pepper's check value if the database keeps none yet: the
        binding of a new database to the key and pepper of the first process that opens it."""
        with self._engine.write() as tx:
            tx.execute(
                """INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint)
                   VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING""",
                (head.size, head.root, head.timestamp_ms, head.checkpoint),
            )
            if pepper_check is not None:
                store_pepper_check(tx, pepper_check)

    def seal(self, plan: SealPlan) -> SealOutcome:
        """Append ``plan`` atomically: nodes, head, leaf positions, balances, request states
        and the webhook outbox rows they cause (``trueup.storage.outbox``).

        Raises :class:`SealConflictError` when the log's size is not ``plan.previous_size``.
        """
        # Only a seal that adds leaves changes accounts, and the write below goes ahead only if
        # the log is still at plan.previous_size: so the running figures are worked out from a
        # snapshot at that size, outside the writer, which on SQLite is one for the whole node.
        with self._engine.read() as tx:
            _check_size(tx, plan)
            balances = _plan_balances(tx, plan)
        with self._engine.write() as tx:
            self._engine.serialize(tx, "seal")
            _check_size(tx, plan)
            if lock_count(tx) != plan.locks_seen:
                raise SealConflictError("a period was locked while this seal was planned")
            head = plan.head
            if plan.leaves:
                tx.insert_rows("tree_nodes", ("level", "idx", "hash"), plan.nodes)
                tx.execute(
                    """INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint)
                       VALUES (?, ?, ?, ?)""",
                    (head.size, head.root, head.timestamp_ms, head.checkpoint),
                )
            _write_balances(tx, balances)
            if plan.failed:
                _write_failures(tx, plan.failed)
            completed = _settle_requests(tx, plan)
            events = enqueue_seal_events(tx, plan, completed)
        return SealOutcome(
            head=plan.head,
            completed_requests=completed,
            sealed_count=len(plan.leaves),
            failed_count=len(plan.failed),
            events=events,
        )


_HEAD_COLUMNS = "tree_size, root_hash, timestamp_ms, checkpoint"


def _check_size(tx: Tx, plan: SealPlan) -> None:
    current = tx.scalar("SELECT MAX(tree_size) FROM tree_heads")
    if int(current or 0) != plan.previous_size:
        raise SealConflictError(f"log is at size {current}, this seal was planned from {plan.previous_size}")


def latest_head(tx: Tx) -> HeadRecord | None:
    row = tx.one(f"SELECT {_HEAD_COLUMNS} FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
    return None if row is None else _head(row)


def head_at(tx: Tx, size: int) -> HeadRecord | None:
    row = tx.one(f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tree_size = ?", (size,))
    return None if row is None else _head(row)


def head_by_root(tx: Tx, root: bytes) -> HeadRecord | None:
    row = tx.one(
        f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE root_hash = ? ORDER BY tree_size DESC LIMIT 1",
        (root,),
    )
    return None if row is None else _head(row)


def read_nodes(tx: Tx, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Stored tree nodes by ``(level, index)`` within ``tx``; missing ones are absent."""
    wanted = list(dict.fromkeys(ids))
    found: dict[tuple[int, int], bytes] = {}
    for relation, params in tx.relations(wanted, ("bigint", "bigint"), _VALUES_CHUNK):
        rows = tx.execute(
            # A join, not "(level, idx) IN (VALUES …)": SQLite plans the latter as a full scan.
            f"""SELECT t.level, t.idx, t.hash FROM {relation}
                JOIN tree_nodes t ON t.level = w.column1 AND t.idx = w.column2""",
            params,
        )
        for level, idx, digest in rows:
            found[(int(level), int(idx))] = bytes(digest)
    return found


def _head(row: Row) -> HeadRecord:
    return HeadRecord(
        size=int(row[0]),
        root=bytes(row[1]),
        timestamp_ms=int(row[2]),
        checkpoint=str(row[3]),
    )


# What sealing writes into a delta's row (with PostgreSQL's types, see Tx.update_rows).
_SEALED_COLUMNS = {
    "status": "text",
    "leaf_index": "bigint",
    "sealed_size": "bigint",
    "verified_at": "text",
    "cust_seq": "bigint",
    "running_balance": "bigint",
    "month_seq": "bigint",
    "month_credits": "bigint",
    "month_debits": "bigint",
    "account_no": "bigint",
}
_ACCOUNT_COLUMNS = {
    "tenant_id": "text",
    "customer_id": "text",
    "balance": "bigint",
    "delta_count": "bigint",
    "first_activity": "text",
    "last_activity": "text",
    "last_leaf_index": "bigint",
    "account_no": "bigint",
}
_MONTH_COLUMNS = {
    "tenant_id": "text",
    "customer_id": "text",
    "period": "text",
    "credits": "bigint",
    "debits": "bigint",
    "delta_count": "bigint",
}


@dataclass(slots=True)
class _Account:
    balance: int
    count: int
    first_activity: str
    number: int
    """``account_no``: what the per-customer indexes of ``deltas`` are keyed by."""


@dataclass(frozen=True, slots=True)
class _BalanceWrites:
    """The rows a seal writes into ``deltas`` (``_SEALED_COLUMNS``, in account order),
    ``accounts`` and ``account_months``, worked out before the seal takes the writer."""

    deltas: list[tuple[object, ...]]
    accounts: list[tuple[object, ...]]
    months: list[tuple[object, ...]]


def _plan_balances(tx: Tx, plan: SealPlan) -> _BalanceWrites:
    """Each sealed delta's leaf and its customer's running figures (worked out in leaf order,
    written in account order), from the accounts as they stand at ``plan.previous_size``."""
    if not plan.leaves:
        return _BalanceWrites([], [], [])
    customers = list(dict.fromkeys((d.tenant_id, d.customer_id) for d in plan.leaves))
    months = list(dict.fromkeys((d.tenant_id, d.customer_id, d.period) for d in plan.leaves))
    accounts: dict[tuple[str, str], _Account] = {}
    for relation, params in tx.relations(customers, ("text", "text"), _VALUES_CHUNK):
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, balance, delta_count, first_activity, account_no
                FROM {relation}
                JOIN accounts a ON a.tenant_id = w.column1 AND a.customer_id = w.column2""",
            params,
        )
        for tenant_id, customer_id, balance, count, first, number in rows:
            if number is None:
                raise StorageError(
                    f"account {customer_id!r} has no account number: a Trueup older than schema "
                    "version 7 sealed it beside this one; stop it, then run `trueup audit`"
                )
            accounts[(tenant_id, customer_id)] = _Account(int(balance), int(count), str(first), int(number))
    # A new customer's account takes the next number. Only a seal that adds leaves opens
    # accounts, and this seal's write goes ahead only if the log is still at this snapshot's
    # size, so no other seal can have taken these numbers meanwhile (the unique index on
    # accounts.account_no would refuse the seal if one had).
    opened = [customer for customer in customers if customer not in accounts]
    if opened:
        last = int(tx.scalar("SELECT COALESCE(MAX(account_no), 0) FROM accounts"))
        for number, customer in enumerate(opened, start=last + 1):
            accounts[customer] = _Account(0, 0, plan.verified_at, number)
    month_rows: dict[tuple[str, str, str], list[int]] = {}
    for relation, params in tx.relations(months, ("text", "text", "text"), _VALUES_CHUNK // 2):
        rows = tx.execute(
            f"""SELECT tenant_id, customer_id, period, credits, debits, delta_count
                FROM {relation} JOIN account_months m ON m.tenant_id = w.column1
                     AND m.customer_id = w.column2 AND m.period = w.column3""",
            params,
        )
        for tenant_id, customer_id, period, credits, debits, count in rows:
            month_rows[(tenant_id, customer_id, period)] = [int(credits), int(debits), int(count)]

    updates: list[tuple[object, ...]] = []
    last_leaf: dict[tuple[str, str], int] = {}
    beyond: dict[int, str] = {}
    for offset, delta in enumerate(plan.leaves):
        account = accounts[(delta.tenant_id, delta.customer_id)]
        month = month_rows.setdefault((delta.tenant_id, delta.customer_id, delta.period), [0, 0, 0])
        side = 0 if delta.amount > 0 else 1  # credits, debits
        account.balance += delta.amount
        month[side] += delta.amount
        if not (_I64_MIN <= account.balance <= _I64_MAX and _I64_MIN <= month[side] <= _I64_MAX):
            beyond[delta.seq] = _overflow_reason(delta, account.balance, side)
            # Left out of the figures, as it will be left out of the seal: the deltas after it
            # are judged by the figures they will really have.
            account.balance -= delta.amount
            month[side] -= delta.amount
            continue
        account.count += 1
        month[2] += 1
        leaf = plan.previous_size + offset
        last_leaf[(delta.tenant_id, delta.customer_id)] = leaf
        updates.append(
            (
                delta.seq,
                "verified",
                leaf,
                plan.head.size,
                plan.verified_at,
                account.count,
                account.balance,
                month[2],
                month[0],
                month[1],
                account.number,
            )
        )
    if beyond:
        raise BalanceOverflowError(beyond)
    # The deltas' rows in account order (then leaf order), not the log's, sorted here, before the
    # seal takes the writer (about 19 ms for 16,000 rows): each row adds an entry to the five
    # per-account indexes, and consecutive entries of one account land in the same index pages,
    # still at hand. On SQLite a seal of 16,000 deltas over 1,000 customers spent 15-21 µs a
    # delta in the UPDATE instead of 32-37; PostgreSQL, which joins the rows, did not change.
    return _BalanceWrites(
        deltas=sorted(updates, key=_account_then_leaf),
        accounts=[
            (
                t,
                c,
                acc.balance,
                acc.count,
                acc.first_activity,
                plan.verified_at,
                last_leaf[(t, c)],
                acc.number,
            )
            for (t, c), acc in accounts.items()
            if (t, c) in last_leaf
        ],
        months=[(t, c, p, v[0], v[1], v[2]) for (t, c, p), v in month_rows.items()],
    )


def _overflow_reason(delta: QueuedDelta, balance: int, side: int) -> str:
    """Why ``delta`` fails: which of its account's figures it would take beyond 64 bits."""
    if _I64_MIN <= balance <= _I64_MAX:
        figure = f"the {('credits', 'debits')[side]} of {delta.period}"
    else:
        figure = "the balance"
    return (
        f"it would take {figure} of account {delta.customer_id} beyond the 64-bit range "
        f"(-{2**63:,} to {_I64_MAX:,}); post a smaller amount"
    )


# Where a row of _BalanceWrites.deltas holds them: (seq, *the values of _SEALED_COLUMNS).
_ROW_LEAF = 1 + list(_SEALED_COLUMNS).index("leaf_index")
_ROW_ACCOUNT = 1 + list(_SEALED_COLUMNS).index("account_no")


def _account_then_leaf(row: tuple[object, ...]) -> tuple[int, int]:
    """Sort key of a row of ``_BalanceWrites.deltas``: its account number, then its leaf."""
    return cast(int, row[_ROW_ACCOUNT]), cast(int, row[_ROW_LEAF])


def _write_balances(tx: Tx, writes: _BalanceWrites) -> None:
    # Only a queued delta becomes a leaf: were one sealed or failed already, the seal would give
    # it a second leaf (or a leaf to a refused delta), so it is refused whole instead.
    updated = tx.update_rows("deltas", "seq", _SEALED_COLUMNS, writes.deltas, only_if="status = 'queued'")
    if updated != len(writes.deltas):
        raise SealConflictError(
            f"{len(writes.deltas) - updated} of the {len(writes.deltas)} deltas of this seal "
            "are no longer queued"
        )
    tx.upsert_rows(
        "accounts",
        ("tenant_id", "customer_id"),
        _ACCOUNT_COLUMNS,
        ("balance", "delta_count", "last_activity", "last_leaf_index"),
        writes.accounts,
    )
    tx.upsert_rows(
        "account_months",
        ("tenant_id", "customer_id", "period"),
        _MONTH_COLUMNS,
        ("credits", "debits", "delta_count"),
        writes.months,
    )


def _write_failures(tx: Tx, failed: Sequence[tuple[QueuedDelta, str]]) -> None:
    # Fenced like the leaves: a seal of failures only leaves the tree's size as it was, so the
    # size check does not stop a stale sequencer that planned the same deltas; this does.
    updated = tx.executemany(
        "UPDATE deltas SET status = 'failed', failure = ? WHERE seq = ? AND status = 'queued'",
        [(reason, delta.seq) for delta, reason in failed],
    )
    if updated != len(failed):
        raise SealConflictError(
            f"{len(failed) - updated} of the {len(failed)} deltas this seal fails are no longer queued"
        )


def _settle_requests(tx: Tx, plan: SealPlan) -> tuple[str, ...]:
    """Count sealed and failed items off their requests; return the requests now complete."""
    settled: dict[str, int] = {}
    for delta in plan.leaves:
        settled[delta.request_id] = settled.get(delta.request_id, 0) + 1
    for delta, _ in plan.failed:
        settled[delta.request_id] = settled.get(delta.request_id, 0) + 1
    if not settled:
        return ()
    failures: dict[str, int] = {}
    for delta, _ in plan.failed:
        failures[delta.request_id] = failures.get(delta.request_id, 0) + 1
    if failures:
        tx.executemany(
            "UPDATE write_requests SET failed_count = failed_count + ? WHERE id = ?",
            [(count, request_id) for request_id, count in failures.items()],
        )
    tx.executemany(
        """UPDATE write_requests SET pending_count = pending_count - ?,
               verified_at = CASE WHEN pending_count - ? = 0 THEN ? ELSE verified_at END
           WHERE id = ?""",
        [(count, count, plan.verified_at, request_id) for request_id, count in settled.items()],
    )
    completed: list[str] = []
    ids = list(settled)
    for part in chunks(ids, _VALUES_CHUNK):
        ids_match, params = tx.one_of("id", part, "text")
        rows = tx.execute(f"SELECT id FROM write_requests WHERE pending_count = 0 AND {ids_match}", params)
        completed.extend(str(row[0]) for row in rows)
    return tuple(completed)
