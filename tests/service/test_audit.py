"""``trueup audit`` catches tampering with stored deltas, leaves, nodes and heads."""

from __future__ import annotations

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.cli import audit as cli_audit
from trueup.proof import TreeHead
from trueup.service.audit import audit_log
from trueup.service.container import Services
from trueup.service.signing import load_or_create_signer


def _sealed_log(services: Services) -> str:
    who = principal_for(services)
    for batch in range(3):
        write(
            services,
            who,
            *[{"key": f"k{batch}-{i}", "accountId": f"c{i % 3}", "bits": i + 1} for i in range(10)],
        )
        seal_all(services)
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert (report.leaves, report.heads) == (30, 4)  # the empty head and three seals
    return who.tenant_id


def _tamper(services: Services, sql: str, params: tuple[object, ...] = ()) -> None:
    with services.storage.engine.write() as tx:
        tx.execute(sql, params)


def test_audit_catches_an_edited_amount(services: Services) -> None:
    _sealed_log(services)
    _tamper(services, "UPDATE deltas SET amount = amount + 1 WHERE leaf_index = 17")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and report.problem.startswith("leaf a_17:")
    assert "does not hash to the sealed leaf" in report.problem


def test_audit_catches_a_deleted_row(services: Services) -> None:
    _sealed_log(services)
    _tamper(services, "DELETE FROM deltas WHERE leaf_index = 12")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and "leaf 12 is missing" in report.problem


def test_audit_catches_deleting_the_newest_rows(services: Services) -> None:
    _sealed_log(services)
    _tamper(services, "DELETE FROM deltas WHERE leaf_index >= 28")
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and "tree head 30 is signed but only 28" in report.problem


def test_audit_catches_an_altered_node_and_head(services: Services) -> None:
    _sealed_log(services)
    _tamper(services, "UPDATE tree_nodes SET hash = ? WHERE level = 2 AND idx = 1", (b"\x00" * 32,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == "tree node (level 2, index 1) differs from the rebuilt one"


def test_audit_catches_a_forged_head_signature(services: Services) -> None:
    _sealed_log(services)
    head = services.storage.log.head()
    assert head is not None
    forged = head.checkpoint.replace(f"\n{head.size}\n", f"\n{head.size}\n", 1)[:-10] + "AAAAAAAAA\n"
    _tamper(services, "UPDATE tree_heads SET checkpoint = ? WHERE tree_size = ?", (forged, head.size))
    report = audit_log(services.storage, services.log.verifier_key)
    assert not report.ok
    assert report.problem is not None and report.problem.startswith("tree head 30: checkpoint signature")


def test_audit_catches_a_stored_head_timestamp_other_than_the_signed_one(services: Services) -> None:
    """The API serves the stored timestamp (treeHead.timestamp, recordedAt), not the note's."""
    _sealed_log(services)
    head = services.storage.log.head()
    assert head is not None
    _tamper(services, "UPDATE tree_heads SET timestamp_ms = 1 WHERE tree_size = ?", (head.size,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem == (
        f"tree head 30: its stored timestamp 1 is not the signed checkpoint's {head.timestamp_ms}"
    )


def test_audit_catches_a_head_signed_with_the_log_key_for_another_log(services: Services) -> None:
    _sealed_log(services)
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
    tenant = _sealed_log(services)
    _tamper(services, tampering, (tenant,))
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.problem is not None and report.problem.startswith(problem)


def test_audit_warns_of_a_head_signed_earlier_than_a_smaller_one(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head the key signed at an earlier time than the head before it (the clock went back,
    under a Trueup that did not hold head times back then) is no mismatch: the tree is right
    and the key signed it. The audit passes and says so, in the report and on the command line."""
    _sealed_log(services)
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


def test_audit_of_heads_in_time_order_warns_of_nothing(services: Services) -> None:
    _sealed_log(services)
    assert audit_log(services.storage, services.log.verifier_key).warnings == ()
