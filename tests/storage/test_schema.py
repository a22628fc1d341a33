"""The schema's migrations carry what an older version stored into what this one reads."""

from __future__ import annotations

from trueup.storage import open_storage
from trueup.storage.idempotency import IdempotencyClaim
from trueup.storage.migrate import migrate
from trueup.storage.schema import MIGRATIONS

_TIME = "2026-05-10T00:00:00.000000Z"
_REQUEST = """INSERT INTO write_requests (id, tenant_id, source, item_count, stored_count,
        pending_count, accepted_at, verified_at) VALUES (?, 'ten_a', 'writes', ?, ?, 0, ?, ?)"""
_DELTA = """INSERT INTO deltas (tenant_id, request_id, item_index, item_key, customer_id, amount,
        reason, occurred_at, period, accepted_at, salt, status, leaf_index, sealed_size, verified_at, failure)
    VALUES ('ten_a', ?, ?, ?, 'c1', 5, '', ?, '2026-05', ?, ?, ?, ?, ?, ?, ?)"""


def test_upgrading_counts_the_items_an_older_version_failed_at_sealing_off_their_requests(
    database_url: str,
) -> None:
    """Before schema 6 a request kept no count of its items that failed at sealing (a period
    locked after acceptance); its state is worked out from that count, so without it such a
    request read "verified" after the upgrade while its items read "failed"."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:5])
        with storage.engine.write() as tx:
            # (request, [item statuses]); verified items were sealed, failed ones not.
            for request, statuses in (
                ("req_part", ["failed", "verified", "failed"]),
                ("req_none", ["failed", "failed"]),
                ("req_all", ["verified"]),
            ):
                tx.execute(_REQUEST, (request, len(statuses), len(statuses), _TIME, _TIME))
                for index, status in enumerate(statuses):
                    sealed = status == "verified"
                    tx.execute(
                        _DELTA,
                        (
                            request, index, f"{request}-{index}", _TIME, _TIME, b"s" * 16, status,
                            tx.scalar("SELECT COUNT(*) FROM deltas WHERE leaf_index IS NOT NULL")
                            if sealed else None,
                            1 if sealed else None, _TIME if sealed else None,
                            None if sealed else "period 2026-05 was locked",
                        ),
                    )  # fmt: skip

        migrate(storage.engine)
        assert migrate(storage.engine) == []  # once

        counts = {
            request: storage.writes.request("ten_a", request, 10, 0)
            for request in ("req_part", "req_none", "req_all")
        }
        assert {request: view.failed_count for request, view in counts.items() if view is not None} == {
            "req_part": 2,
            "req_none": 2,
            "req_all": 0,
        }
    finally:
        storage.close()


_LOCK = """INSERT INTO period_checkpoints (id, tenant_id, customer_id, period, proof_root, nonce,
        tree_size, opening_balance, credits, debits, deltas_count, created_at)
    VALUES (?, 'ten_a', 'c1', ?, ?, ?, 0, 0, 0, 0, 0, ?)"""


def test_upgrading_counts_the_locks_an_older_version_took(database_url: str) -> None:
    """Locks are counted since schema 6, and the audit refuses fewer stored locks than counted
    (a deleted lock would unlock its month). Those taken before were not counted, so one of
    them deleted went unnoticed: the upgrade counts them."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:5])
        with storage.engine.write() as tx:
            for n, period in enumerate(("2026-01", "2026-02", "2026-03")):
                tx.execute(_LOCK, (f"chk_{n}", period, bytes([n]) * 32, b"n" * 16, _TIME))
        migrate(storage.engine)
        assert storage.checkpoints.locks_taken() == 3
    finally:
        storage.close()


def test_upgrading_never_lowers_the_count_of_locks(database_url: str) -> None:
    # Three locks counted, one of them deleted since: the count keeps saying 3, so the audit
    # still finds the deleted one.
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:9])
        with storage.engine.write() as tx:
            for n, period in enumerate(("2026-01", "2026-02")):
                tx.execute(_LOCK, (f"chk_{n}", period, bytes([n]) * 32, b"n" * 16, _TIME))
            tx.execute("INSERT INTO counters (name, value) VALUES ('period_locks', 3)")
        migrate(storage.engine)
        assert storage.checkpoints.locks_taken() == 3
    finally:
        storage.close()


def test_upgrading_makes_a_retry_an_older_version_stored_wait_for_its_queued_originals(
    database_url: str,
) -> None:
    """Before schema 8 a retry whose every item repeated a delta still queued was stored with
    nothing to seal and no wait, so its verification.completed never came. One whose originals
    are still queued waits after the upgrade; one whose originals were settled, or that was
    completed, is left as it was."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:7])
        with storage.engine.write() as tx:
            for request, status, sealed in (("req_queued", "queued", None), ("req_sealed", "verified", 0)):
                tx.execute(_REQUEST, (request, 1, 1, _TIME, _TIME if sealed is not None else None))
                size = None if sealed is None else 1
                at = None if sealed is None else _TIME
                tx.execute(
                    _DELTA, (request, 0, request, _TIME, _TIME, b"s" * 16, status, sealed, size, at, None)
                )
            seqs = {str(row[0]): int(row[1]) for row in tx.execute("SELECT request_id, seq FROM deltas")}
            for retry, original, verified_at in (
                ("req_retry_queued", "req_queued", None),
                ("req_retry_settled", "req_sealed", None),
                ("req_retry_done", "req_queued", _TIME),
            ):
                tx.execute(_REQUEST, (retry, 1, 0, _TIME, verified_at))
                tx.execute(
                    "INSERT INTO write_duplicates (request_id, item_index, original_seq) VALUES (?, 0, ?)",
                    (retry, seqs[original]),
                )
        migrate(storage.engine)
        with storage.engine.read() as tx:
            waiting = [tuple(row) for row in tx.execute("SELECT request_id, tenant_id FROM write_waits")]
        assert waiting == [("req_retry_queued", "ten_a")]
    finally:
        storage.close()


_KEY = """INSERT INTO idempotency_keys (tenant_id, idem_key, route, body_hash, status_code, response,
        created_at) VALUES ('ten_a', ?, 'POST /api/v1/balance/delta', ?, 202, ?, ?)"""


def test_upgrading_finds_an_idempotency_key_an_older_version_stored_with_whitespace_after_it(
    database_url: str,
) -> None:
    """An older version kept the space a client or proxy sent after an Idempotency-Key as part
    of the key; this one drops it, so a retry after the upgrade looked for another key and was
    stored again (an emit without referenceId as a second delta). The upgrade stores the key as
    it is now read, unless that would merge it with another stored key."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:11])
        with storage.engine.write() as tx:
            for key in ("spaced ", "\ttabbed\t", "both ", "both", "twice ", "twice  ", "   "):
                tx.execute(_KEY, (key, b"h" * 32, f'{{"key":"{key}"}}', _TIME))
        migrate(storage.engine)
        assert migrate(storage.engine) == []  # once

        def stored(key: str) -> str | None:
            claim = IdempotencyClaim(key=key, route="POST /api/v1/balance/delta", body_hash=b"h" * 32)
            response = storage.writes.stored_response("ten_a", claim)
            return None if response is None else response.body

        assert stored("spaced") == '{"key":"spaced "}'
        assert stored("tabbed") == '{"key":"\ttabbed\t"}'
        assert stored("both") == '{"key":"both"}'  # the key as sent without the space stands
        assert stored("twice") is None  # two keys would be one: neither is changed
        with storage.engine.read() as tx:
            keys = sorted(str(row[0]) for row in tx.execute("SELECT idem_key FROM idempotency_keys"))
        assert keys == ["   ", "both", "both ", "spaced", "tabbed", "twice ", "twice  "]
    finally:
        storage.close()


def test_upgrading_leaves_room_on_the_pages_of_accounts_and_months_on_postgresql(database_url: str) -> None:
    """Schema 15: a seal's updates of account and month rows can stay on their pages (heap-only)
    on PostgreSQL; SQLite has no such setting, and records the version all the same."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:14])
        assert migrate(storage.engine, MIGRATIONS[:15]) == [15]
        with storage.engine.read() as tx:
            assert tx.scalar("SELECT MAX(version) FROM schema_migrations") == 15
            if storage.engine.dialect.name != "postgresql":
                return
            options = dict(
                tx.execute(
                    """SELECT relname, array_to_string(reloptions, ',') FROM pg_class
                        WHERE relnamespace = current_schema()::regnamespace
                          AND relname IN ('accounts', 'account_months', 'deltas')"""
                )
            )
        assert options == {"accounts": "fillfactor=70", "account_months": "fillfactor=70", "deltas": None}
    finally:
        storage.close()


def test_upgrading_records_where_the_log_was_when_seals_began_to_keep_closed_months(
    database_url: str,
) -> None:
    """Schema 16: a Trueup built before 2026-12-07 06:55 UTC sealed deltas of a month closed by a
    later lock; the audit warns of those sealed before the upgrade and fails on any sealed after
    it, so the migration records the log's size then (0 on a new database)."""
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:15])
        with storage.engine.write() as tx:
            for size in (0, 3, 7):
                tx.execute(
                    """INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint)
                       VALUES (?, ?, 0, '')""",
                    (size, bytes(32)),
                )
        assert migrate(storage.engine) == [16]
        assert storage.checkpoints.closed_months_checked_from() == 7
    finally:
        storage.close()


def test_migration_16_run_again_keeps_the_size_it_recorded(database_url: str) -> None:
    """A schema rewound by hand (a restore of the bookkeeping table, say) runs migration 16
    again: the size recorded at the first upgrade stands, not the log's size now."""
    storage = open_storage(database_url)
    try:
        with storage.engine.write() as tx:
            tx.execute("UPDATE counters SET value = 42 WHERE name = 'closed_months_from'")
            tx.execute("DELETE FROM schema_migrations WHERE version = 16")
        assert migrate(storage.engine) == [16]
        assert storage.checkpoints.closed_months_checked_from() == 42
    finally:
        storage.close()


def test_a_new_database_keeps_closed_months_from_its_first_leaf(database_url: str) -> None:
    storage = open_storage(database_url)
    try:
        assert storage.checkpoints.closed_months_checked_from() == 0
    finally:
        storage.close()
