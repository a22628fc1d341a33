"""The sequencer's contract: contiguous leaves, signed heads, crash-resume, fencing, audit."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.service.conftest import principal_for, seal_all, write
from trueup.core.deltas import DeltaLimits
from trueup.core.timestamps import format_canonical, format_wire
from trueup.proof import (
    CompactRange,
    ConsistencyProofError,
    encode_leaf,
    leaf_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from trueup.service.audit import audit_log
from trueup.service.container import Services, open_services
from trueup.service.sealing import Sealer, leaf_fields_of
from trueup.service.settings import Settings
from trueup.service.signing import load_or_create_signer
from trueup.service.webhooks import WebhookService
from trueup.storage import seal as seal_module
from trueup.storage.engine import Tx
from trueup.storage.errors import SealConflictError
from trueup.storage.seal import SealPlan


def items(prefix: str, count: int, customer: str = "c1") -> list[dict[str, object]]:
    return [{"key": f"{prefix}-{i}", "accountId": customer, "bits": i + 1} for i in range(count)]


def test_seal_appends_contiguous_leaves_under_a_signed_head(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *items("a", 3))
    write(services, who, *items("b", 2, "c2"))
    seal_all(services)
    head = services.storage.log.head()
    assert head is not None and head.size == 5
    verified = verify_checkpoint(head.checkpoint, services.log.verifier_key)
    assert (verified.size, verified.root) == (5, head.root)
    records = [services.storage.writes.record_at_leaf(who.tenant_id, i) for i in range(5)]
    assert [r.key for r in records if r] == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    for index, record in enumerate(records):
        assert record is not None and record.status == "verified"
        proof = services.log.inclusion_path(index, head.size)
        leaf = leaf_hash(
            encode_leaf(
                leaf_fields_of(
                    record.tenant_id,
                    record.customer_id,
                    record.key,
                    record.amount,
                    record.occurred_at,
                    record.metadata,
                    record.salt,
                )
            )
        )
        verify_inclusion(leaf, index, head.size, proof, head.root)


def test_balances_are_kept_at_seal_time(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *items("a", 4))  # 1 + 2 + 3 + 4
    write(services, who, {"key": "neg", "accountId": "c1", "bits": -3, "occurredAt": "2026-01-15T00:00:00Z"})
    seal_all(services)
    with services.storage.balances.snapshot() as snapshot:
        account = snapshot.account(who.tenant_id, "c1")
    assert account is not None and (account.balance, account.delta_count) == (7, 5)
    assert audit_log(services.storage, services.log.verifier_key).ok


def test_a_fresh_sealer_resumes_exactly_where_the_last_seal_ended(services: Services, tmp_path: Path) -> None:
    who = principal_for(services)
    write(services, who, *items("a", 7))
    seal_all(services)
    # A new process (new Sealer, same storage): no leaf twice, no gap.
    restarted = open_services(replace(services.settings))
    try:
        write(restarted, who, *items("b", 5))
        seal_all(restarted)
        head = restarted.storage.log.head()
        assert head is not None and head.size == 12
        report = audit_log(restarted.storage, restarted.log.verifier_key)
        assert report.ok, report.problem
        assert report.leaves == 12
    finally:
        restarted.close()


def second_sequencer(services: Services) -> Sealer:
    """Another sequencer on the same storage and key, loaded at the log's current size."""
    signer = load_or_create_signer(services.settings.resolved_signing_key_path, "localhost/trueup")
    sealer = Sealer(services.storage, signer, "localhost/trueup")
    sealer.load()
    return sealer


def test_a_stale_sequencer_cannot_append(services: Services) -> None:
    who = principal_for(services)
    write(services, who, *items("a", 2))
    seal_all(services)
    stale = second_sequencer(services)
    write(services, who, *items("b", 2))
    seal_all(services)  # the real sequencer moves on to size 4
    write(services, who, *items("c", 1))
    with pytest.raises(SealConflictError):
        stale.seal_once()
    stale.load()  # after reloading it continues correctly
    assert stale.seal_once() is not None
    assert audit_log(services.storage, services.log.verifier_key).ok


def test_a_stale_sequencer_cannot_fail_a_delta_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seal that only fails deltas leaves the tree's size as it was, so the size check does
    not fence it: failing a delta that is no longer queued must refuse the seal instead."""
    who = principal_for(services)
    request_id = write(
        services, who, {"key": "k1", "accountId": "c1", "bits": 5, "occurredAt": "2026-01-10T00:00:00Z"}
    )
    services.sealer.load()
    services.balances.lock_period(who, {"customerId": "c1", "period": "2026-01", "force": True})
    stale = second_sequencer(services)
    queued = services.storage.log.queued(10)  # the stale sequencer has read the queue ...
    services.sealer.seal_once()  # ... and the leader fails k1 meanwhile
    monkeypatch.setattr(services.storage.log, "queued", lambda limit: queued)
    with pytest.raises(SealConflictError, match="no longer queued"):
        stale.seal_once()
    monkeypatch.undo()
    with services.storage.engine.read() as tx:
        counts = tx.one("SELECT pending_count, failed_count FROM write_requests WHERE id = ?", (request_id,))
    assert counts == (0, 1)


def between_planning_and_writing(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[SealPlan], None]
) -> list[int]:
    """Run ``action`` once, after the next seal has worked out its figures and before it takes
    the writer; the returned list gets the planned size when it has run."""
    planned = seal_module.plan_balances
    ran: list[int] = []

    def plan_then_act(tx: Tx, plan: SealPlan) -> object:
        balances = planned(tx, plan)
        if not ran:
            ran.append(plan.previous_size)
            action(plan)
        return balances

    monkeypatch.setattr(seal_module, "plan_balances", plan_then_act)
    return ran


def test_a_seal_that_lands_while_another_works_out_its_balances_fences_it_off(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A seal works out its running figures from a snapshot before it takes the writer; if
    # another seal commits in between, the write must refuse (or the figures would be stale).
    who = principal_for(services)
    write(services, who, *items("a", 2))
    seal_all(services)
    other = second_sequencer(services)
    write(services, who, *items("b", 3))

    def another_seal_lands(plan: SealPlan) -> None:  # the other sequencer seals the same deltas
        thread = threading.Thread(target=seal_all, args=(services,))
        thread.start()
        thread.join()

    landed = between_planning_and_writing(monkeypatch, another_seal_lands)
    with pytest.raises(SealConflictError):
        other.seal_once()
    assert landed == [2]  # the other seal did land, and the fenced one wrote nothing:
    head = services.storage.log.head()
    assert head is not None and head.size == 5
    with services.storage.balances.snapshot() as snapshot:
        account = snapshot.account(who.tenant_id, "c1")
    assert account is not None and (account.balance, account.delta_count) == (1 + 2 + 1 + 2 + 3, 5)
    assert audit_log(services.storage, services.log.verifier_key).ok


def test_a_seal_refuses_to_give_a_leaf_to_a_delta_no_longer_queued(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the cause, a delta that stopped being queued after the seal read it must not
    # get a leaf (it could get a second one): the whole seal is refused and writes nothing.
    who = principal_for(services)
    write(services, who, *items("a", 3))

    def fail_the_second_delta(plan: SealPlan) -> None:
        with services.storage.engine.write() as writer:
            writer.execute("UPDATE deltas SET status = 'failed' WHERE seq = ?", (plan.leaves[1].seq,))

    ran = between_planning_and_writing(monkeypatch, fail_the_second_delta)
    with pytest.raises(SealConflictError, match="1 of the 3 deltas"):
        services.sealer.seal_once()
    assert ran == [0]
    head = services.storage.log.head()
    assert head is None or head.size == 0
    with services.storage.engine.read() as tx:
        statuses = [str(r[0]) for r in tx.execute("SELECT status FROM deltas ORDER BY seq")]
    assert statuses == ["queued", "failed", "queued"]


def test_an_observed_head_is_consistent_with_a_later_one_and_a_forged_one_is_not(
    services: Services,
) -> None:
    who = principal_for(services)
    write(services, who, *items("a", 3))
    seal_all(services)
    observed = services.log.latest()
    for batch in range(4):
        write(services, who, *items(f"b{batch}", 5))
        seal_all(services)
    old, new, proof = services.log.consistency(observed.size, None)
    assert (old.size, new.size) == (3, 23)
    verify_consistency(old.size, new.size, observed.root, new.root, proof)
    forged = bytes([observed.root[0] ^ 1]) + observed.root[1:]
    with pytest.raises(ConsistencyProofError):
        verify_consistency(old.size, new.size, forged, new.root, proof)


def test_sealing_many_leaves_matches_a_full_rebuild(services: Services) -> None:
    who = principal_for(services)
    for batch in range(5):
        write(services, who, *items(f"x{batch}", 300, f"c{batch % 2}"))
    services2 = services
    seal_all(services2)
    head = services.storage.log.head()
    assert head is not None and head.size == 1500
    rebuilt = CompactRange.empty()
    stored = services.storage.log.nodes((0, i) for i in range(1500))
    rebuilt.extend(stored[(0, i)] for i in range(1500))
    assert rebuilt.root() == head.root


def test_settings_use_the_database_url(services: Services) -> None:
    assert isinstance(services.settings, Settings)


@pytest.mark.parametrize("other", ["key", "origin"])
def test_a_sequencer_with_another_key_or_origin_does_not_take_over_the_log(
    services: Services, tmp_path: Path, other: str
) -> None:
    """A host set up with a key of its own would sign heads no verifier of this log accepts."""
    who = principal_for(services)
    write(services, who, *items("a", 3))
    seal_all(services)
    origin = "localhost/trueup" if other == "key" else "example.com/other"
    key_path = tmp_path / "other.key" if other == "key" else services.settings.resolved_signing_key_path
    stranger = Sealer(services.storage, load_or_create_signer(key_path, origin), origin)
    with pytest.raises(RuntimeError, match=r"newest head \(size 3\) does not verify with this process's"):
        stranger.load()
    write(services, who, *items("b", 2))
    with pytest.raises(RuntimeError, match="every process of one log needs the same key file and origin"):
        stranger.seal_once()
    seal_all(services)  # the log's own sequencer goes on
    report = audit_log(services.storage, services.log.verifier_key)
    assert report.ok, report.problem
    assert report.leaves == 5


def _many(prefix: str, account: str, count: int, amount: int, day: str) -> list[dict[str, object]]:
    return [
        {"key": f"{prefix}-{i}", "accountId": account, "bits": amount, "occurredAt": f"{day}T00:00:00Z"}
        for i in range(count)
    ]


def test_deltas_that_would_take_a_balance_beyond_64_bits_fail_and_the_log_goes_on(
    unlimited: Services,
) -> None:
    services = unlimited
    who = principal_for(services)
    most = 2**53 - 1  # 1,024 of them: 2^63 - 1,024, the most a balance reaches without passing 2^63 - 1
    for start in range(0, 1024, 512):
        write(services, who, *_many(f"h{start}", "huge", 512, most, "2026-01-05"))
        write(services, who, *_many(f"c{start}", "credits", 512, most, "2026-03-01"))
    request_id = write(
        services,
        who,
        {"key": "h-over", "accountId": "huge", "bits": most, "occurredAt": "2026-01-06T00:00:00Z"},
        {"key": "h-back", "accountId": "huge", "bits": -5, "occurredAt": "2026-02-01T00:00:00Z"},
        {"key": "c-debit", "accountId": "credits", "bits": -most, "occurredAt": "2026-04-01T00:00:00Z"},
        # The balance would be back at 2^63 - 1,024, but March's credits would pass 2^63 - 1.
        {"key": "c-over", "accountId": "credits", "bits": most, "occurredAt": "2026-03-02T00:00:00Z"},
        {"key": "other", "accountId": "other", "bits": 7},
    )
    seal_all(services)
    status = services.views.request_status(who, request_id, 10, 0)
    failures = {item[2].key: item[2].failure for item in status.request.items}
    assert failures["h-over"] == (
        "it would take the balance of account huge beyond the 64-bit range "
        "(-9,223,372,036,854,775,808 to 9,223,372,036,854,775,807); post a smaller amount under a new "
        "key (this one stays with the failed delta)"
    )
    assert (
        failures["c-over"] is not None and "the credits of 2026-03 of account credits" in failures["c-over"]
    )
    assert [key for key, failure in failures.items() if failure is not None] == ["h-over", "c-over"]
    with services.storage.balances.snapshot() as snapshot:
        huge = snapshot.account(who.tenant_id, "huge")
        credits = snapshot.account(who.tenant_id, "credits")
    assert huge is not None and (huge.balance, huge.delta_count) == (1024 * most - 5, 1025)
    assert credits is not None and (credits.balance, credits.delta_count) == (1023 * most, 1025)
    # The log went on: later writes of any account seal as usual, and the log audits clean.
    write(services, who, {"key": "after", "accountId": "other", "bits": 1})
    seal_all(services)
    head = services.storage.log.head()
    assert head is not None and head.size == 2048 + 3 + 1
    assert audit_log(services.storage, services.log.verifier_key).ok


def test_a_delta_accepted_under_looser_limits_that_cannot_be_a_leaf_fails_alone(
    database_url: str, tmp_path: Path
) -> None:
    # Limits as an older or misconfigured server had them: amounts a leaf cannot carry (I-JSON).
    loose = replace(
        Settings(), limits=DeltaLimits(max_abs_amount=2**60), data_dir=tmp_path, database_url=database_url
    )
    services = open_services(loose)
    try:
        who = principal_for(services)
        request_id = write(
            services,
            who,
            {"key": "too-big", "accountId": "c1", "bits": 2**53},
            {"key": "fine", "accountId": "c1", "bits": 3},
        )
        seal_all(services)
        status = services.views.request_status(who, request_id, 10, 0)
        failures = {item[2].key: item[2].failure for item in status.request.items}
        assert failures["fine"] is None
        assert failures["too-big"] is not None
        assert failures["too-big"].startswith(
            "it cannot be made a leaf: leaf.delta: 9007199254740992 is outside"
        )
        head = services.storage.log.head()
        assert head is not None and head.size == 1
        assert audit_log(services.storage, services.log.verifier_key).ok
    finally:
        services.close()


def test_a_request_of_repeats_of_queued_deltas_is_verified_when_their_originals_are(
    services: Services,
) -> None:
    """No seal settles a request all of whose items repeat deltas still queued: its
    ``verifiedAt`` is when the last of the originals' requests was settled, not ``null``."""
    who = principal_for(services)
    items = [{"key": f"r{i}", "accountId": "c1", "bits": i + 1} for i in range(3)]
    original = write(services, who, *items[:2])
    later = write(services, who, items[2])
    repeat = write(services, who, *items)  # every item repeats one of the two queued requests
    assert services.views.request_status(who, repeat, 10, 0).status == "queued"
    seal_all(services)
    status = services.views.request_status(who, repeat, 10, 0)
    settled = [services.views.request_status(who, r, 10, 0).request.verified_at for r in (original, later)]
    assert status.status == "verified"
    assert None not in settled
    assert status.request.verified_at == max(settled)  # type: ignore[type-var]


def test_a_request_of_repeats_is_verified_when_its_originals_are_though_theirs_is_not(
    services: Services,
) -> None:
    """Its originals' request may still wait for other items: the repeat's verifiedAt is when
    the deltas it repeats were sealed."""
    who = principal_for(services)
    items = [{"key": f"p{i}", "accountId": "c1", "bits": i + 1} for i in range(2)]
    original = write(services, who, *items)
    repeat = write(services, who, items[0])
    services.sealer.seal_once(1)  # seals p0 only
    assert services.views.request_status(who, original, 10, 0).status == "queued"
    status = services.views.request_status(who, repeat, 10, 0)
    assert status.status == "verified"
    [(_, _, record)] = status.request.items
    assert status.request.verified_at is not None
    assert status.request.verified_at == record.verified_at


def test_a_clock_that_steps_back_never_makes_a_larger_head_older(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """An NTP step or a standby whose clock is late: the heads sealed meanwhile carry the
    newest head's time, once, with one warning, until the clock catches up."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)  # after the log's first head
    now = [start]
    signer = load_or_create_signer(services.settings.resolved_signing_key_path, "localhost/trueup")
    sealer = Sealer(services.storage, signer, "localhost/trueup", clock=lambda: now[0])
    who = principal_for(services)
    stamps = []
    for step, back in enumerate((0, 3600, 0, -7200)):  # seconds the clock moves back before a seal
        now[0] -= timedelta(seconds=back)
        write(services, who, *items(f"t{step}", 1))
        with caplog.at_level(logging.WARNING, logger="trueup.service.sealing"):
            sealer.seal_once()
        stamps.append(services.storage.log.head().timestamp_ms)  # type: ignore[union-attr]
    first = int(start.timestamp() * 1000)
    assert stamps == [first, first, first, first + 3_600_000]
    assert [r.message for r in caplog.records].count(
        "the clock is 3600.000 s behind the newest signed tree head; heads carry that head's time "
        "until it catches up"
    ) == 1


def _sealer_an_hour_behind(services: Services) -> Sealer:
    """A sealer of the services' log whose clock is an hour behind the API's."""
    signer = load_or_create_signer(services.settings.resolved_signing_key_path, "localhost/trueup")
    return Sealer(
        services.storage, signer, "localhost/trueup", clock=lambda: datetime.now(UTC) - timedelta(hours=1)
    )


def test_a_sequencer_clock_behind_the_acceptance_never_reads_verified_before_accepted(
    services: Services,
) -> None:
    """The clock stepped back between acceptance and sealing (or the sequencer's host is behind
    the API process's): the seal is stamped no earlier than its deltas' acceptance, and no
    earlier than its tree head, so a record never reads verified before it was accepted."""
    late = _sealer_an_hour_behind(services)
    who = principal_for(services)
    request_id = write(services, who, *items("late", 2))
    late.seal_once()
    status = services.views.request_status(who, request_id, 10, 0)
    assert status.status == "verified"
    assert status.request.verified_at is not None
    assert status.request.verified_at >= status.request.accepted_at
    for _, _, record in status.request.items:
        assert record.verified_at is not None and record.verified_at >= record.accepted_at
    head = services.storage.log.head()
    assert head is not None
    assert status.request.verified_at >= format_canonical(
        datetime.fromtimestamp(head.timestamp_ms / 1000, UTC)
    )


def test_a_retry_completed_by_a_late_clock_is_not_verified_before_it_was_accepted(services: Services) -> None:
    """A retry of queued deltas is accepted after them and completed by the seal that seals them.
    With the sequencer's clock behind, the seal's time is its deltas' acceptance: the retry is
    stamped no earlier than its own acceptance, in its record and in its completion event."""
    late = _sealer_an_hour_behind(services)
    who = principal_for(services)
    public = WebhookService(
        services.storage, services.settings, resolver=lambda host, port: ["93.184.216.34"]
    )
    public.create(who, {"url": "https://hooks.example.com/t", "events": ["verification.completed"]})
    write(services, who, *items("again", 2))
    retry = write(services, who, *items("again", 2))
    late.seal_once()
    status = services.views.request_status(who, retry, 10, 0)
    assert status.status == "verified"
    assert status.request.verified_at is not None
    assert status.request.verified_at >= status.request.accepted_at
    with services.storage.engine.read() as tx:
        payloads = [json.loads(str(row[0])) for row in tx.execute("SELECT payload FROM webhook_events")]
    (completed,) = [p["data"] for p in payloads if p["data"]["requestId"] == retry]
    assert completed["verifiedAt"] == format_wire(status.request.verified_at)


def test_a_seal_completes_its_requests_in_the_order_it_seals_them(services: Services) -> None:
    """More requests than one statement settles on SQLite (300): each is counted off once and
    reported complete in its items' order, whichever statement settled it."""
    who = principal_for(services)
    requests = [write(services, who, *items(f"r{n}", 1 + n % 2, f"c{n % 7}")) for n in range(320)]
    outcome = services.sealer.seal_once()
    assert outcome is not None and outcome.sealed_count == sum(1 + n % 2 for n in range(320))
    assert outcome.completed_requests == tuple(requests)
    for request_id in (requests[0], requests[299], requests[300], requests[-1]):
        assert services.views.request_status(who, request_id, 10, 0).status == "verified"


def test_a_seal_writes_no_row_by_copy(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session under way in a COPY is "active" while its client sends nothing: a sequencer
    stopped mid-COPY held the seal's lock (and sealing, for every process) for as long as it
    stayed stopped, where between statements the server ends an idle transaction in 10 s."""
    services = open_services(replace(Settings(), data_dir=tmp_path, database_url=pg_url))
    try:
        write(services, principal_for(services), *items("no-copy", 50))  # writes may use COPY

        def refused(*_: object, **__: object) -> None:
            raise AssertionError("a seal used COPY")

        monkeypatch.setattr(psycopg.Cursor, "copy", refused)
        seal_all(services)
        head = services.storage.log.head()
        assert head is not None and head.size == 50
        assert audit_log(services.storage, services.log.verifier_key).ok
    finally:
        services.close()
