"""``trueup audit`` catches tampering with stored deltas, leaves, nodes and heads."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from tests.service.conftest import principal_for, seal_all, sealed_log, write
from trueup.cli import audit as cli_audit
from trueup.core.ids import record_id
from trueup.proof import TreeHead
from trueup.service import audit as audit_module
from trueup.service.audit import audit_log
from trueup.service.container import Services
from trueup.service.signing import load_or_create_signer
from trueup.storage.checkpoints import CheckpointRecord
from trueup.storage.sqlite import SQLiteEngine


def _tamper(services: Services, sql: str, params: tuple[object, ...] = ()) -> None:
    with services.storage.engine.write() as tx:
        tx.execute(sql, params)


def test_audit_catches_an_edited_amount(services: Services) -> None:
    sealed_log(services)
    _tamper(services, "UPDATE deltas SET amount = amount + 1 WHERE leaf_index = 17")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and report.problem.startswith("leaf a_17:")
    assert "does not hash to the sealed leaf" in report.problem


def test_audit_catches_a_deleted_row(services: Services) -> None:
    sealed_log(services)
    _tamper(services, "DELETE FROM deltas WHERE leaf_index = 12")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and "leaf 12 is missing" in report.problem


def test_audit_catches_a_queued_delta_marked_verified(services: Services) -> None:
    """The API shows such a delta as VERIFIED, though no seal gave it a leaf."""
    who = principal_for(services)
    write(services, who, {"key": "sealed", "accountId": "c1", "bits": 5})
    seal_all(services)
    request_id = write(services, who, {"key": "queued", "accountId": "c1", "bits": 7})
    _tamper(services, "UPDATE deltas SET status = 'verified' WHERE item_key = 'queued'")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem == (
        f"delta {record_id(request_id, 0)}: stored as verified, but no seal gave it a leaf (its state "
        "was edited)"
    )


def test_audit_catches_deleting_the_newest_rows(services: Services) -> None:
    sealed_log(services)
    _tamper(services, "DELETE FROM deltas WHERE leaf_index >= 28")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and "tree head 30 is signed but only 28" in report.problem


def test_audit_catches_an_altered_node_and_head(services: Services) -> None:
    sealed_log(services)
    _tamper(services, "UPDATE tree_nodes SET hash = ? WHERE level = 2 AND idx = 1", (b"\x00" * 32,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == "tree node (level 2, index 1) differs from the rebuilt one"


def test_audit_catches_a_forged_head_signature(services: Services) -> None:
    sealed_log(services)
    head = services.storage.log.head()
    assert head is not None
    forged = head.checkpoint.replace(f"\n{head.size}\n", f"\n{head.size}\n", 1)[:-10] + "AAAAAAAAA\n"
    _tamper(services, "UPDATE tree_heads SET checkpoint = ? WHERE tree_size = ?", (forged, head.size))
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and report.problem.startswith("tree head 30: checkpoint signature")


def test_audit_catches_a_stored_head_timestamp_other_than_the_signed_one(services: Services) -> None:
    """The API serves the stored timestamp (treeHead.timestamp, recordedAt), not the note's."""
    sealed_log(services)
    head = services.storage.log.head()
    assert head is not None
    _tamper(services, "UPDATE tree_heads SET timestamp_ms = 1 WHERE tree_size = ?", (head.size,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == (
        f"tree head 30: its stored timestamp 1 is not the signed checkpoint's {head.timestamp_ms}"
    )


def test_audit_catches_a_head_signed_with_the_log_key_for_another_log(services: Services) -> None:
    sealed_log(services)
    head = services.storage.log.head()
    assert head is not None
    settings = services.settings
    signer = load_or_create_signer(settings.resolved_signing_key_path, settings.log_origin)
    elsewhere = signer.sign("evil.example/log", TreeHead(head.size, head.root, head.timestamp_ms))
    _tamper(services, "UPDATE tree_heads SET checkpoint = ? WHERE tree_size = ?", (elsewhere, head.size))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == (
        "tree head 30: checkpoint signature: checkpoint origin 'evil.example/log' is not the "
        "expected origin 'localhost/trueup'"
    )


@pytest.mark.parametrize(
    ("tampering", "problem"),
    [
        pytest.param(
            "UPDATE accounts SET balance = balance + 5 WHERE tenant_id = ? AND customer_id = 'c1'",
            "account 'c1': stored balance",
            id="edited running balance",
        ),
        # Balance queries find a customer's deltas by the account number: a delta moved to
        # another customer's number, or an account renumbered, would silently leave pages.
        pytest.param(
            """UPDATE deltas SET account_no = (SELECT account_no FROM accounts
                                                WHERE tenant_id = ? AND customer_id = 'c2')
               WHERE leaf_index = 13""",
            "leaf a_13: account number",
            id="delta filed under another account",
        ),
        pytest.param(
            "UPDATE accounts SET account_no = account_no + 100 WHERE tenant_id = ? AND customer_id = 'c1'",
            "account 'c1': number",
            id="account renumbered",
        ),
    ],
)
def test_audit_catches_tampered_account_figures(services: Services, tampering: str, problem: str) -> None:
    tenant = sealed_log(services)
    _tamper(services, tampering, (tenant,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem is not None and report.problem.startswith(problem)


def test_audit_warns_of_a_head_signed_earlier_than_a_smaller_one(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head the key signed at an earlier time than the head before it (the clock went back,
    under a Trueup that did not hold head times back then) is no mismatch: the tree is right
    and the key signed it. The audit passes and says so, in the report and on the command line."""
    sealed_log(services)
    heads = services.storage.log.heads(-1, 10)
    earlier, later = heads[1], heads[2]  # sizes 10 and 20
    settings = services.settings
    signer = load_or_create_signer(settings.resolved_signing_key_path, settings.log_origin)
    backdated_ms = earlier.timestamp_ms - 1_000
    checkpoint = signer.sign(settings.log_origin, TreeHead(later.size, later.root, backdated_ms))
    _tamper(
        services,
        "UPDATE tree_heads SET checkpoint = ?, timestamp_ms = ? WHERE tree_size = ?",
        (checkpoint, backdated_ms, later.size),
    )
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert report.warnings == (
        "1 signed tree heads carry an earlier time than a smaller head before them (the clock went "
        f"back while they were signed): tree head 20 at {backdated_ms} ms, after head 10 at "
        f"{earlier.timestamp_ms} ms",
    )
    where = ["--data-dir", str(settings.data_dir), "--database-url", settings.resolved_database_url]
    assert cli_audit.run(where) == 0
    printed = capsys.readouterr()
    assert printed.err == f"audit warning: {report.warnings[0]}\n"
    assert printed.out.startswith("audit passed: 30 leaves, 4 signed tree heads")


def test_audit_names_the_database_it_read_when_the_variable_chose_it_over_the_data_dir(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--data-dir`` of a restored copy while TRUEUP_DATABASE_URL names the live SQLite file
    audits the live one (the variable chooses the database, the directory only the key files):
    the command says so, and its verdict names the database it read. On PostgreSQL a data
    directory for the key files is the usual layout, and only the verdict names the database."""
    sealed_log(services)
    live = services.settings.resolved_database_url
    restored = tmp_path / "restored"
    restored.mkdir()
    for name in ("signing-key.pem", "key-pepper"):
        shutil.copy2(tmp_path / name, restored / name)
    monkeypatch.setenv("TRUEUP_DATABASE_URL", live)
    assert cli_audit.run(["--data-dir", str(restored)]) == 0
    printed = capsys.readouterr()
    assert printed.err == (
        f"trueup: the database is TRUEUP_DATABASE_URL's ({live}), not one in --data-dir {restored}, "
        "which gives the key files only; give --database-url, or unset the variable, to choose another\n"
        if live.startswith("sqlite")
        else ""
    )
    assert printed.out == (
        f"audit passed: 30 leaves, 4 signed tree heads, every node and balance rebuilt and equal, in {live}\n"
    )
    if live.startswith("sqlite"):  # the variable naming the directory's own file is nothing to say
        assert cli_audit.run(["--data-dir", str(tmp_path)]) == 0
        assert capsys.readouterr().err == ""


def test_audit_of_heads_in_time_order_warns_of_nothing(services: Services) -> None:
    sealed_log(services)
    assert audit_log(services.storage, services.log.verifier_key).warnings == ()


def _locked_log(services: Services) -> None:
    """Four deltas of one customer in three seals, January locked after them."""
    who = principal_for(services)
    write(
        services,
        who,
        {"key": "jan-1", "accountId": "c1", "bits": 2000, "occurredAt": "2026-01-05T10:00:00Z"},
        {"key": "jan-2", "accountId": "c1", "bits": -300, "occurredAt": "2026-01-10T10:00:00Z"},
    )
    seal_all(services)
    write(
        services,
        who,
        {"key": "feb-1", "accountId": "c1", "bits": -1000, "occurredAt": "2026-02-10T10:00:00Z"},
    )
    seal_all(services)
    write(
        services, who, {"key": "feb-2", "accountId": "c1", "bits": -500, "occurredAt": "2026-02-11T10:00:00Z"}
    )
    seal_all(services)
    services.balances.lock_period(who, {"customerId": "c1", "period": "2026-01"})
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert (report.leaves, report.heads) == (4, 4)  # heads of sizes 0, 2, 3 and 4


@pytest.mark.parametrize(
    ("tampering", "problem"),
    [
        pytest.param(
            "UPDATE period_checkpoints SET opening_balance = 5000",
            "states opening balance 5000, credits 2000, debits -300 over 2 deltas; the deltas sealed "
            "before tree size 4 give 0, 2000, -300 over 2",
            id="checkpoint opening balance",
        ),
        pytest.param(
            "UPDATE period_checkpoints SET credits = credits + 100",
            "states opening balance 0, credits 2100",
            id="checkpoint credits",
        ),
        pytest.param(
            "UPDATE period_checkpoints SET deltas_count = 7",
            "states opening balance 0, credits 2000, debits -300 over 7 deltas",
            id="checkpoint count",
        ),
        pytest.param(
            "UPDATE period_checkpoints SET proof_root = nonce",
            "its proof root is not that of its month's leaves",
            id="checkpoint proof root",
        ),
        pytest.param(
            "UPDATE period_checkpoints SET tree_size = 9",
            "no signed tree head of its size 9 is stored",
            id="checkpoint head",
        ),
    ],
)
def test_audit_checks_every_period_checkpoint(services: Services, tampering: str, problem: str) -> None:
    _locked_log(services)
    _tamper(services, tampering)
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem is not None and report.problem.startswith("period checkpoint chk_")
    assert "('c1', 2026-01): " + problem in report.problem


def test_audit_names_a_delta_of_a_locked_month_sealed_after_its_lock(services: Services) -> None:
    """A lock moved back to a head before one of its month's deltas: those figures would be
    the month's at that head, but a delta of the month was sealed after it, which a lock stops."""
    who = principal_for(services)
    write(
        services, who, {"key": "jan-1", "accountId": "c1", "bits": 2000, "occurredAt": "2026-01-05T10:00:00Z"}
    )
    seal_all(services)
    write(
        services, who, {"key": "jan-2", "accountId": "c1", "bits": -300, "occurredAt": "2026-01-10T10:00:00Z"}
    )
    seal_all(services)
    record, _ = services.balances.lock_period(who, {"customerId": "c1", "period": "2026-01"})
    _tamper(
        services,
        """UPDATE period_checkpoints SET tree_size = 1, credits = 2000, debits = 0, deltas_count = 1
           WHERE id = ?""",
        (record.id,),
    )
    report = audit_log(services.storage, services.log.verifier_key)
    assert (
        report.problem
        == f"period checkpoint {record.id} ('c1', 2026-01): 1 delta of its month was sealed after it"
    )


def test_audit_names_a_delta_of_an_earlier_month_sealed_after_a_lock(services: Services) -> None:
    """A lock closes the months before its own: its opening balance sums them. A lock moved back
    to a head before two December deltas (figures and all made to fit that head) passes every
    check of its own month, but the December deltas were sealed after it, which the lock stops."""
    record = _lock_after_december_deltas(services)
    assert audit_log(services.storage, services.log.verifier_key).ok
    _move_lock_back(services, record)
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == (
        f"period checkpoint {record.id} ('c1', 2026-01): 2 deltas of 2025-12, a month it closes, were "
        "sealed after it (a seal fails a delta of a closed month)"
    )


def test_audit_warns_of_earlier_months_an_older_version_sealed_after_a_lock(services: Services) -> None:
    """Before 2026-12-07 06:55 UTC a seal let a delta of a month before a locked one in. In a database
    upgraded at size 4 (the counter migration 16 sets), two such deltas sealed before the upgrade
    are a warning, not a mismatch; upgraded at size 3, the one sealed after it is a mismatch."""
    record = _lock_after_december_deltas(services)
    _move_lock_back(services, record)
    _tamper(services, "UPDATE counters SET value = 4 WHERE name = 'closed_months_from'")
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert report.warnings == (
        "1 period checkpoints have deltas of months before their own sealed after them, before the "
        "database's upgrade to schema version 16 (a Trueup built before 2026-12-07 06:55 UTC refused "
        "only a locked month's own deltas; such a checkpoint's openingBalance leaves them out): period "
        f"checkpoint {record.id} "
        "('c1', 2026-01): 2 deltas of the months before it were sealed after it",
    )
    _tamper(services, "UPDATE counters SET value = 3 WHERE name = 'closed_months_from'")
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == (
        f"period checkpoint {record.id} ('c1', 2026-01): 1 delta of 2025-12, a month it closes, was "
        "sealed after it (a seal fails a delta of a closed month)"
    )


def _lock_after_december_deltas(services: Services) -> CheckpointRecord:
    """Deltas of December 2025 at leaves 0, 2 and 3, of January 2026 at 1; January locked at 4."""
    who = principal_for(services)
    for key, bits, occurred_at in [
        ("dec-1", 700, "2025-12-03T10:00:00Z"),
        ("jan-1", 2000, "2026-01-05T10:00:00Z"),
        ("dec-2", 40, "2025-12-20T10:00:00Z"),
        ("dec-3", 5, "2025-12-21T10:00:00Z"),
    ]:
        write(services, who, {"key": key, "accountId": "c1", "bits": bits, "occurredAt": occurred_at})
        seal_all(services)
    record, _ = services.balances.lock_period(who, {"customerId": "c1", "period": "2026-01"})
    assert (record.tree_size, record.opening_balance) == (4, 745)
    return record


def _move_lock_back(services: Services, record: CheckpointRecord) -> None:
    """The lock as if taken at size 2, its opening balance that head's: only dec-1 before it."""
    _tamper(
        services,
        "UPDATE period_checkpoints SET tree_size = 2, opening_balance = 700 WHERE id = ?",
        (record.id,),
    )


_POSTGRES_REFUSES = {
    "UPDATE deltas SET amount = 'abc' WHERE leaf_index = 1",
    "UPDATE period_checkpoints SET tree_size = 'four'",
    "UPDATE accounts SET balance = 'abc'",
}
_ON_POSTGRES = {  # it rounds a fraction into a bigint column: then the figure is wrong
    "UPDATE account_months SET credits = 1.5 WHERE period = '2026-01'": (
        "account 'c1', 2026-01: stored month totals credits 2, debits -300 over 2, but its deltas "
        "give credits 2000, debits -300 over 2"
    ),
}


@pytest.mark.parametrize(
    ("tampering", "problem"),
    [
        pytest.param(
            "DELETE FROM period_checkpoints",
            "1 period locks were taken, but 0 period checkpoints are stored (a lock was deleted, which "
            "unlocks its month)",
            id="lock deleted",
        ),
        pytest.param(
            "DELETE FROM tree_heads WHERE tree_size = 4",
            "leaves a_3 to a_3 are stored as sealed, but no signed tree head holds them (a head was "
            "deleted, or they were added)",
            id="newest head deleted",
        ),
        pytest.param(
            "DELETE FROM tree_heads WHERE tree_size = 0",
            "tree head 0: missing (the first stored head has size 2); every log stores its empty head "
            "when it is first opened, so it was deleted",
            id="the empty head deleted",
        ),
        pytest.param(
            "DELETE FROM tree_heads WHERE tree_size = 2",
            "leaf a_0: sealed under tree head 2, but the first signed head that holds it is 3 (a head was "
            "deleted, the delta's head edited, or a head's size)",
            id="a head deleted",
        ),
        pytest.param(
            "UPDATE deltas SET sealed_size = 4 WHERE leaf_index = 0",
            "leaf a_0: sealed under tree head 4, but the first signed head that holds it is 2",
            id="a delta's head edited",
        ),
        pytest.param(
            "INSERT INTO tree_nodes (level, idx, hash) VALUES (0, 4, ?)",
            "8 tree nodes are stored, but a tree of 4 leaves has 7: nodes were added beyond the signed tree",
            id="a node beyond the tree",
        ),
        pytest.param(
            "DELETE FROM tree_nodes WHERE level = 0 AND idx = 2",
            "leaf a_2: its leaf node is missing (it was deleted, or the delta was added)",
            id="a leaf node deleted",
        ),
        pytest.param(
            "DELETE FROM tree_nodes WHERE level = 1 AND idx = 0",
            "tree node (level 1, index 0) is missing (it was deleted)",
            id="a node deleted",
        ),
        pytest.param(
            "UPDATE deltas SET status = 'failed' WHERE leaf_index = 1",
            "leaf a_1: sealed, but its state is 'failed'",
            id="a sealed delta marked failed",
        ),
        pytest.param(
            "UPDATE accounts SET last_leaf_index = 0",
            "account 'c1': its newest delta is stored as a_0, but it is a_3",
            id="an account's newest leaf",
        ),
        pytest.param(
            "UPDATE accounts SET first_activity = '2020-01-01T00:00:00.000000Z'",
            "account 'c1': its first activity is stored as 2020-01-01T00:00:00.000000Z, but its first "
            "delta was verified at 20",
            id="an account's first activity",
        ),
        pytest.param(
            "UPDATE accounts SET last_activity = '2099-01-01T00:00:00.000000Z'",
            "account 'c1': its last activity is stored as 2099-01-01T00:00:00.000000Z, but its newest "
            "delta was verified at 20",
            id="an account's last activity",
        ),
        pytest.param(
            "UPDATE accounts SET delta_count = delta_count + 1",
            "account 'c1': stored balance 200 over 5 deltas, but its deltas sum to 200 over 4",
            id="an account's count",
        ),
        pytest.param(
            "DELETE FROM accounts",
            "account 'c1': no stored balance, but its deltas sum to 200 over 4 (the account's row was "
            "deleted)",
            id="an account's row deleted",
        ),
        pytest.param(
            "UPDATE account_months SET debits = debits - 1 WHERE period = '2026-02'",
            "account 'c1', 2026-02: stored month totals credits 0, debits -1501 over 2, but its deltas "
            "give credits 0, debits -1500 over 2",
            id="a month's total",
        ),
        pytest.param(
            "DELETE FROM account_months WHERE period = '2026-01'",
            "account 'c1', 2026-01: no stored month totals, but its deltas give credits 2000, debits -300 "
            "over 2 (the month's row was deleted)",
            id="a month's row deleted",
        ),
        pytest.param(
            "UPDATE deltas SET running_balance = NULL WHERE leaf_index = 1",
            "leaf a_1: its stored running_balance is None, not a value it can hold",
            id="a running figure missing",
        ),
        pytest.param(
            "UPDATE deltas SET amount = 'abc' WHERE leaf_index = 1",
            "leaf a_1: its stored amount is 'abc', not a value it can hold",
            id="a text amount",
        ),
        pytest.param(
            "UPDATE period_checkpoints SET tree_size = 'four'",
            "period checkpoint 'chk_",
            id="a text checkpoint size",
        ),
        pytest.param(
            "UPDATE accounts SET balance = 'abc'",
            "account 'c1': its stored balance is 'abc', not a value it can hold",
            id="a text account balance",
        ),
        pytest.param(
            "UPDATE account_months SET credits = 1.5 WHERE period = '2026-01'",
            "account 'c1', 2026-01: its stored credits is 1.5, not a value it can hold",
            id="a fraction in a month total",
        ),
        pytest.param(
            "UPDATE deltas SET salt = ? WHERE leaf_index = 1",
            "leaf a_1: the stored delta makes no leaf: ",
            id="a short salt",
        ),
        pytest.param(
            "UPDATE deltas SET occurred_at = '2026-01-30T00:00:00.000000Z' || 'x' WHERE leaf_index = 1",
            "leaf a_1: the stored delta makes no leaf: ",
            id="a malformed time",
        ),
        pytest.param(
            "INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, checkpoint) VALUES (-1, ?, 0, 'x')",
            "tree head -1: a tree size is never negative (the row was added or its size edited)",
            id="a head of a negative size",
        ),
        pytest.param(
            """INSERT INTO deltas (seq, tenant_id, request_id, item_index, item_key, customer_id, amount,
                   reason, metadata, occurred_at, period, accepted_at, salt, status, leaf_index,
                   sealed_size, verified_at, failure, cust_seq, running_balance, month_seq,
                   month_credits, month_debits, account_no)
               SELECT seq + 1000, tenant_id, request_id, item_index + 1000, item_key || '-copy',
                   customer_id, amount, reason, metadata, occurred_at, period, accepted_at, salt,
                   status, -1, sealed_size, verified_at, failure, cust_seq, running_balance, month_seq,
                   month_credits, month_debits, account_no
               FROM deltas WHERE leaf_index = 3""",
            "leaf a_-1: a leaf index is never negative (the row was added or its index edited)",
            id="a sealed delta of a negative leaf index",
        ),
    ],
)
def test_audit_names_tampering_with_heads_nodes_and_rows(
    services: Services, tampering: str, problem: str
) -> None:
    """Each of these passed the audit, or stopped it with a traceback, before it checked them."""
    _locked_log(services)
    if not isinstance(services.storage.engine, SQLiteEngine):
        if tampering in _POSTGRES_REFUSES:  # PostgreSQL keeps a column's type itself
            with pytest.raises(psycopg.errors.DataError):
                _tamper(services, tampering)
            return
        problem = _ON_POSTGRES.get(tampering, problem)
    params: tuple[object, ...] = ()
    if "?" in tampering:
        params = (b"\x00" * 32,) if "tree_nodes" in tampering else (b"\x01\x02",)
    _tamper(services, tampering, params)
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and report.problem.startswith(problem), report.problem


def test_an_edited_origin_on_the_newest_head_is_a_mismatch_not_a_setting(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit refuses (exit 2) a TRUEUP_LOG_ORIGIN other than the one the log's key signed
    its checkpoints for; a checkpoint edited to name another origin is no such signature, and
    the audit names it (exit 1) instead of advising to adopt it."""
    _locked_log(services)
    settings = services.settings
    head = services.storage.log.head()
    assert head is not None
    edited = head.checkpoint.replace(settings.log_origin, "evil.example/log", 1)
    _tamper(services, "UPDATE tree_heads SET checkpoint = ? WHERE tree_size = ?", (edited, head.size))
    where = ["--data-dir", str(settings.data_dir), "--database-url", settings.resolved_database_url]
    assert cli_audit.run(where) == 1
    assert capsys.readouterr().err.startswith("audit FAILED: tree head 4: checkpoint signature: ")
    # Signed by the log's key for that origin, it is a setting: exit 2, with the advice.
    signer = load_or_create_signer(settings.resolved_signing_key_path, "evil.example/log")
    resigned = signer.sign("evil.example/log", TreeHead(head.size, head.root, head.timestamp_ms))
    _tamper(services, "UPDATE tree_heads SET checkpoint = ? WHERE tree_size = ?", (resigned, head.size))
    assert cli_audit.run(where) == 2
    assert "audit with TRUEUP_LOG_ORIGIN=evil.example/log, or give --key" in capsys.readouterr().err


def test_an_audit_reads_one_state_of_a_log_that_keeps_growing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seals landing while an audit walks the log (a server at work) are not part of it: read
    in steps, the nodes and totals read last held leaves the walk never saw, and the audit
    failed a sound log."""
    sealed_log(services)  # 30 leaves
    monkeypatch.setattr(audit_module, "_CHUNK", 7)
    who = principal_for(services)
    landed: list[int] = []

    def seal(size: int) -> None:
        write(services, who, {"key": f"later-{size}", "accountId": "c1", "bits": 5})
        seal_all(services)
        landed.append(size)

    def seal_meanwhile(size: int) -> None:  # after each chunk of the walk, as a server would
        sealer = threading.Thread(target=seal, args=(size,))
        sealer.start()
        sealer.join()

    report = audit_log(services.storage, services.log.verifier_key, progress=seal_meanwhile)
    assert report.ok, report.problem
    assert (report.leaves, report.heads) == (30, 4)
    assert len(landed) == 5  # 7 + 7 + 7 + 7 + 2 leaves, a seal after each
    assert audit_log(services.storage, services.log.verifier_key).leaves == 35  # they are there
