"""Pruning the webhook tables past the retention, on SQLite and PostgreSQL: what goes (old
events whose deliveries are all finished, with those deliveries and their attempts), what
stays (anything pending or retrying, however old, and every young event), in batches of
bounded size, safely beside a second dispatcher, and what the API says of a pruned event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.server import wait_until
from tests.webhooks.conftest import principal_for, seal_all, write
from tests.webhooks.receiver import Receiver
from trueup.core.errors import NotFoundError
from trueup.core.json_text import quoted
from trueup.service.container import Services, open_services
from trueup.service.keys import Principal
from trueup.storage.webhook_pruning import PRUNE_ROWS, PrunedBatch
from trueup.storage.webhooks import AttemptOutcome
from trueup.webhooks.dispatcher import Dispatcher
from trueup.webhooks.pruning import PRUNE_EVERY_S

HOOK = "http://127.0.0.1:9/hook"  # never contacted where no dispatcher runs
CUTOFF = "2026-03-01T00:00:00.000000Z"
OLD = "2026-01-15T10:00:00.000000Z"  # six weeks before the cutoff
YOUNG = "2026-03-01T00:00:00.000001Z"  # just after it
TABLES = ("webhook_events", "webhook_deliveries", "webhook_attempts")


def endpoint(services: Services, principal: Principal, url: str = HOOK) -> str:
    """An endpoint for delta.verified only: one event per sealed delta."""
    return services.webhooks.create(principal, {"url": url, "events": ["delta.verified"]}).endpoint.id


def sealed_events(services: Services, principal: Principal, count: int, prefix: str) -> list[str]:
    """``count`` delta.verified events through the real write and seal path, in order."""
    request_id = write(
        services, principal, *[{"key": f"{prefix}-{n}", "accountId": "c", "bits": 1} for n in range(count)]
    )
    seal_all(services)
    with services.storage.engine.read() as tx:
        rows = tx.execute(
            "SELECT id, payload FROM webhook_events WHERE payload LIKE ? ORDER BY id",
            (f'%"requestId":"{request_id}"%',),
        )
    by_key = {str(payload).split('"key":"')[1].split('"')[0]: str(event_id) for event_id, payload in rows}
    return [by_key[f"{prefix}-{n}"] for n in range(count)]


def age(services: Services, event_ids: list[str], created_at: str) -> None:
    """Make the events have happened at ``created_at``."""
    with services.storage.engine.write() as tx:
        for event_id in event_ids:
            tx.execute("UPDATE webhook_events SET created_at = ? WHERE id = ?", (created_at, event_id))


def attempt(
    services: Services, event_id: str, endpoint_id: str, *, delivered: bool, retry_at: str | None = None
) -> None:
    """Record one finished attempt through the dispatcher's own path: delivered, failed with a
    retry at ``retry_at``, or (neither) failed for good."""
    services.storage.webhooks.record_attempts(
        [
            AttemptOutcome(
                event_id=event_id,
                endpoint_id=endpoint_id,
                attempt=1,
                started_at=OLD,
                finished_at=OLD,
                duration_ms=3,
                status_code=200 if delivered else 503,
                error=None if delivered else "HTTP 503",
                delivered=delivered,
                next_attempt_at=retry_at,
            )
        ]
    )


def stored(services: Services) -> dict[str, set[str]]:
    """The event ids each webhook table holds rows of."""
    with services.storage.engine.read() as tx:
        return {
            table: {
                str(r[0])
                for r in tx.execute(f"SELECT {'id' if table == TABLES[0] else 'event_id'} FROM {table}")
            }
            for table in TABLES
        }


def counts(services: Services) -> dict[str, int]:
    with services.storage.engine.read() as tx:
        return {table: int(tx.scalar(f"SELECT COUNT(*) FROM {table}")) for table in TABLES}


def whole_pass(services: Services, cutoff: str = CUTOFF, **bounds: int) -> list[PrunedBatch]:
    """Every batch of one pass, until the last says it is over."""
    batches = [services.storage.webhooks.prune(cutoff, None, **bounds)]
    while batches[-1].resume_after is not None:
        batches.append(services.storage.webhooks.prune(cutoff, batches[-1].resume_after, **bounds))
    return batches


def test_a_pass_prunes_old_finished_events_with_their_deliveries_and_attempts_and_nothing_else(
    services: Services,
) -> None:
    principal = principal_for(services)
    first = endpoint(services, principal)
    delivered, failed, retrying, untried, young, half = sealed_events(services, principal, 6, "p")
    second = endpoint(services, principal, HOOK + "?second")
    (both,) = sealed_events(services, principal, 1, "q")  # to both endpoints
    attempt(services, delivered, first, delivered=False, retry_at=OLD)
    attempt(services, delivered, first, delivered=True)
    attempt(services, failed, first, delivered=False)  # no retry left: failed for good
    attempt(services, retrying, first, delivered=False, retry_at="2026-12-01T00:00:00.000000Z")
    attempt(services, young, first, delivered=True)
    attempt(services, both, first, delivered=True)
    attempt(services, both, second, delivered=True)
    attempt(services, half, first, delivered=True)
    with services.storage.engine.write() as tx:  # a delivery to `second` still pending
        tx.execute(
            """INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, status, attempts,
                   round_attempts, next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', 0, 0, ?, ?)""",
            (half, second, principal.tenant_id, OLD, OLD),
        )
        tx.execute(  # an event with no delivery at all (the outbox writes none such today)
            """INSERT INTO webhook_events (id, tenant_id, event_type, payload, created_at)
               VALUES ('evt_alone', ?, 'delta.verified', '{}', ?)""",
            (principal.tenant_id, OLD),
        )
    age(services, [delivered, failed, retrying, untried, half, both], OLD)
    age(services, [young], YOUNG)

    batches = whole_pass(services)

    assert stored(services) == {
        "webhook_events": {retrying, untried, young, half},
        "webhook_deliveries": {retrying, untried, young, half},
        "webhook_attempts": {retrying, young, half},
    }
    assert (sum(b.events for b in batches), sum(b.deliveries for b in batches)) == (4, 4)
    assert sum(b.attempts for b in batches) == 5  # two of `delivered`, one each of the others
    assert whole_pass(services) == [PrunedBatch(0, 0, 0, None)]  # nothing more to do


def test_a_pass_goes_in_batches_that_each_stay_within_their_bounds(services: Services) -> None:
    """More rows than one batch takes: each batch deletes at most ``max_rows`` rows and examines
    at most ``scan`` events, and old events still pending are passed over, not stopped at."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 30, "b")
    pending = set(made[::4])  # every fourth one, from the very first on
    for event_id in made:
        if event_id not in pending:
            attempt(services, event_id, hook, delivered=True)
    age(services, made, OLD)

    batches = whole_pass(services, max_rows=10, scan=4)

    assert all(batch.rows <= 10 for batch in batches)
    assert all(batch.events <= 3 for batch in batches)  # 3 rows each: event, delivery, attempt
    assert sum(batch.events for batch in batches) == 30 - len(pending)
    assert len(batches) >= 8  # 22 events of 3 rows, at most 3 a batch
    assert stored(services)["webhook_events"] == pending


def test_a_pass_of_more_rows_than_one_default_batch_takes_two_or_more(services: Services) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 1_000, "m")  # 3,000 rows once delivered
    with services.storage.engine.write() as tx:
        tx.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, next_attempt_at = NULL")
        tx.execute(
            """INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, started_at, duration_ms,
                   status_code) SELECT event_id, endpoint_id, 1, created_at, 2, 200 FROM webhook_deliveries"""
        )
        tx.execute("UPDATE webhook_events SET created_at = ?", (OLD,))
    assert counts(services) == dict.fromkeys(TABLES, 1_000)
    assert hook

    first = services.storage.webhooks.prune(CUTOFF)
    assert first.rows <= PRUNE_ROWS and first.resume_after is not None
    rest = whole_pass(services)

    assert first.events + sum(b.events for b in rest) == len(made)
    assert counts(services) == dict.fromkeys(TABLES, 0)


def test_an_old_event_retried_by_hand_is_kept_until_its_new_delivery_finishes(services: Services) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    (event_id,) = sealed_events(services, principal, 1, "r")
    attempt(services, event_id, hook, delivered=True)
    age(services, [event_id], OLD)
    assert services.webhooks.retry(principal, event_id) == 1

    whole_pass(services)
    assert stored(services)["webhook_events"] == {event_id}  # pending again: kept

    attempt(services, event_id, hook, delivered=True)
    whole_pass(services)
    assert stored(services)["webhook_events"] == set()


def test_a_pruned_event_is_a_404_naming_it_and_leaves_the_delivery_list(services: Services) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    old, young = sealed_events(services, principal, 2, "a")
    attempt(services, old, hook, delivered=True)
    attempt(services, young, hook, delivered=True)
    age(services, [old], OLD)
    age(services, [young], YOUNG)
    whole_pass(services)

    for call in (services.webhooks.event, services.webhooks.retry):
        with pytest.raises(NotFoundError) as caught:
            call(principal, old)
        assert caught.value.message == (
            f"webhook event {quoted(old)} not found; events are kept 30 days after they happen, then "
            "pruned with their deliveries and attempts once those are delivered or failed"
        )
    listed, total = services.webhooks.deliveries(principal, None, 100, 0)
    assert [d.event_id for d in listed] == [young] and total == 1
    assert services.webhooks.event(principal, young).event_id == young


def test_an_attempt_recorded_after_its_delivery_was_pruned_leaves_nothing_behind(
    services: Services,
) -> None:
    """A dispatcher that lost its role mid-send records its attempt late, after the new one
    delivered the event and pruned it: no attempt row is left without its delivery."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    (event_id,) = sealed_events(services, principal, 1, "s")
    attempt(services, event_id, hook, delivered=True)
    age(services, [event_id], OLD)
    whole_pass(services)

    attempt(services, event_id, hook, delivered=True)
    attempt(services, event_id, hook, delivered=False, retry_at=OLD)

    assert counts(services) == dict.fromkeys(TABLES, 0)


def test_two_passes_racing_on_one_database_prune_each_event_once(services: Services) -> None:
    """A stale dispatcher (one that lost its role and has not noticed yet) may prune beside the
    new one: both finish without error and between them prune exactly what one would."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 60, "t")
    for event_id in made[:50]:
        attempt(services, event_id, hook, delivered=True)
    age(services, made, OLD)
    other = open_services(services.settings)
    found: dict[str, list[PrunedBatch]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(name: str, side: Services) -> None:
        try:
            start.wait(10)
            found[name] = whole_pass(side, max_rows=12, scan=5)
        except BaseException as exc:  # reported by the asserts below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", services), ("b", other))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    assert errors == []
    assert sum(b.events for batches in found.values() for b in batches) == 50
    assert sum(b.attempts for batches in found.values() for b in batches) == 50
    assert stored(services)["webhook_events"] == set(made[50:])


# -- the dispatcher ------------------------------------------------------------------------------


class Ticks:
    """A monotonic clock the test moves on by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def later(days: float) -> Callable[[], datetime]:
    """A wall clock ``days`` ahead of the real one."""
    return lambda: datetime.now(UTC) + timedelta(days=days)


@contextmanager
def dispatching(services: Services, **options: object) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(services.storage, services.settings, poll_s=0.02, standby_poll_s=0.05, **options)  # type: ignore[arg-type]
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def test_the_dispatcher_prunes_what_it_delivered_once_it_is_past_the_retention(services: Services) -> None:
    """Its clock 31 days ahead, a retention of 30: a pass at the role's start finds nothing
    finished; the pass after ``PRUNE_EVERY_S`` (moved on by hand) prunes every delivered event."""
    principal = principal_for(services)
    ticks = Ticks()
    with Receiver() as receiver, dispatching(services, clock=later(31), ticks=ticks) as dispatcher:
        endpoint(services, principal, receiver.url)
        made = sealed_events(services, principal, 3, "d")
        wait_until(lambda: len(receiver.answered(200)) == 3 and counts(services)["webhook_attempts"] == 3)
        assert stored(services)["webhook_events"] == set(made)  # its pass ran as it took the role
        ticks.offset += PRUNE_EVERY_S
        dispatcher.wake()
        wait_until(lambda: counts(services) == dict.fromkeys(TABLES, 0))
        assert dispatcher.pruned == 9


def test_a_retention_of_zero_keeps_every_event(services: Services) -> None:
    principal = principal_for(services)
    keep = replace(services.settings, webhook_retention_days=0)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 2, "z")
    for event_id in made:
        attempt(services, event_id, hook, delivered=True)
    age(services, made, "2000-01-01T00:00:00.000000Z")
    dispatcher = Dispatcher(services.storage, keep, clock=later(10_000))
    assert dispatcher.prune_step() == 0
    assert counts(services) == dict.fromkeys(TABLES, 2)
    assert Dispatcher(services.storage, services.settings).prune_step() == 6  # 30 days: all of it


def test_only_the_dispatcher_holding_the_role_prunes(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder's clock has the events young; a standby's has them past the retention. The
    standby prunes nothing while it stands by, and everything once it holds the role."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 4, "o")
    for event_id in made:
        attempt(services, event_id, hook, delivered=True)
    other = open_services(services.settings)
    holder = Dispatcher(services.storage, services.settings, poll_s=0.02, standby_poll_s=0.05)
    standby = Dispatcher(other.storage, other.settings, poll_s=0.02, standby_poll_s=0.05, clock=later(31))
    try:
        holder.start()
        wait_until(lambda: holder.is_leader)
        with caplog.at_level("INFO", logger="trueup.service.roles"):
            standby.start()
            wait_until(lambda: "another process holds the dispatcher role" in caplog.text)
        assert counts(services) == dict.fromkeys(TABLES, 4)
        holder.stop()
        wait_until(lambda: counts(services) == dict.fromkeys(TABLES, 0))
        assert standby.is_leader and (holder.pruned, standby.pruned) == (0, 12)
    finally:
        standby.stop()
        holder.stop()
        other.close()


def test_a_pass_that_fails_is_tried_again_at_the_next_one(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal = principal_for(services)
    hook = endpoint(services, principal)
    (event_id,) = sealed_events(services, principal, 1, "f")
    attempt(services, event_id, hook, delivered=True)
    age(services, [event_id], OLD)
    ticks = Ticks()
    month_later = datetime(2026, 3, 31, tzinfo=UTC)  # the cutoff is then CUTOFF
    dispatcher = Dispatcher(services.storage, services.settings, ticks=ticks, clock=lambda: month_later)
    real = services.storage.webhooks.prune

    def broken(*args: object, **kwargs: object) -> PrunedBatch:
        raise RuntimeError("database went away")

    monkeypatch.setattr(services.storage.webhooks, "prune", broken)
    dispatcher._pruner.round()  # logged; no exception escapes the dispatcher's round
    monkeypatch.setattr(services.storage.webhooks, "prune", real)
    assert dispatcher.prune_step() == 0  # not before the next pass is due
    ticks.offset += PRUNE_EVERY_S
    assert dispatcher.prune_step() == 3


def test_the_batches_of_a_pass_are_spaced_so_others_get_the_writer(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next batch of a pass comes no sooner than four times as long as the last one took
    after it (at least ``_PRUNE_GAP_S``), however often the dispatcher's rounds ask."""
    principal = principal_for(services)
    hook = endpoint(services, principal)
    made = sealed_events(services, principal, 1_000, "g")  # 3,000 rows: two default batches
    with services.storage.engine.write() as tx:
        tx.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = 1, next_attempt_at = NULL")
        tx.execute(
            """INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, started_at, duration_ms,
                   status_code) SELECT event_id, endpoint_id, 1, created_at, 2, 200 FROM webhook_deliveries"""
        )
    assert hook and len(made) == 1_000
    ticks = [100.0]
    dispatcher = Dispatcher(services.storage, services.settings, clock=later(31), ticks=lambda: ticks[0])
    real = services.storage.webhooks.prune

    def taking_a_second(*args: Any, **kwargs: Any) -> PrunedBatch:
        ticks[0] += 1.0
        return real(*args, **kwargs)

    monkeypatch.setattr(services.storage.webhooks, "prune", taking_a_second)
    first = dispatcher.prune_step()  # from 100 s to 101 s
    assert 0 < first <= PRUNE_ROWS
    ticks[0] = 104.9
    assert dispatcher.prune_step() == 0  # too soon: 4 s after a batch of 1 s
    ticks[0] = 105.0
    assert first + dispatcher.prune_step() == 3_000
    assert counts(services) == dict.fromkeys(TABLES, 0)
