"""The write store's contract, run against every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import psycopg
import pytest

from trueup.core.errors import DuplicateKeyError, IdempotencyMismatchError, PlanLimitExceededError
from trueup.storage import Storage, StorageUnavailableError, open_storage
from trueup.storage.engine import Tx
from trueup.storage.idempotency import IdempotencyClaim, StoredResponse
from trueup.storage.write_drafts import DeltaDraft, WriteDraft, WriteResult
from trueup.storage.writes import WriteStore


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    opened = open_storage(database_url)
    yield opened
    opened.close()


def delta(key: str, amount: int = 10, customer: str = "cust-1", **kw: object) -> DeltaDraft:
    values: dict[str, object] = {
        "key": key,
        "customer_id": customer,
        "amount": amount,
        "reason": "",
        "metadata": None,
        "occurred_at": "2026-02-10T14:30:00.000000Z",
        "explicit_time": True,
        "salt": b"s" * 16,
    }
    values.update(kw)
    return DeltaDraft(**values)  # type: ignore[arg-type]


def draft(request_id: str, *items: DeltaDraft, tenant: str = "ten_a", **kw: object) -> WriteDraft:
    return WriteDraft(
        tenant_id=tenant,
        request_id=request_id,
        source="writes",
        accepted_at="2026-02-10T15:00:00.000000Z",
        items=list(items),
        **kw,  # type: ignore[arg-type]
    )


def test_commit_stores_items_and_the_request(storage: Storage) -> None:
    [result] = storage.writes.commit([draft("req_1", delta("a"), delta("b", -5))])
    assert not isinstance(result, Exception)
    assert result.stored == (0, 1)
    view = storage.writes.request("ten_a", "req_1", 100, 0)
    assert view is not None
    assert [(i, kind, r.key, r.amount, r.status) for i, kind, r in view.items] == [
        (0, "stored", "a", 10, "queued"),
        (1, "stored", "b", -5, "queued"),
    ]
    assert view.pending_count == 2
    assert len(storage.log.queued(10)) == 2


def test_identical_repeat_is_not_stored_twice(storage: Storage) -> None:
    storage.writes.commit([draft("req_1", delta("a"))])
    [result] = storage.writes.commit([draft("req_2", delta("a"), delta("b"))])
    assert not isinstance(result, Exception)
    assert result.stored == (1,) and result.duplicates == (0,)
    assert len(storage.log.queued(10)) == 2
    view = storage.writes.request("ten_a", "req_2", 100, 0)
    assert view is not None and [kind for _, kind, _ in view.items] == ["duplicate", "stored"]


def test_repeat_with_different_content_is_a_conflict_naming_fields(storage: Storage) -> None:
    storage.writes.commit([draft("req_1", delta("a"))])
    [result] = storage.writes.commit([draft("req_2", delta("b"), delta("a", 11, customer="x"))])
    assert isinstance(result, DuplicateKeyError)
    assert result.fields == ("accountId", "bits")
    assert result.message.startswith('items[1]: key "a" already exists with different accountId, bits')
    assert storage.writes.request("ten_a", "req_2", 100, 0) is None
    assert len(storage.log.queued(10)) == 1  # item "b" was not stored either


def test_duplicate_key_within_one_request(storage: Storage) -> None:
    [same] = storage.writes.commit([draft("req_1", delta("a"), delta("a"))])
    assert not isinstance(same, Exception) and same.duplicates == (1,)
    [different] = storage.writes.commit([draft("req_2", delta("z"), delta("z", 99))])
    assert isinstance(different, DuplicateKeyError)


def test_a_repeat_in_one_request_is_judged_by_time_as_a_stored_original_is(storage: Storage) -> None:
    """A first item without occurredAt keeps its acceptance time: a repeat giving another time
    conflicts, as it would in a later request; a repeat without one is the same delta."""
    untimed = delta("t", occurred_at="2026-02-10T15:00:00.000000Z", explicit_time=False)
    [given] = storage.writes.commit(
        [draft("req_1", untimed, delta("t", occurred_at="2020-01-01T00:00:00.000000Z"))]
    )
    assert isinstance(given, DuplicateKeyError) and given.fields == ("occurredAt",)
    assert "items[1]" in given.message
    [later] = storage.writes.commit([draft("req_2", untimed, delta("t", explicit_time=False))])
    assert not isinstance(later, Exception) and later.stored == (0,) and later.duplicates == (1,)
    [across] = storage.writes.commit([draft("req_3", delta("t", occurred_at="2020-01-01T00:00:00.000000Z"))])
    assert isinstance(across, DuplicateKeyError) and across.fields == ("occurredAt",)


def test_one_refused_request_does_not_fail_its_group(storage: Storage) -> None:
    storage.writes.commit([draft("req_0", delta("a"))])
    results = storage.writes.commit(
        [draft("req_1", delta("b")), draft("req_2", delta("a", 77)), draft("req_3", delta("c"))]
    )
    assert [type(r).__name__ for r in results] == ["WriteResult", "DuplicateKeyError", "WriteResult"]
    assert sorted(d.key for d in storage.log.queued(10)) == ["a", "b", "c"]


def test_tenants_do_not_share_keys(storage: Storage) -> None:
    storage.writes.commit([draft("req_1", delta("a"), tenant="ten_a")])
    [other] = storage.writes.commit([draft("req_2", delta("a", 999), tenant="ten_b")])
    assert not isinstance(other, Exception) and other.stored == (0,)
    assert storage.writes.request("ten_b", "req_1", 10, 0) is None
    assert storage.writes.record("ten_b", "req_1", 0) is None
    assert storage.writes.record("ten_a", "req_1", 0) is not None


def test_idempotency_key_replays_and_refuses_other_bodies(storage: Storage) -> None:
    claim = IdempotencyClaim("idem-1", "POST /api/v1/writes", b"h" * 32)

    def render(result: object) -> StoredResponse:
        return StoredResponse(202, '{"first": true}')

    [first] = storage.writes.commit([draft("req_1", delta("a"), idempotency=claim, render=render)])
    assert not isinstance(first, Exception) and first.replay is None
    [again] = storage.writes.commit([draft("req_2", delta("a"), idempotency=claim, render=render)])
    assert not isinstance(again, Exception)
    assert again.replay == StoredResponse(202, '{"first": true}')
    other = IdempotencyClaim("idem-1", "POST /api/v1/writes", b"x" * 32)
    [mismatch] = storage.writes.commit([draft("req_3", delta("q"), idempotency=other, render=render)])
    assert isinstance(mismatch, IdempotencyMismatchError)
    assert storage.writes.request("ten_a", "req_2", 10, 0) is None


def _race(stores: Sequence[Storage], round_: int) -> list[WriteResult | Exception]:
    """The same request, with one ``Idempotency-Key``, committed through each store at once."""
    claim = IdempotencyClaim(f"idem-race-{round_}", "POST /api/v1/writes", b"h" * 32)
    start = threading.Barrier(len(stores))
    outcomes: list[WriteResult | Exception] = []

    def send(store: Storage, request_id: str) -> None:
        reply = StoredResponse(202, f'{{"requestId": "{request_id}"}}')
        start.wait()
        outcomes.extend(
            store.writes.commit(
                [draft(request_id, delta(f"race-{round_}"), idempotency=claim, render=lambda _: reply)]
            )
        )

    threads = [
        threading.Thread(target=send, args=(store, f"req_{n}_{round_}")) for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_one_idempotency_key_sent_to_two_processes_at_once_is_stored_once(database_url: str) -> None:
    # Two storages on one database stand for two API processes (or hosts) behind a balancer:
    # neither knows the other has the key in flight; the key's row decides.
    stores = [open_storage(database_url), open_storage(database_url)]
    try:
        for round_ in range(10):
            outcomes = _race(stores, round_)
            results = [o for o in outcomes if isinstance(o, WriteResult)]
            assert len(results) == 2, outcomes  # neither failed
            stored = [r for r in results if r.replay is None]
            replayed = [r for r in results if r.replay is not None]
            assert len(stored) == 1 and len(replayed) == 1
            assert replayed[0].replay == StoredResponse(202, f'{{"requestId": "{stored[0].request_id}"}}')
        assert len(stores[0].log.queued(100)) == 10  # one delta a round
    finally:
        for store in stores:
            store.close()


def test_plan_allowance_is_never_overshot_by_concurrent_writers(storage: Storage) -> None:
    outcomes: list[object] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(5):
            [result] = storage.writes.commit(
                [draft(f"req_{n}_{i}", delta(f"k{n}-{i}-1"), delta(f"k{n}-{i}-2"), allowance=25)]
            )
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, PlanLimitExceededError)]
    assert len(accepted) == 12 and len(refused) == 8  # 12 requests x 2 = 24 <= 25; the 13th passes it
    assert len(storage.log.queued(1000)) == 24


_METER_UPSERT = """INSERT INTO usage_months (tenant_id, period, accepted_count) VALUES (%s, '2026-02', 1)
    ON CONFLICT (tenant_id, period) DO UPDATE SET accepted_count = usage_months.accepted_count + 1"""


@pytest.mark.parametrize("allowance", [None, 1000], ids=["unmetered", "metered"])
def test_two_processes_take_the_meter_rows_in_one_order(pg_url: str, allowance: int | None) -> None:
    # Another API process's group has metered ten_a and goes on to ten_b, while this one holds
    # ten_b before ten_a (its requests came in that order): taken in request order, each waits
    # for the other, and PostgreSQL ends one transaction with a deadlock.
    storage = open_storage(pg_url)
    outcomes: list[object] = []

    def commit() -> None:
        try:
            outcomes.extend(
                storage.writes.commit(
                    [
                        draft("req_b", delta("b"), tenant="ten_b", allowance=allowance),
                        draft("req_a", delta("a"), allowance=allowance),
                    ]
                )
            )
        except Exception as exc:  # the deadlock, reported below
            outcomes.append(exc)

    try:
        with psycopg.connect(pg_url) as other, psycopg.connect(pg_url, autocommit=True) as watch:
            other.execute(_METER_UPSERT, ("ten_a",))
            writer = threading.Thread(target=commit)
            writer.start()
            deadline = time.monotonic() + 10
            blocker = other.info.backend_pid
            while not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (blocker,)
            ).fetchone():
                assert time.monotonic() < deadline, "the group never waited for ten_a's row"
                time.sleep(0.01)
            # The deadlock's other half, if there is one: refused before PostgreSQL would break the
            # circle (deadlock_timeout, 1 s), which ends the group, whose commit would then be run again.
            other.execute("SET lock_timeout = '500ms'")
            other.execute(_METER_UPSERT, ("ten_b",))
            other.commit()
            writer.join(timeout=10)
        assert [type(o) for o in outcomes] == [WriteResult, WriteResult], outcomes
        assert storage.writes.used("ten_a", "2026-02") == 2
        assert storage.writes.used("ten_b", "2026-02") == 2
    finally:
        storage.close()


_INSERT_DELTA = """INSERT INTO deltas (tenant_id, request_id, item_index, item_key, customer_id, amount,
    reason, occurred_at, period, accepted_at, salt, status) VALUES ('ten_a', %s, 0, %s, 'cust-1', 10, '',
    '2026-02-10T14:30:00.000000Z', '2026-02', '2026-02-10T15:00:00.000000Z', %s, 'queued')"""


def _blocked_by(conn: psycopg.Connection[object], watch: psycopg.Connection[object]) -> None:
    """Wait until some transaction waits for one of ``conn``'s."""
    deadline = time.monotonic() + 10
    while not watch.execute(
        "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (conn.info.backend_pid,)
    ).fetchone():
        assert time.monotonic() < deadline, "the group never waited for the other's key"
        time.sleep(0.01)


def test_a_group_ended_by_a_deadlock_is_run_again(pg_url: str) -> None:
    # Another API process stores keys b and then a (a client's retries of two writes, sent to
    # both processes), while this one's group stores a and then b: each waits for the other's
    # key, and PostgreSQL ends the group that waited first. Nothing of it was committed: it is
    # run again, and once the other has committed, its requests are repeats of those keys.
    storage = open_storage(pg_url)
    outcomes: list[object] = []

    def commit() -> None:
        try:
            outcomes.extend(storage.writes.commit([draft("req_a", delta("a")), draft("req_b", delta("b"))]))
        except Exception as exc:  # the deadlock, reported below
            outcomes.append(exc)

    try:
        with psycopg.connect(pg_url) as other, psycopg.connect(pg_url, autocommit=True) as watch:
            # PostgreSQL ends the transaction whose wait first outlasts its deadlock_timeout; on a
            # busy machine that was now and then this one, the group's check coming late. Here it
            # waits far longer than the group's second before it looks, so the group is ended.
            other.execute("SET deadlock_timeout = '30s'")
            other.execute(_INSERT_DELTA, ("req_other_b", "b", b"s" * 16))
            writer = threading.Thread(target=commit)
            writer.start()
            _blocked_by(other, watch)  # the group holds a and waits for b
            other.execute(_INSERT_DELTA, ("req_other_a", "a", b"s" * 16))  # the circle closes
            other.commit()
            writer.join(timeout=20)
        assert [type(o) for o in outcomes] == [WriteResult, WriteResult], outcomes
        results = [o for o in outcomes if isinstance(o, WriteResult)]
        assert [(r.stored, r.duplicates) for r in results] == [((), (0,)), ((), (0,))]
    finally:
        storage.close()


def test_a_request_whose_keys_other_processes_store_while_it_tries_is_stored_once_they_have(
    pg_url: str,
) -> None:
    # A client's overlapping retries sent to four API processes: each of three others stores one
    # of this request's keys, and commits while this one waits for it on the key index. Every try
    # of this request then meets a key that was not stored when it looked; each try sees one more
    # of them, and the try that sees them all stores the rest, rather than the group failing.
    storage = open_storage(pg_url)
    outcomes: list[object] = []

    def commit() -> None:
        try:
            outcomes.extend(
                storage.writes.commit([draft("req_r", delta("a"), delta("b"), delta("c"), delta("d"))])
            )
        except Exception as exc:  # reported below
            outcomes.append(exc)

    try:
        with (
            psycopg.connect(pg_url) as first,
            psycopg.connect(pg_url) as second,
            psycopg.connect(pg_url) as third,
            psycopg.connect(pg_url, autocommit=True) as watch,
        ):
            first.execute(_INSERT_DELTA, ("req_other_b", "b", b"s" * 16))
            writer = threading.Thread(target=commit)
            writer.start()
            _blocked_by(first, watch)  # the group waits for b
            second.execute(_INSERT_DELTA, ("req_other_c", "c", b"s" * 16))
            first.commit()
            _blocked_by(second, watch)  # its next try, for c
            third.execute(_INSERT_DELTA, ("req_other_d", "d", b"s" * 16))
            second.commit()
            _blocked_by(third, watch)  # and the one after, for d
            third.commit()
            writer.join(timeout=20)
        assert [type(o) for o in outcomes] == [WriteResult], outcomes
        [result] = [o for o in outcomes if isinstance(o, WriteResult)]
        assert (result.stored, result.duplicates) == ((0,), (1, 2, 3))
    finally:
        storage.close()


def test_another_body_under_a_key_committed_between_its_two_reads_is_an_idempotency_mismatch(
    pg_url: str,
) -> None:
    # Another process commits a request under the same Idempotency-Key, with the same item key
    # but another amount, after this request found the key unused and before it looked up its
    # item keys (PostgreSQL reads what was committed when each statement began). The table lock
    # holds this request's item-key lookup back until the other has committed.
    storage = open_storage(pg_url)
    mine = IdempotencyClaim("idem-between", "POST /api/v1/writes", b"x" * 32)
    outcomes: list[object] = []

    def commit() -> None:
        try:
            outcomes.extend(storage.writes.commit([draft("req_mine", delta("k1", 20), idempotency=mine)]))
        except Exception as exc:  # reported below
            outcomes.append(exc)

    try:
        with psycopg.connect(pg_url) as other, psycopg.connect(pg_url, autocommit=True) as watch:
            other.execute("LOCK TABLE deltas IN ACCESS EXCLUSIVE MODE")
            other.execute(_INSERT_DELTA, ("req_other", "k1", b"s" * 16))
            other.execute(
                """INSERT INTO idempotency_keys (tenant_id, idem_key, route, body_hash, status_code,
                       response, created_at)
                   VALUES ('ten_a', %s, %s, %s, 202, '{}', '2026-02-10T15:00:00Z')""",
                (mine.key, mine.route, b"h" * 32),
            )
            writer = threading.Thread(target=commit)
            writer.start()
            _blocked_by(other, watch)  # past the Idempotency-Key's read, waiting to read deltas
            other.commit()
            writer.join(timeout=20)
        assert [type(o) for o in outcomes] == [IdempotencyMismatchError], outcomes
    finally:
        storage.close()


def test_a_lost_database_is_unavailable_not_an_internal_error(pg_url: str) -> None:
    storage = open_storage(pg_url)
    storage.engine.close()  # every later connection attempt fails, as when the server is gone
    with pytest.raises(StorageUnavailableError):
        storage.ping()
    with pytest.raises(StorageUnavailableError):
        storage.writes.commit([draft("req_lost", delta("a"))])


def test_a_repeat_of_a_refused_item_is_refused_too_and_spares_the_group(storage: Storage) -> None:
    storage.checkpoints.lock("chk_t", "ten_a", "cust-1", "2026-02", b"n" * 32, "2026-03-01T00:00:00.000000Z")
    locked = delta("dupL", occurred_at="2026-02-20T00:00:00.000000Z")
    batch = WriteDraft(
        tenant_id="ten_a",
        request_id="req_batch",
        source="batch",
        accepted_at="2026-03-02T00:00:00.000000Z",
        items=[locked, locked, delta("fine", occurred_at="2026-03-01T00:00:00.000000Z")],
        per_item_conflicts=True,
    )
    neighbour = draft("req_next", delta("other", customer="cust-2"))
    result, other = storage.writes.commit([batch, neighbour])
    assert not isinstance(result, Exception) and not isinstance(other, Exception)
    assert result.stored == (2,)
    assert sorted(c.index for c in result.conflicts) == [0, 1]
    assert all(c.error.code == "PERIOD_LOCKED" for c in result.conflicts)
    assert other.stored == (0,)


def test_a_group_of_plain_and_other_requests_answers_each_in_order(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = IdempotencyClaim("idem-g", "POST /api/v1/writes", b"h" * 32)
    storage.writes.commit([draft("req_0", delta("old"))])
    together: list[list[str]] = []
    grouped = WriteStore._commit_plain

    def spy(self: WriteStore, tx: Tx, drafts: Sequence[WriteDraft]) -> list[WriteResult]:
        together.append([d.request_id for d in drafts])
        return grouped(self, tx, drafts)

    monkeypatch.setattr(WriteStore, "_commit_plain", spy)
    results = storage.writes.commit(
        [
            draft("req_1", delta("p1"), delta("p2", -3)),  # plain
            draft("req_2", delta("old")),  # repeats a stored key: identical, not stored again
            draft("req_3", delta("i1"), idempotency=claim, render=lambda _: StoredResponse(202, "{}")),
            draft("req_4", delta("twice")),  # the same key as req_5: one is stored, one repeats
            draft("req_5", delta("twice")),
            draft("req_6", delta("p3", customer="cust-2")),  # plain
            draft("req_7", delta("p4", customer="cust-2")),  # plain, stored with req_6
        ]
    )
    # req_1 and req_2 are tried together; the key index refuses req_2's stored key, so req_1
    # goes on its own and req_2 one by one.
    assert together == [["req_1", "req_2"], ["req_1"], ["req_6", "req_7"]]
    assert [r.request_id if not isinstance(r, Exception) else r for r in results] == [
        "req_1", "req_2", "req_3", "req_4", "req_5", "req_6", "req_7",
    ]  # fmt: skip
    stored = [r.stored for r in results if not isinstance(r, Exception)]
    duplicates = [r.duplicates for r in results if not isinstance(r, Exception)]
    assert stored == [(0, 1), (), (0,), (0,), (), (0,), (0,)]
    assert duplicates == [(), (0,), (), (), (0,), (), ()]
    # Stored, and so sealed, in request order whichever way each request went.
    assert [d.key for d in storage.log.queued(100)] == ["old", "p1", "p2", "i1", "twice", "p3", "p4"]
    assert storage.writes.used("ten_a", "2026-02") == 7
    view = storage.writes.request("ten_a", "req_1", 10, 0)
    assert view is not None and view.pending_count == 2 and view.item_count == 2


def test_plain_requests_are_stored_without_looking_their_keys_up(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[list[str]] = []
    together: list[list[str]] = []
    taken, grouped = WriteStore._taken, WriteStore._commit_plain

    def spy_taken(self: WriteStore, tx: Tx, tenant_id: str, keys: list[str]) -> list[str]:
        looked_up.append(keys)
        return taken(self, tx, tenant_id, keys)

    def spy_grouped(self: WriteStore, tx: Tx, drafts: Sequence[WriteDraft]) -> list[WriteResult]:
        together.append([d.request_id for d in drafts])
        return grouped(self, tx, drafts)

    monkeypatch.setattr(WriteStore, "_taken", spy_taken)
    monkeypatch.setattr(WriteStore, "_commit_plain", spy_grouped)
    results = storage.writes.commit([draft("req_1", delta("a")), draft("req_2", delta("b", -2))])
    assert [r.stored for r in results if not isinstance(r, Exception)] == [(0,), (0,)]
    assert looked_up == [] and together == [["req_1", "req_2"]]
    # A stored key is found by the insert; only then are the run's keys looked up, and the
    # requests around the one that holds it are stored together, in request order.
    together.clear()
    results = storage.writes.commit(
        [
            draft("req_3", delta("c")),
            draft("req_4", delta("a")),
            draft("req_5", delta("d"), delta("e")),
            draft("req_6", delta("f")),
        ]
    )
    assert looked_up == [["c", "a", "d", "e", "f"]]
    assert together == [["req_3", "req_4", "req_5", "req_6"], ["req_3"], ["req_5", "req_6"]]
    assert [(r.stored, r.duplicates) for r in results if not isinstance(r, Exception)] == [
        ((0,), ()),
        ((), (0,)),
        ((0, 1), ()),
        ((0,), ()),
    ]
    assert [d.key for d in storage.log.queued(10)] == ["a", "b", "c", "d", "e", "f"]
    assert storage.writes.used("ten_a", "2026-02") == 6


def test_plain_requests_fall_back_one_by_one_when_a_key_appears_meanwhile(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process may store a key between the group's check and its insert: the unique
    index refuses the grouped insert, and each request is then answered as if alone."""
    storage.writes.commit([draft("req_0", delta("late", 5))])
    monkeypatch.setattr(type(storage.writes), "_taken", lambda self, tx, tenant_id, keys: [])
    results = storage.writes.commit([draft("req_1", delta("new")), draft("req_2", delta("late", 6))])
    assert [type(r).__name__ for r in results] == ["WriteResult", "DuplicateKeyError"]
    [repeat] = storage.writes.commit([draft("req_3", delta("late", 5))])
    assert not isinstance(repeat, Exception) and repeat.duplicates == (0,) and repeat.stored == ()
    assert sorted(d.key for d in storage.log.queued(10)) == ["late", "new"]
    assert storage.writes.used("ten_a", "2026-02") == 2


def test_plain_requests_go_one_by_one_when_storing_them_together_fails(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped = WriteStore._commit_plain

    def broken(self: WriteStore, tx: Tx, drafts: Sequence[WriteDraft]) -> list[WriteResult]:
        grouped(self, tx, drafts)  # stored, then rolled back with the savepoint
        raise RuntimeError("a bug in the grouped path")

    monkeypatch.setattr(WriteStore, "_commit_plain", broken)
    results = storage.writes.commit([draft("req_1", delta("a")), draft("req_2", delta("b", -2))])
    assert [r.stored for r in results if not isinstance(r, Exception)] == [(0,), (0,)]
    assert [d.key for d in storage.log.queued(10)] == ["a", "b"]
    assert storage.writes.used("ten_a", "2026-02") == 2


def _end_the_transaction(storage: Storage, tx: Tx) -> None:
    """What a failover, a restart or a network cut does to a PostgreSQL transaction (its
    session ends), and what SQLite does by itself after a disk-full or I/O error (it rolls
    the transaction back)."""
    if storage.engine.dialect.name == "postgresql":
        import psycopg  # noqa: PLC0415 - PostgreSQL's side only

        backend = tx.scalar("SELECT pg_backend_pid()")
        url = storage.engine.url  # type: ignore[attr-defined]
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (backend,))
    else:
        tx.execute("ROLLBACK")


def _drafts_of_their_own(kind: str) -> list[WriteDraft]:
    """Three requests that are each stored in a savepoint of their own: on a metered plan (the
    allowance is checked per request), or each with an idempotency key."""
    drafts = []
    for name in ("a", "b", "c"):
        extra: dict[str, object] = {"allowance": 100_000}
        if kind == "idempotent":
            extra = {
                "idempotency": IdempotencyClaim(f"idem-lost-{name}", "POST /api/v1/writes", b"h" * 32),
                "render": lambda result: StoredResponse(202, "{}"),
            }
        drafts.append(draft(f"req_lost_{name}", delta(f"lost-{name}"), **extra))
    return drafts


@pytest.mark.parametrize("kind", ["metered", "idempotent"])
def test_a_group_whose_transaction_ends_midway_reports_nothing_stored(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """When the group's transaction itself is lost after its first request was stored in its
    savepoint, no request may be reported stored (a 202): the whole group fails as the
    database being unavailable (503, retry), and nothing is kept."""
    stored_once = WriteStore._commit_one_with_retry
    calls: list[str] = []

    def then_lose_it(self: WriteStore, tx: Tx, one: WriteDraft, group: object) -> object:
        outcome = stored_once(self, tx, one, group)  # type: ignore[arg-type]
        calls.append(one.request_id)
        if len(calls) == 1:
            _end_the_transaction(storage, tx)
        return outcome

    monkeypatch.setattr(WriteStore, "_commit_one_with_retry", then_lose_it)
    with pytest.raises(StorageUnavailableError):
        storage.writes.commit(_drafts_of_their_own(kind))
    monkeypatch.undo()
    with storage.engine.read() as tx:
        kept = tx.scalar("SELECT COUNT(*) FROM deltas WHERE item_key IN ('lost-a', 'lost-b', 'lost-c')")
    assert kept == 0


def test_the_queue_is_read_through_its_index_in_order(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequencer's queue read asks for index order (PostgreSQL's planner would otherwise
    gather and sort every queued row for each seal), and its plan reads the queue's index."""
    storage.writes.commit([draft("req_1", *(delta(f"k{i:02}", customer=f"c{i % 7}") for i in range(50)))])
    postgres = storage.engine.dialect.name == "postgresql"
    with storage.engine.read() as tx:
        kind = type(tx)
    ordered = kind.execute_in_index_order
    plans: list[str] = []

    def spy(self: Tx, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        explained = ordered(self, ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql, params)
        plans.append(" ".join(str(row[0] if postgres else row[3]) for row in explained))
        return ordered(self, sql, params)

    monkeypatch.setattr(kind, "execute_in_index_order", spy)
    assert [d.key for d in storage.log.queued(20)] == [f"k{i:02}" for i in range(20)]
    [plan] = plans
    assert ("Index Scan using deltas_queued" if postgres else "USING INDEX deltas_queued") in plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan
