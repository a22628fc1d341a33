"""Account numbers: what the per-customer indexes of ``deltas`` are keyed by (migration 7)."""

from __future__ import annotations

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.service.container import Services
from trueup.storage import StorageError, open_storage
from trueup.storage.balance_records import Scope
from trueup.storage.migrate import SchemaTooNewError, migrate
from trueup.storage.schema import MIGRATIONS

_SEALED = """INSERT INTO deltas (tenant_id, request_id, item_index, item_key, customer_id, amount,
        reason, metadata, occurred_at, period, accepted_at, salt, status, leaf_index, sealed_size,
        verified_at, cust_seq, running_balance, month_seq, month_credits, month_debits)
    VALUES (?, ?, ?, ?, ?, ?, '', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_TIME = "2026-02-10T14:30:00.000000Z"


def test_upgrading_numbers_the_accounts_and_files_their_sealed_deltas_under_them(database_url: str) -> None:
    storage = open_storage(database_url, run_migrations=False)
    try:
        migrate(storage.engine, MIGRATIONS[:6])
        # (tenant, customer, leaf, amount, running balance); None: still queued.
        rows = [
            ("ten_a", "c1", 0, 5, 5),
            ("ten_a", "c2", 1, 7, 7),
            ("ten_a", "c1", 2, -2, 3),
            ("ten_b", "c1", 3, 11, 11),
            ("ten_a", "c1", None, 4, None),
        ]
        with storage.engine.write() as tx:
            for n, (tenant, customer, leaf, amount, running) in enumerate(rows):
                sealed = leaf is not None
                tx.execute(
                    _SEALED,
                    (
                        tenant, f"req{n}", 0, f"k{n}", customer, amount, _TIME, "2026-02", _TIME,
                        b"s" * 16, "verified" if sealed else "queued", leaf, 4 if sealed else None,
                        _TIME if sealed else None, *((1, running, 1, max(amount, 0), min(amount, 0))
                                                     if sealed else (None,) * 5),
                    ),
                )  # fmt: skip
            for tenant, customer, balance, count, last in (
                ("ten_b", "c1", 11, 1, 3),
                ("ten_a", "c2", 7, 1, 1),
                ("ten_a", "c1", 3, 2, 2),
            ):
                tx.execute(
                    """INSERT INTO accounts (tenant_id, customer_id, balance, delta_count,
                           first_activity, last_activity, last_leaf_index)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    (tenant, customer, balance, count, _TIME, _TIME, last),
                )

        assert migrate(storage.engine) == [m.version for m in MIGRATIONS[6:]]

        with storage.engine.read() as tx:
            accounts = tx.execute(
                "SELECT tenant_id, customer_id, account_no FROM accounts ORDER BY account_no"
            )
            deltas = tx.execute("SELECT item_key, account_no FROM deltas ORDER BY item_key")
        assert [tuple(row) for row in accounts] == [
            ("ten_a", "c1", 1),
            ("ten_a", "c2", 2),
            ("ten_b", "c1", 3),
        ]
        assert [tuple(row) for row in deltas] == [("k0", 1), ("k1", 2), ("k2", 1), ("k3", 3), ("k4", None)]
        with storage.balances.snapshot() as snapshot:
            assert [d.leaf_index for d in snapshot.page("ten_a", "c1", Scope(), 10, 0)] == [0, 2]
            assert [d.leaf_index for d in snapshot.page("ten_b", "c1", Scope(), 10, 0)] == [3]
            assert [d.leaf_index for d in snapshot.by_amount("ten_a", "c2", Scope(), 7, 5)] == [1]
            assert snapshot.page("ten_b", "c2", Scope(), 10, 0) == []
    finally:
        storage.close()


def test_a_seal_numbers_each_new_account_once_and_files_its_deltas_under_it(services: Services) -> None:
    who = principal_for(services)
    write(
        services, who, {"key": "a", "accountId": "c1", "bits": 1}, {"key": "b", "accountId": "c2", "bits": 2}
    )
    seal_all(services)
    write(
        services, who, {"key": "c", "accountId": "c3", "bits": 3}, {"key": "d", "accountId": "c1", "bits": 4}
    )
    seal_all(services)
    with services.storage.engine.read() as tx:
        accounts = tx.execute("SELECT customer_id, account_no FROM accounts ORDER BY customer_id")
        deltas = tx.execute("SELECT item_key, account_no FROM deltas ORDER BY item_key")
    assert [tuple(row) for row in accounts] == [("c1", 1), ("c2", 2), ("c3", 3)]
    assert [tuple(row) for row in deltas] == [("a", 1), ("b", 2), ("c", 3), ("d", 1)]
    with services.storage.balances.snapshot() as snapshot:
        assert [d.amount for d in snapshot.page(who.tenant_id, "c1", Scope(), 10, 0)] == [1, 4]


def test_a_database_migrated_by_a_newer_version_is_refused(database_url: str) -> None:
    """An older process beside a newer schema would seal rows the newer queries do not find."""
    storage = open_storage(database_url)
    try:
        with storage.engine.write() as tx:
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (len(MIGRATIONS) + 1, "from the future", _TIME),
            )
        with pytest.raises(SchemaTooNewError, match=f"schema version {len(MIGRATIONS) + 1}, newer"):
            migrate(storage.engine)
        with pytest.raises(SchemaTooNewError):
            open_storage(database_url).close()
    finally:
        storage.close()


def test_a_seal_refuses_an_account_an_older_version_sealed_without_a_number(services: Services) -> None:
    """What a sequencer from before schema 7 leaves behind, sealing beside a newer one."""
    who = principal_for(services)
    write(services, who, {"key": "a", "accountId": "c1", "bits": 1})
    seal_all(services)
    with services.storage.engine.write() as tx:
        tx.execute("UPDATE accounts SET account_no = NULL")
        tx.execute("UPDATE deltas SET account_no = NULL")
    write(services, who, {"key": "b", "accountId": "c1", "bits": 2})
    with pytest.raises(StorageError, match="'c1' has no account number: a Trueup older than schema"):
        seal_all(services)
    assert services.storage.log.queue_stats()[0] == 1  # nothing sealed, nothing lost
