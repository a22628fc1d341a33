"""Derive, compare and period checkpoints over real storage (both backends)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.core.compare import to_wire
from trueup.core.errors import (
    CheckpointNotFoundError,
    ConflictError,
    CustomerNotFoundError,
    DuplicateKeyError,
    InvalidScopeError,
    NotFoundError,
    PeriodLockedError,
    UnavailableError,
    ValidationError,
)
from trueup.proof import verify_checkpoint
from trueup.service.container import Services
from trueup.service.keys import Principal
from trueup.storage.balances import BalanceSnapshot


def delta(key: str, bits: int, when: str, customer: str = "cust_12345", reason: str = "") -> dict[str, Any]:
    return {"key": key, "accountId": customer, "bits": bits, "occurredAt": when, "reason": reason}


def seed_history(services: Services) -> Principal:
    """Starting 50,000; January +2,000 / -2,000; February -1,000 and a -500 debit: neutral 48,500."""
    who = principal_for(services)
    write(
        services,
        who,
        delta("jan-1", 2000, "2026-01-05T10:00:00Z", reason="Top-up"),
        delta("jan-2", -2000, "2026-01-20T10:00:00Z", reason="January usage"),
    )
    write(
        services,
        who,
        delta("feb-1", -1000, "2026-02-10T14:30:00Z", reason="Monthly subscription charge"),
        delta("feb-2", -500, "2026-02-11T09:15:00Z", reason="Overage"),
    )
    seal_all(services)
    return who


def test_seed_compare_example_comes_out_exactly(services: Services) -> None:
    who = seed_history(services)
    result, _, _ = services.balances.compare(
        who,
        {
            "customerId": "cust_12345",
            "yourBalance": 48500,
            "theirBalance": 49000,
            "startingBalance": 50000,
        },
    )
    wire = to_wire(result)
    assert wire["neutralBalance"] == 48500
    assert wire["matchesYours"] is True and wire["matchesTheirs"] is False
    report = wire["discrepancyReport"]
    assert isinstance(report, dict)
    assert report["amount"] == 500 and report["divergentParty"] == "theirs"
    assert report["resolution"] == "Your balance is correct. The counterparty is overstated by 500."
    assert report["recommendation"] == (
        "Share this report with the counterparty. The discrepancy originates in the February 2026 "
        "period where a 500-unit debit was not reflected in their records."
    )
    [window] = report["windowsToReview"]
    assert {k: window[k] for k in ("period", "expectedNet", "theirNet", "difference")} == {
        "period": "2026-02",
        "expectedNet": -1500,
        "theirNet": -1000,
        "difference": 500,
    }
    assert window["candidates"][0]["anchorId"] == "a_3"


def test_compare_without_discrepancy_has_no_report(services: Services) -> None:
    who = seed_history(services)
    result, _, _ = services.balances.compare(
        who,
        {"customerId": "cust_12345", "yourBalance": 48500, "theirBalance": 48500, "startingBalance": 50000},
    )
    assert "discrepancyReport" not in to_wire(result)


def test_derive_sums_every_verified_delta_with_month_windows(services: Services) -> None:
    who = seed_history(services)
    derived = services.balances.derive(who, "cust_12345", {"startingBalance": "50000"})
    assert derived.balance == 48500 and derived.summary.count == 4
    assert [(m.period, m.credits, m.debits, m.net, m.count) for m in derived.summary.months] == [
        ("2026-01", 2000, -2000, 0, 2),
        ("2026-02", 0, -1500, -1500, 2),
    ]
    assert [d.amount for d in derived.deltas] == [2000, -2000, -1000, -500]
    assert derived.newest is not None and derived.newest.leaf_index == 3


def test_latest_checkpoint_passed_back_returns_only_newer_deltas(services: Services) -> None:
    who = seed_history(services)
    first = services.balances.derive(who, "cust_12345", {})
    latest = "0x" + first.head.root.hex()
    write(services, who, delta("mar-1", 700, "2026-03-01T00:00:00Z"))
    seal_all(services)
    resumed = services.balances.derive(
        who, "cust_12345", {"startingBalance": str(first.balance), "startingCheckpoint": latest}
    )
    assert [d.amount for d in resumed.deltas] == [700]
    assert resumed.balance == first.balance + 700
    by_anchor = services.balances.derive(
        who, "cust_12345", {"startingCheckpoint": "a_2", "startingCheckpointType": "anchorId"}
    )
    assert [d.amount for d in by_anchor.deltas] == [-500, 700]
    # A delta's id under the default type (itemsRoot) or proofRoot says which type it needs.
    for kind in (None, "proofRoot"):
        asked = {"startingCheckpoint": "a_2"} | ({} if kind is None else {"startingCheckpointType": kind})
        with pytest.raises(
            ValidationError, match=r'"a_2" is a delta.s id, which needs startingCheckpointType=anchorId'
        ) as refused:
            services.balances.derive(who, "cust_12345", asked)
        assert "with itemsRoot," not in str(refused.value)  # names no type the caller did not send


def test_a_period_checkpoint_under_a_delta_type_says_which_types_take_it(services: Services) -> None:
    who = seed_history(services)
    locked, _ = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-01"})
    for kind in ("anchorId", "recordId"):
        with pytest.raises(ValidationError) as refused:
            services.balances.derive(
                who, "cust_12345", {"startingCheckpoint": locked.id, "startingCheckpointType": kind}
            )
        assert str(refused.value) == (
            f'startingCheckpoint: "{locked.id}" is a period checkpoint\'s id, which needs '
            "startingCheckpointType=itemsRoot (the default) or proofRoot; anchorId and recordId "
            "take a delta's id"
        )


def test_scopes_period_dates_and_as_of(services: Services) -> None:
    who = seed_history(services)
    february = services.balances.derive(who, "cust_12345", {"period": "2026-02"})
    assert (february.balance, february.summary.count) == (-1500, 2)
    custom = services.balances.derive(
        who, "cust_12345", {"timePreset": "custom", "startDate": "2026-01-10", "endDate": "2026-02-11"}
    )
    assert [d.amount for d in custom.deltas] == [-2000, -1000]
    as_of = services.balances.derive(who, "cust_12345", {"asOf": "2026-02-10T14:30:00Z"})
    assert as_of.balance == -1000
    with pytest.raises(InvalidScopeError):
        services.balances.derive(who, "cust_12345", {"period": "2026-02", "startingCheckpoint": "a_1"})
    with pytest.raises(ValidationError, match="startingBalance: must be an integer"):
        services.balances.derive(who, "cust_12345", {"startingBalance": "1.5"})


def test_unknown_customer_and_checkpoint_are_404s(services: Services) -> None:
    who = seed_history(services)
    with pytest.raises(CustomerNotFoundError):
        services.balances.derive(who, "nobody", {})
    with pytest.raises(CheckpointNotFoundError):
        services.balances.derive(who, "cust_12345", {"startingCheckpoint": "0x" + "ab" * 32})
    for beyond_64_bits in ("a_9223372036854775808", "a_" + "9" * 30):  # well formed, no such leaf
        with pytest.raises(CheckpointNotFoundError):
            services.balances.derive(
                who,
                "cust_12345",
                {"startingCheckpoint": beyond_64_bits, "startingCheckpointType": "anchorId"},
            )
        with pytest.raises(NotFoundError):
            services.views.record(who, beyond_64_bits)
        with pytest.raises(NotFoundError):
            services.log.inclusion(who, beyond_64_bits, None)
    other = principal_for(services, "globex")
    with pytest.raises(CustomerNotFoundError):
        services.balances.derive(other, "cust_12345", {})


def test_a_log_is_signed_from_its_first_open_and_reads_without_a_head_are_503s(services: Services) -> None:
    # Opening a new log stores its first (empty) head, signed: reads work before any seal.
    head = services.storage.log.head()
    assert head is not None and head.size == 0
    verify_checkpoint(head.checkpoint, services.log.verifier_key, origin="localhost/trueup")
    who = principal_for(services)
    write(services, who, delta("early", 5, "2026-01-05T10:00:00Z"))
    assert services.balances.derive(who, "cust_12345", {}).summary.total == 0  # queued, not sealed
    # A log with no signed head at all (its heads removed by hand) has nothing to be read against.
    with services.storage.engine.write() as tx:
        tx.execute("DELETE FROM tree_heads")
    body = {"customerId": "cust_12345", "yourBalance": 5, "theirBalance": 0, "startingBalance": 0}
    for attempt in (
        lambda: services.balances.derive(who, "cust_12345", {}),
        lambda: services.balances.compare(who, body),
        lambda: services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-01"}),
    ):
        with pytest.raises(UnavailableError, match="no signed tree head yet") as caught:
            attempt()
        assert caught.value.retry_after_seconds == 1
    assert services.balances.checkpoints(who, None, {}, 10, 0) == ([], 0)
    seal_all(services)
    assert services.balances.derive(who, "cust_12345", {}).summary.total == 5


def test_paging_in_both_orders(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *[delta(f"p{i}", i + 1, "2026-04-01T00:00:00Z", "pager") for i in range(25)])
    seal_all(services)
    page = services.balances.derive(who, "pager", {"limit": "10", "offset": "20"})
    assert [d.amount for d in page.deltas] == [21, 22, 23, 24, 25]
    newest_first = services.balances.derive(who, "pager", {"limit": "3", "order": "desc"})
    assert [d.amount for d in newest_first.deltas] == [25, 24, 23]
    assert newest_first.balance == sum(range(1, 26))


def test_balances_beyond_2_53_stay_exact(services: Services) -> None:
    who = seed_history(services)
    huge = 2**80 + 1
    derived = services.balances.derive(who, "cust_12345", {"startingBalance": str(huge)})
    assert derived.balance == huge - 1500
    result, _, _ = services.balances.compare(
        who,
        {
            "customerId": "cust_12345",
            "yourBalance": huge - 1500,
            "theirBalance": huge,
            "startingBalance": huge,
        },
    )
    assert result.matches_yours and not result.matches_theirs
    with pytest.raises(ValidationError, match="yourBalance: must be an integer"):
        services.balances.compare(
            who, {"customerId": "cust_12345", "yourBalance": 1.5, "theirBalance": 1, "startingBalance": 0}
        )


def test_period_checkpoint_locks_and_resumes(services: Services) -> None:
    who = seed_history(services)
    record, created = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    again, created_again = services.balances.lock_period(
        who, {"customerId": "cust_12345", "period": "2026-02"}
    )
    assert created and not created_again and again.id == record.id
    assert (record.opening_balance, record.net, record.closing_balance, record.deltas_count) == (
        0,
        -1500,
        -1500,
        2,
    )
    with pytest.raises(PeriodLockedError):
        write(services, who, delta("late-feb", 5, "2026-02-20T00:00:00Z"))
    write(services, who, delta("mar-1", 300, "2026-03-02T00:00:00Z"))
    seal_all(services)
    for checkpoint in (record.id, "0x" + record.proof_root.hex()):
        resumed = services.balances.derive(
            who,
            "cust_12345",
            {"startingBalance": str(record.closing_balance), "startingCheckpoint": checkpoint},
        )
        assert [d.amount for d in resumed.deltas] == [300]
        assert resumed.balance == -1200


def test_a_lock_closes_the_months_before_it_so_every_lock_s_figures_stay_true(services: Services) -> None:
    """February's lock sums January as its opening balance: a January delta let in afterwards
    would make that figure (and February's receipt) untrue, so January is closed too, by
    February's lock, and a lock of January taken later ends where February's begins."""
    who = seed_history(services)
    february, _ = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    with pytest.raises(PeriodLockedError) as refused:
        write(services, who, delta("late-jan", 700, "2026-01-31T23:59:59Z"))
    assert str(refused.value) == (
        'items[0].occurredAt: period 2026-01 of customer "cust_12345" is closed by checkpoint '
        f"{february.id}, the lock of 2026-02 (a lock closes the months before it too); "
        "post the delta to an open period"
    )
    with pytest.raises(PeriodLockedError, match=r"period 2025-06 .* closed by checkpoint .* of 2026-02"):
        write(services, who, delta("long-ago", 700, "2025-06-01T00:00:00Z"))
    write(services, who, delta("mar", 300, "2026-03-01T00:00:00Z"))  # after the lock: open
    seal_all(services)
    january, created = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-01"})
    assert created and january.closing_balance == february.opening_balance == 0
    # another customer's months are its own
    write(services, who, delta("other-jan", 5, "2026-01-05T00:00:00Z", customer="other"))


def test_a_delta_queued_for_a_month_before_a_lock_taken_before_its_seal_fails(services: Services) -> None:
    who = seed_history(services)
    request_id = write(services, who, delta("queued-jan", 9, "2026-01-25T00:00:00Z"))
    february, _ = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    seal_all(services)
    status = services.views.request_status(who, request_id, 10, 0)
    assert status.status == "failed"
    assert status.request.items[0][2].failure == (
        f"period 2026-01 was closed by checkpoint {february.id}, the lock of 2026-02 (a lock closes "
        "the months before it too) before this delta was sealed; post it to an open period under "
        "a new key (this one stays with the failed delta)"
    )
    derived = services.balances.derive(who, "cust_12345", {"startingBalance": "0"})
    assert derived.balance == -1500  # the seeded history only


def test_a_period_whose_opening_balance_passes_64_bits_is_refused_with_a_409(unlimited: Services) -> None:
    """Every balance in leaf order stays within 64 bits (July's and August's credits sealed
    between October's and November's debits), but July and August, the months before
    September, sum beyond it: September's lock is a 409 naming the period, not a 500."""
    services = unlimited
    who = principal_for(services)
    most = 2**53 - 1
    items = [
        delta(f"{month}-{i}", sign * most, f"{month}-02T00:00:00Z", customer="big")
        for i in range(520)
        for month, sign in (("2026-10", -1), ("2026-07", 1), ("2026-11", -1), ("2026-08", 1))
    ]
    for start in range(0, len(items), 1000):
        write(services, who, *items[start : start + 1000])
    seal_all(services)
    with pytest.raises(ConflictError, match=r'^period: the balance of customer "big" before 2026-09 is '):
        services.balances.lock_period(who, {"customerId": "big", "period": "2026-09"})
    assert services.balances.checkpoints(who, "big", {}, 10, 0) == ([], 0)
    august, created = services.balances.lock_period(who, {"customerId": "big", "period": "2026-08"})
    assert created and (august.opening_balance, august.closing_balance) == (520 * most, 1040 * most)


def test_a_period_locked_between_acceptance_and_sealing_fails_the_delta(services: Services) -> None:
    who = seed_history(services)
    request_id = write(services, who, delta("queued-feb", 9, "2026-02-25T00:00:00Z"))
    services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    seal_all(services)
    status = services.views.request_status(who, request_id, 10, 0)
    assert status.status == "failed"
    assert "locked by checkpoint" in (status.request.items[0][2].failure or "")
    assert (status.request.items[0][2].failure or "").endswith(
        "post it to an open period under a new key (this one stays with the failed delta)"
    )
    with pytest.raises(DuplicateKeyError):  # as the message says: the key stays taken
        write(services, who, delta("queued-feb", 9, "2026-03-02T00:00:00Z"))
    assert status.verified_at is None  # completed, but nothing of it was verified
    # A request with one item verified and one failed has its time.
    mixed = write(
        services, who, delta("mar", 4, "2026-03-02T00:00:00Z"), delta("apr", 6, "2026-04-01T00:00:00Z")
    )
    services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-03"})
    seal_all(services)
    partial = services.views.request_status(who, mixed, 10, 0)
    assert partial.status == "partially_failed"
    assert partial.verified_at is not None and partial.verified_at == partial.request.verified_at


def test_a_customer_whose_only_delta_failed_under_a_lock_stays_known(services: Services) -> None:
    """Its first delta was queued, its period locked before the seal, the delta failed: the
    customer keeps its checkpoint, so it derives, compares and locks like any other (balance 0)."""
    who = seed_history(services)  # a signed tree head, as a running sequencer has
    write(services, who, delta("only", 5, "2026-10-10T00:00:00Z", customer="q1"))
    services.balances.lock_period(who, {"customerId": "q1", "period": "2026-10", "force": True})
    seal_all(services)
    derived = services.balances.derive(who, "q1", {"startingBalance": "7"})
    assert (derived.balance, derived.summary.count, derived.deltas) == (7, 0, ())
    result, _, _ = services.balances.compare(
        who, {"customerId": "q1", "yourBalance": 0, "theirBalance": 0, "startingBalance": 0}
    )
    assert result.matches_yours and result.matches_theirs
    assert services.balances.customer(who, "q1", {}).account.balance == 0
    assert services.balances.lock_period(who, {"customerId": "q1", "period": "2026-09"})[1] is True
    with pytest.raises(CustomerNotFoundError):  # no checkpoint, no delta: still unknown
        services.balances.derive(who, "q2", {})


def test_a_current_period_needs_force(services: Services) -> None:
    who = seed_history(services)
    now = datetime.now(UTC).strftime("%Y-%m")
    write(services, who, delta("now-1", 1, datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")))
    seal_all(services)
    with pytest.raises(ValidationError, match="is not over yet"):
        services.balances.lock_period(who, {"customerId": "cust_12345", "period": now})
    record, _ = services.balances.lock_period(who, {"customerId": "cust_12345", "period": now, "force": True})
    assert record.period == now


def test_hostile_balance_requests_are_answered_not_crashed(services: Services) -> None:
    who = seed_history(services)
    result, _, _ = services.balances.compare(
        who,
        {"customerId": "cust_12345", "yourBalance": 48500, "theirBalance": 10**20, "startingBalance": 50000},
    )
    assert result.report is not None and result.report.divergent_party == "theirs"
    assert result.report.windows == ()
    # The last instant there is is still a time scope: deltas in occurredAt order (a delta
    # written later but earlier in time comes first), no checkpoint beside it.
    write(services, who, delta("dec-1", 70, "2025-12-24T10:00:00Z"))
    seal_all(services)
    end_of_time = services.balances.derive(who, "cust_12345", {"asOf": "9999-12-31T23:59:59.999999Z"})
    assert end_of_time.balance == -1430
    assert [d.key for d in end_of_time.deltas] == ["dec-1", "jan-1", "jan-2", "feb-1", "feb-2"]
    assert services.balances.derive(who, "cust_12345", {}).deltas[0].key == "jan-1"  # log order
    with pytest.raises(InvalidScopeError, match="cannot be combined"):
        services.balances.derive(
            who, "cust_12345", {"asOf": "9999-12-31T23:59:59.999999Z", "startingCheckpoint": "a_1"}
        )
    with pytest.raises(ValidationError):
        services.balances.derive(who, "cust_12345", {"startingBalance": "\uff11"})  # full-width 1


def test_the_last_month_there_is_is_a_scope_like_any_other(services: Services) -> None:
    """9999-12 has no next month, and no delta can be dated in it: derive and compare answer for
    an empty month instead of refusing the period; a lock of it is refused as not begun."""
    who = seed_history(services)
    last = services.balances.derive(who, "cust_12345", {"period": "9999-12", "startingBalance": "5"})
    assert (last.balance, last.deltas) == (5, ())
    result, _, _ = services.balances.compare(
        who,
        {
            "customerId": "cust_12345",
            "yourBalance": 5,
            "theirBalance": 6,
            "startingBalance": 5,
            "period": "9999-12",
        },
    )
    assert (result.neutral_balance, result.matches_yours, result.matches_theirs) == (5, True, False)
    # A lock closes the months before it, so a month not begun cannot be locked, forced or not:
    # it would close the customer's ledger until then.
    for forced in (False, True):
        with pytest.raises(ValidationError, match=r"9999-12 has not begun; a lock can be forced only for "):
            services.balances.lock_period(
                who, {"customerId": "cust_12345", "period": "9999-12", "force": forced}
            )
    assert services.balances.checkpoints(who, "cust_12345", {}, 10, 0) == ([], 0)
    write(services, who, delta("after", 1, "2026-03-01T00:00:00Z"))  # every month still open


def test_a_receipt_for_a_customer_never_written_to_names_the_customer(services: Services) -> None:
    """A receipt of a customer the tenant never wrote to is 404 CUSTOMER_NOT_FOUND, as locking
    it is, not advice to lock a period that cannot be locked; a known customer's unlocked
    period is CHECKPOINT_NOT_FOUND, and another tenant's customer is unknown."""
    who = seed_history(services)
    with pytest.raises(CustomerNotFoundError, match='customer "nobody" has no deltas'):
        services.balances.receipt(who, "nobody", {"period": "2026-02"})
    with pytest.raises(CustomerNotFoundError):
        services.balances.lock_period(who, {"customerId": "nobody", "period": "2026-02"})
    with pytest.raises(CheckpointNotFoundError, match="is not locked; lock it with"):
        services.balances.receipt(who, "cust_12345", {"period": "2026-02"})
    services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    assert services.balances.receipt(who, "cust_12345", {"period": "2026-02"}).deltas_count == 2
    with pytest.raises(CustomerNotFoundError):
        services.balances.receipt(principal_for(services, "globex"), "cust_12345", {"period": "2026-02"})


def test_another_customer_s_checkpoint_is_not_a_starting_point(services: Services) -> None:
    who = seed_history(services)
    write(services, who, delta("other-1", 700, "2025-12-01T00:00:00Z", customer="other"))
    seal_all(services)
    record, _ = services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    for checkpoint in (record.id, "0x" + record.proof_root.hex()):
        # Said alike for its id and its proof root (the root was "not a tree head or
        # checkpoint of this log", though it is one, of another customer).
        with pytest.raises(
            CheckpointNotFoundError,
            match=f'^startingCheckpoint "{checkpoint}" is not a checkpoint of customer "other"$',
        ):
            services.balances.derive(who, "other", {"startingCheckpoint": checkpoint})
    assert services.balances.derive(who, "other", {}).balance == 700


def test_a_request_s_status_does_not_depend_on_the_page_read(services: Services) -> None:
    who = seed_history(services)
    late = delta("late-feb", 9, "2026-02-25T00:00:00Z")
    write(services, who, late)
    services.balances.lock_period(who, {"customerId": "cust_12345", "period": "2026-02"})
    seal_all(services)  # "late-feb" fails: its period was locked before it was sealed
    mixed = write(services, who, delta("fresh-mar", 5, "2026-03-03T00:00:00Z"), late)
    seal_all(services)
    pages = [(10, 0), (1, 0), (1, 1)]
    states = {services.views.request_status(who, mixed, limit, offset).status for limit, offset in pages}
    assert states == {"partially_failed"}
    heads = {services.views.request_status(who, mixed, limit, offset).head for limit, offset in pages}
    assert len(heads) == 1 and None not in heads


def test_customer_search_is_the_same_case_sensitive_substring_on_every_backend(services: Services) -> None:
    """``LIKE`` ignores ASCII case on SQLite and not on PostgreSQL, and ``_`` is any character
    to it: the search is an exact substring, alike on both (customer ids are case-sensitive
    everywhere else too)."""
    who = principal_for(services)
    ids = ["Cust-A", "cust-b", "x_y", "xAy", "x.y"]
    write(services, who, *[{"key": f"k{n}", "accountId": c, "bits": 1} for n, c in enumerate(ids)])
    seal_all(services)

    def found(search: str | None) -> tuple[list[str], int]:
        page, total = services.balances.customers(who, search, 10, 1)
        return [account.customer_id for account in page], total

    assert found("cust") == (["cust-b"], 1)
    assert found("Cust") == (["Cust-A"], 1)
    assert found("x_y") == (["x_y"], 1)  # "_" is a character, not any character
    assert found("A") == (["Cust-A", "xAy"], 2)
    assert found("%") == ([], 0)
    assert found(None) == (sorted(ids), 5)


@pytest.mark.parametrize("named_by", ["anchorId", "recordId"])
def test_a_starting_delta_is_looked_up_in_the_answers_own_snapshot(
    services: Services, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    """A delta sealed after the answer's snapshot began is not a sealed delta of that answer:
    its leaf would lie beyond the tree head the answer is given under."""
    who = principal_for(services)
    write(services, who, delta("first", 5, "2026-01-05T10:00:00Z"))
    seal_all(services)
    later = write(services, who, delta("later", 7, "2026-01-06T10:00:00Z"))
    head = services.storage.log.head()
    assert head is not None
    name = f"a_{head.size}" if named_by == "anchorId" else later.replace("req_", "rec_") + "_0"
    known = BalanceSnapshot.known_customer

    def then_seal(snapshot: BalanceSnapshot, tenant_id: str, customer_id: str) -> bool:
        answer = known(snapshot, tenant_id, customer_id)  # the snapshot has begun by now
        # "later" becomes leaf head.size, outside the snapshot: from another thread, as the
        # sequencer seals (a thread reads through a connection of its own on SQLite).
        sealing = threading.Thread(target=seal_all, args=(services,))
        sealing.start()
        sealing.join()
        return answer

    monkeypatch.setattr(BalanceSnapshot, "known_customer", then_seal)
    with pytest.raises(CheckpointNotFoundError):
        services.balances.derive(
            who, "cust_12345", {"startingCheckpoint": name, "startingCheckpointType": "anchorId"}
        )
