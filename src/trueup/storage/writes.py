"""Accepting deltas: the group commit, the all-or-nothing write transaction (what was written is
read back through :mod:`trueup.storage.write_views`; idempotency keys are
:mod:`trueup.storage.idempotency`).

:meth:`WriteStore.commit` takes many write requests (:mod:`trueup.storage.write_drafts`) and
commits them in ONE transaction (one fsync). Plain requests are stored together inside one
savepoint and the others each inside their own, with every check
(:mod:`trueup.storage.checked_write`); when a savepoint fails its requests are stored again one by
one, so one request's conflict never fails its neighbours.
Nothing here decides *when* to commit: the group committer in the service layer does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trueup.core.errors import DomainError, IdempotencyMismatchError
from trueup.storage.checked_write import add_usage, commit_one
from trueup.storage.engine import Engine, Tx, chunks
from trueup.storage.errors import (
    IntegrityConflictError,
    StorageError,
    StorageUnavailableError,
    TransactionConflictError,
)
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse, replay
from trueup.storage.secret_box import SEALED_PREFIX, SecretBox, is_sealed, required_box
from trueup.storage.write_drafts import (
    DELTA_INSERT_COLUMNS,
    REQUEST_INSERT_COLUMNS,
    WriteDraft,
    WriteResult,
    delta_rows,
)
from trueup.storage.write_views import (
    RecordView,
    RequestView,
    read_record,
    read_record_at_leaf,
    read_request,
    read_used,
)

log = logging.getLogger(__name__)

__all__ = ["WriteStore"]

_IN_LIST = 400  # keys per IN (...) query: under SQLite's and psycopg's parameter limits

_CONFLICT_ATTEMPTS = 3
"""How many times a group commit is run when the database ends it to break a deadlock."""


@dataclass(slots=True)
class _Group:
    """What one group commit learns once and shares between its requests."""

    any_locks: bool
    usage: dict[tuple[str, str], int] = field(default_factory=dict)

    def count_usage(self, draft: WriteDraft, stored: int) -> None:
        """Meter ``stored`` deltas of an unmetered draft (metered ones were charged already)."""
        if draft.allowance is None and stored:
            key = _meter(draft)
            self.usage[key] = self.usage.get(key, 0) + stored


def _meter(draft: WriteDraft) -> tuple[str, str]:
    """The row of ``usage_months`` a draft is metered on: its tenant and month of acceptance."""
    return draft.tenant_id, draft.accepted_at[:7]


def _reply_context(tenant_id: str, key: str) -> str:
    """What a reply kept under an idempotency key is sealed for: that tenant's key."""
    return f"reply of tenant {tenant_id} under idempotency key {key!r}"


class WriteStore:
    """Stores write requests and answers questions about them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._box: SecretBox | None = None

    def keep_secrets_with(self, box: SecretBox) -> None:
        """Seal the replies :meth:`write_remembered` keeps, and open them, with ``box``."""
        self._box = box

    # -- committing -------------------------------------------------------------------------

    def commit(self, drafts: Sequence[WriteDraft]) -> list[WriteResult | Exception]:
        """Commit every draft in one durable transaction; per-draft errors are returned.

        A draft that raises a :class:`DomainError` (conflict, plan limit) stores nothing and
        leaves the others untouched. Storage failures raise and nothing is committed.

        Consecutive plain drafts (see :meth:`_plain`) are stored together with a few statements;
        the others one by one, each in its own savepoint. Either way deltas are stored, and so
        sealed, in the order of ``drafts``.

        A transaction the database ended to break a deadlock (on PostgreSQL, two API processes
        storing the same keys in opposite orders: a client's retries sent to both, say) committed
        nothing, and is run again, up to :data:`_CONFLICT_ATTEMPTS` times in all: the other
        transaction has committed meanwhile, and the repeats of its keys are answered as repeats.
        """
        for _ in range(_CONFLICT_ATTEMPTS - 1):
            try:
                return self._commit_group(drafts)
            except TransactionConflictError as exc:
                log.info("a group commit of %d requests was ended (%s); running it again", len(drafts), exc)
        return self._commit_group(drafts)  # the last try: its conflict goes to the caller

    def _commit_group(self, drafts: Sequence[WriteDraft]) -> list[WriteResult | Exception]:
        """:meth:`commit`, once."""
        outcomes: list[WriteResult | Exception] = []
        with self._engine.write() as tx:
            group = _Group(any_locks=tx.one("SELECT 1 FROM period_checkpoints LIMIT 1") is not None)
            # Meter rows are locked in one order, (tenant, month), by every process: metered ones
            # first, all at once, then (at the end) the unmetered ones. Taken in request order,
            # two API processes whose groups hold two tenants in opposite orders each waited for
            # the other's row, and PostgreSQL ended one of them with a deadlock (a 503).
            for tenant_id, period in sorted({_meter(d) for d in drafts if d.allowance is not None}):
                add_usage(tx, tenant_id, period, 0)
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
            for (tenant_id, period), count in sorted(group.usage.items()):
                add_usage(tx, tenant_id, period, count)
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
        tx.insert_rows("deltas", DELTA_INSERT_COLUMNS, [row for draft in drafts for row in delta_rows(draft)])
        tx.insert_rows(
            "write_requests",
            REQUEST_INSERT_COLUMNS,
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
        # key between our check and our insert; the unique index catches it once that writer
        # commits, and the next try sees its row. Several writers (a client's overlapping
        # retries sent to several processes) can each do so to a try in turn, but each refusal
        # shows one more stored key: one try per key, and one more, always suffice.
        tries = 0
        refused = 0
        while True:
            try:
                with tx.savepoint():
                    result = commit_one(tx, draft, group.any_locks)
            except DomainError as error:  # the savepoint rolled back: nothing of this try stays
                return _answered_meanwhile(tx, draft) or error
            except IntegrityConflictError:
                refused += 1
                # counted only once refused: most requests are stored at the first try
                tries = tries or len({item.key for item in draft.items}) + 2  # the idempotency key too
                if refused == tries:
                    raise
            except StorageError:
                raise  # the database itself failed: nothing in this transaction can commit
            except Exception as exc:
                log.exception("write request %s failed; its group goes on", draft.request_id)
                return exc
            else:
                group.count_usage(draft, len(result.stored))
                return result

    def stored_response(self, tenant_id: str, claim: IdempotencyClaim) -> StoredResponse | None:
        """The reply :meth:`write_remembered` stored under an idempotency key, opened (raises on
        a mismatching body)."""
        with self._engine.read() as tx:
            stored = replay(tx, tenant_id, claim)
        return None if stored is None else self._opened(stored, tenant_id, claim.key)

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
            kept = self._box_or_refuse().seal(response.body, _reply_context(tenant_id, claim.key))
            claimed = tx.execute(
                """INSERT INTO idempotency_keys (tenant_id, idem_key, route, body_hash,
                       status_code, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING idem_key""",
                (tenant_id, claim.key, claim.route, claim.body_hash, response.status_code, kept, at),
            )
            if claimed:
                write(tx)
                return response
            stored = replay(tx, tenant_id, claim)  # 409 for another body
        if stored is None:  # the conflicting row was there a moment ago; keys are never deleted
            raise StorageUnavailableError("an idempotency key vanished while it was being read")
        return self._opened(stored, tenant_id, claim.key)

    def seal_clear_replies(self, route: str) -> int:
        """Seal the replies of ``route`` an older Trueup kept in clear under idempotency keys;
        return how many. Each is replaced only while it is still the value read."""
        box = self._box_or_refuse()
        with self._engine.read() as tx:
            rows = tx.execute(
                f"""SELECT tenant_id, idem_key, response FROM idempotency_keys
                    WHERE route = ? AND response NOT LIKE '{SEALED_PREFIX}%' ORDER BY tenant_id, idem_key""",
                (route,),
            )
        if not rows:
            return 0
        with self._engine.write() as tx:
            return tx.executemany(
                """UPDATE idempotency_keys SET response = ?
                   WHERE tenant_id = ? AND idem_key = ? AND response = ?""",
                [
                    (box.seal(str(body), _reply_context(str(tenant), str(key))), tenant, key, body)
                    for tenant, key, body in rows
                ],
            )

    def _box_or_refuse(self) -> SecretBox:
        return required_box(self._box, "replies kept under idempotency keys")

    def _opened(self, stored: StoredResponse, tenant_id: str, key: str) -> StoredResponse:
        if not is_sealed(stored.body):  # kept in clear by an older Trueup
            return stored
        body = self._box_or_refuse().open(stored.body, _reply_context(tenant_id, key))
        return StoredResponse(stored.status_code, body)

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


def _answered_meanwhile(tx: Tx, draft: WriteDraft) -> WriteResult | DomainError | None:
    """What ``draft``'s ``Idempotency-Key`` answers now, for a request refused (its item keys'
    conflict, the allowance) after :func:`commit_one` found the key unused: on PostgreSQL each
    statement reads what was committed when it began, so another process's request under the key
    may have committed in between, and its reply (or ``IDEMPOTENCY_MISMATCH`` for another body)
    is the answer this request would have had a moment later. ``None`` if the key is still unused."""
    if draft.idempotency is None:
        return None
    try:
        earlier = replay(tx, draft.tenant_id, draft.idempotency)
    except IdempotencyMismatchError as mismatch:
        return mismatch
    return None if earlier is None else WriteResult(request_id="", replay=earlier)
