"""The dispatcher against a real HTTP receiver on 127.0.0.1, over each backend: signatures,
retries, the retry budget, timeouts, and a stuck receiver that writes and seals never notice."""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pacspace_sdk import Webhooks

from tests.conftest import lose_the_lock
from tests.e2e.server import wait_until
from tests.webhooks.conftest import deliveries, principal_for, seal_all, write
from tests.webhooks.receiver import Receiver, block_first, fail_first
from trueup import verify_webhook
from trueup.service.container import Services, open_services
from trueup.service.keys import Principal
from trueup.webhooks import dispatcher as dispatcher_module
from trueup.webhooks.dispatcher import Dispatcher
from trueup.webhooks.schedule import MAX_ATTEMPTS
from trueup.webhooks.signing import EVENT_ID_HEADER, TIMESTAMP_HEADER


@contextmanager
def dispatching(services: Services, **options: object) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(services.storage, services.settings, poll_s=0.05, **options)  # type: ignore[arg-type]
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def statuses(services: Services) -> list[str]:
    return [status for _, _, status, _ in deliveries(services)]


def one_completion(services: Services, principal: Principal, url: str) -> str:
    """An endpoint for verification.completed only, and one sealed request; its secret."""
    issued = services.webhooks.create(principal, {"url": url, "events": ["verification.completed"]})
    write(services, principal, {"key": "k-1", "accountId": "c-1", "bits": 10})
    seal_all(services)
    return issued.secret


def test_deliveries_are_signed_so_our_helper_and_the_sdk_accept_them(services: Services) -> None:
    principal = principal_for(services)
    with Receiver() as receiver, dispatching(services):
        secret = services.webhooks.create(principal, {"url": receiver.url}).secret
        write(
            services,
            principal,
            {"key": "s-1", "accountId": "c-1", "bits": 5},
            {"key": "s-2", "accountId": "c-1", "bits": 6},
        )
        seal_all(services)
        wait_until(lambda: statuses(services) == ["delivered"] * 3)
    kinds = sorted(r.event_type for r in receiver.requests())
    assert kinds == ["delta.verified", "delta.verified", "verification.completed"]
    for received in receiver.requests():
        envelope = verify_webhook(secret, received.headers, received.body)
        assert envelope["id"] == received.event_id and envelope["event"] == received.event_type
        assert Webhooks(secret).verify_from_headers(received.headers, received.text) == envelope
        assert received.headers["Content-Type"] == "application/json"


def test_a_dispatcher_taking_its_role_fails_deliveries_left_pending_to_a_deleted_endpoint(
    services: Services,
) -> None:
    """Older versions left such rows on PostgreSQL (an endpoint deleted while a seal wrote its
    deliveries): never sent, and listed as pending for good. They are failed as the endpoint's
    delete fails its pending ones; a live endpoint's delivery goes out as usual."""
    principal = principal_for(services)
    with Receiver() as receiver:
        gone = services.webhooks.create(
            principal, {"url": receiver.url + "?gone", "events": ["delta.verified"]}
        )
        services.webhooks.create(principal, {"url": receiver.url, "events": ["delta.verified"]})
        write(services, principal, {"key": "o-1", "accountId": "c-1", "bits": 5})
        seal_all(services)
        with services.storage.engine.write() as tx:  # as such a delete left it: the endpoint only
            tx.execute(
                "UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?",
                ("2026-01-01T00:00:00.000000Z", gone.endpoint.id),
            )
        assert statuses(services) == ["pending", "pending"]
        with dispatching(services):
            wait_until(lambda: sorted(statuses(services)) == ["delivered", "failed"])
    (failed,) = [
        d
        for d in services.storage.webhooks.deliveries(principal.tenant_id, None, 10, 0)[0]
        if d.status == "failed"
    ]
    assert failed.endpoint_id == gone.endpoint.id and failed.last_error == "endpoint deleted"
    assert len(receiver.requests()) == 1  # the live endpoint's; the deleted one got nothing
    assert services.storage.webhooks.fail_orphaned() == 0


def test_a_receiver_failing_three_times_gets_the_event_once_more_after_recovering(
    services: Services,
) -> None:
    principal = principal_for(services)
    with Receiver(fail_first(3)) as receiver, dispatching(services):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: statuses(services) == ["delivered"])
    got = receiver.requests()
    assert [r.status for r in got] == [503, 503, 503, 200]
    assert len({r.event_id for r in got}) == 1
    (delivery,), _ = services.storage.webhooks.deliveries(principal.tenant_id, None, 10, 0)
    assert delivery.attempts == 4 and delivery.last_status_code == 200 and delivery.last_error is None
    detail = services.webhooks.event(principal, delivery.event_id)
    assert [(a.attempt, a.status_code, a.error) for a in detail.attempts] == [
        (1, 503, "HTTP 503"),
        (2, 503, "HTTP 503"),
        (3, 503, "HTTP 503"),
        (4, 200, None),
    ]


def test_a_delivery_that_never_succeeds_fails_after_ten_retries(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    services = replace(services, settings=replace(services.settings, webhook_retry_base_s=0.001))
    principal = principal_for(services)
    caplog.set_level(logging.WARNING, logger="trueup.webhooks")
    with Receiver(lambda received: 500) as receiver, dispatching(services):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: statuses(services) == ["failed"], timeout_s=30)
    assert len(receiver.requests()) == MAX_ATTEMPTS == 11
    (delivery,), _ = services.storage.webhooks.deliveries(principal.tenant_id, "failed", 10, 0)
    assert delivery.attempts == 11 and delivery.next_attempt_at is None
    # the operator hears of it once, at the end, with what to do (the retries say nothing)
    (given_up,) = [r.getMessage() for r in caplog.records if r.name == "trueup.webhooks.dispatcher"]
    assert given_up == (
        f"webhook event {delivery.event_id} to endpoint {delivery.endpoint_id} failed for good after "
        f"11 attempts (last: HTTP 500); POST /api/v1/balance/webhooks/{delivery.event_id}/retry "
        "sends it again"
    )


def test_a_clock_stepping_back_holds_no_retry_back_by_the_step(services: Services) -> None:
    """An NTP correction sets the dispatcher's clock back an hour after a failed attempt: the
    retry, due 10 s after it, goes out once 10 s have passed, not an hour and 10 s later. Its
    signature carries the clock's time all the same, which is what the receiver checks."""
    services = replace(services, settings=replace(services.settings, webhook_retry_base_s=10.0))
    principal = principal_for(services)
    wall = [datetime.now(UTC) + timedelta(minutes=1)]  # after the event's creation: due at once
    ticks = [0.0]
    with (
        Receiver(fail_first(1)) as receiver,
        dispatching(services, clock=lambda: wall[0], ticks=lambda: ticks[0], uniform=lambda: 0.0),
    ):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: deliveries(services)[0][3] == 1)  # the first attempt, recorded
        ticks[0] += 11.0  # 11 s pass, during which the clock is set back an hour
        wall[0] += timedelta(seconds=11) - timedelta(hours=1)
        wait_until(lambda: statuses(services) == ["delivered"])
    got = receiver.requests()
    assert [r.status for r in got] == [503, 200]
    assert int(got[1].headers[TIMESTAMP_HEADER]) == int(wall[0].timestamp())


def test_a_manual_retry_sends_a_failed_event_again_with_the_same_id(services: Services) -> None:
    services = replace(services, settings=replace(services.settings, webhook_retry_base_s=0.001))
    principal = principal_for(services)
    recovered = threading.Event()
    with Receiver(lambda received: 200 if recovered.is_set() else 500) as receiver, dispatching(services):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: statuses(services) == ["failed"], timeout_s=30)
        recovered.set()
        event_id = receiver.requests()[0].event_id
        assert services.webhooks.retry(principal, event_id) == 1
        wait_until(lambda: statuses(services) == ["delivered"])
    got = receiver.requests()
    assert len(got) == MAX_ATTEMPTS + 1 and got[-1].status == 200
    assert {r.headers[EVENT_ID_HEADER] for r in got} == {event_id}


def test_a_manual_retry_made_while_the_last_attempt_is_on_the_wire_is_not_undone_by_it(
    services: Services,
) -> None:
    """The retry is accepted while the 11th attempt is unanswered; that attempt's failure, which
    would end the old budget, must not fail the delivery the retry has just queued again."""
    services = replace(services, settings=replace(services.settings, webhook_retry_base_s=0.001))
    principal = principal_for(services)
    release = threading.Event()

    def script(received: Any) -> int:
        if received.number == MAX_ATTEMPTS:
            release.wait(30)
        return 200 if received.number > MAX_ATTEMPTS else 500

    with Receiver(script) as receiver, dispatching(services):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: len(receiver.requests()) == MAX_ATTEMPTS, timeout_s=30)
        event_id = receiver.requests()[0].event_id
        assert services.webhooks.retry(principal, event_id) == 1
        release.set()
        wait_until(lambda: statuses(services) != ["pending"], timeout_s=30)
        assert statuses(services) == ["delivered"]
    got = receiver.requests()
    assert [r.status for r in got] == [500] * MAX_ATTEMPTS + [200]
    detail = services.webhooks.event(principal, event_id)
    assert [a.status_code for a in detail.attempts] == [500] * MAX_ATTEMPTS + [200]
    assert [d.attempts for d in detail.deliveries] == [MAX_ATTEMPTS + 1]


def test_a_timeout_is_a_failed_attempt_that_is_retried(services: Services) -> None:
    services = replace(services, settings=replace(services.settings, webhook_timeout_s=1.0))
    principal = principal_for(services)
    release = threading.Event()
    with Receiver(block_first(release)) as receiver, dispatching(services):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: statuses(services) == ["delivered"])
        release.set()
    (delivery,), _ = services.storage.webhooks.deliveries(principal.tenant_id, None, 10, 0)
    detail = services.webhooks.event(principal, delivery.event_id)
    first, second = detail.attempts
    assert first.status_code is None and first.error is not None and "timed out" in first.error
    assert second.status_code == 200
    assert len(receiver.requests()) == 2


def test_a_stuck_receiver_holds_up_neither_writes_nor_seals(services: Services) -> None:
    principal = principal_for(services)
    release = threading.Event()
    with Receiver(block_first(release, count=10**6)) as receiver, dispatching(services, workers=2):
        one_completion(services, principal, receiver.url)
        wait_until(lambda: len(receiver.requests()) >= 1)
        # Every worker may be stuck on the receiver; writing and sealing go on regardless.
        for n in range(20):
            write(services, principal, {"key": f"more-{n}", "accountId": "c-1", "bits": 1})
        seal_all(services)
        assert services.storage.log.queue_stats()[0] == 0
        assert len(deliveries(services)) == 21
        release.set()
        wait_until(lambda: statuses(services) == ["delivered"] * 21)
    assert len({r.event_id for r in receiver.requests()}) == 21


def test_an_attempt_on_the_wire_when_the_dispatcher_stops_is_recorded_not_repeated(
    services: Services,
) -> None:
    """The receiver answers only once the stop has begun: the attempt is waited for."""
    principal = principal_for(services)
    release = threading.Event()
    dispatcher = Dispatcher(services.storage, services.settings, workers=1, poll_s=0.01)
    with Receiver(block_first(release)) as receiver:
        one_completion(services, principal, receiver.url)
        dispatcher.start()
        wait_until(lambda: len(receiver.requests()) == 1)
        stopping = threading.Thread(target=dispatcher.stop)
        stopping.start()
        wait_until(dispatcher._stop.is_set)
        release.set()
        stopping.join(30)
        assert not stopping.is_alive()
    ((_, _, status, attempts),) = deliveries(services)
    assert (status, attempts) == ("delivered", 1)
    assert len(receiver.requests()) == 1


def test_an_attempt_unanswered_after_the_drain_is_made_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "DRAIN_S", 0.0)
    principal = principal_for(services)
    release = threading.Event()
    with Receiver(block_first(release)) as receiver:
        one_completion(services, principal, receiver.url)
        with dispatching(services, workers=1):
            wait_until(lambda: len(receiver.requests()) == 1)
        ((_, _, status, attempts),) = deliveries(services)
        assert (status, attempts) == ("pending", 0)  # not recorded: it is sent again
        release.set()
        with dispatching(services):
            wait_until(lambda: statuses(services) == ["delivered"])
    assert len(receiver.requests()) == 2


def test_a_target_the_policy_now_refuses_is_recorded_and_retried(services: Services) -> None:
    principal = principal_for(services)
    one_completion(services, principal, "http://127.0.0.1:9/hook")
    strict = replace(services.settings, webhook_allow_private=False)
    dispatcher = Dispatcher(services.storage, strict, poll_s=0.05)
    (due,) = services.storage.webhooks.due("9999-12-31T00:00:00.000000Z", 10)
    outcome = dispatcher.attempt(due)
    assert not outcome.delivered and outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith('target refused: url: host "127.0.0.1"')
    assert outcome.next_attempt_at is not None and outcome.attempt == 1


def test_a_dispatcher_that_lost_its_role_sends_nothing_more_of_what_it_had_handed_out(
    services: Services,
) -> None:
    """Its one worker is held by the receiver on the first event while the second waits in its
    queue; then its lock is lost and another dispatcher leads. The waiting event is taken back
    and sent once, by the new leader (the held one, already on the wire, may arrive twice)."""
    principal = principal_for(services)
    other = open_services(services.settings)
    release = threading.Event()
    first = Dispatcher(services.storage, services.settings, workers=1, poll_s=0.01, standby_poll_s=0.05)
    second = Dispatcher(other.storage, other.settings, workers=1, poll_s=0.01, standby_poll_s=0.05)
    worker_done = threading.Event()  # the first dispatcher's one worker has ended
    work = first._work

    def watched_work(*args: Any) -> None:
        try:
            work(*args)
        finally:
            worker_done.set()

    first._work = watched_work  # type: ignore[method-assign]
    try:
        with Receiver(block_first(release)) as receiver:
            services.webhooks.create(principal, {"url": receiver.url, "events": ["delta.verified"]})
            first.start()
            wait_until(lambda: first.is_leader)
            second.start()
            write(services, principal, *[{"key": f"k{i}", "accountId": "c", "bits": 1} for i in range(2)])
            seal_all(services)
            wait_until(lambda: len(receiver.requests()) == 1)  # held; the other event is queued
            held = receiver.requests()[0].event_id
            lose_the_lock(first.role, services)
            wait_until(lambda: second.is_leader and not first.is_leader)
            wait_until(lambda: len(receiver.requests()) == 3)  # the new leader sends both
            release.set()
            wait_until(worker_done.is_set)  # after its held attempt, and whatever it took next
            wait_until(lambda: statuses(services) == ["delivered"] * 2)
            sent = Counter(r.event_id for r in receiver.requests())
        assert len(sent) == 2
        assert sent[held] == 2
        assert [count for event, count in sent.items() if event != held] == [1]
    finally:
        second.stop()
        first.stop()
        other.close()


def test_an_internationalised_host_gets_its_delivery(services: Services) -> None:
    """The Host header takes ASCII only: the name goes as DNS knows it, never an error."""
    principal = principal_for(services)
    with Receiver() as receiver:
        one_completion(services, principal, receiver.url)
        (due,) = services.storage.webhooks.due("9999-12-31T00:00:00.000000Z", 10)
        port = receiver.url.split(":")[2].split("/")[0]
        idn = replace(due, endpoint=replace(due.endpoint, url=f"http://b\u00fccher.example:{port}/hook"))
        names = {"xn--bcher-kva.example": ["127.0.0.1"]}
        dispatcher = Dispatcher(services.storage, services.settings, resolver=lambda host, _: names[host])
        outcome = dispatcher.attempt(idn)
    assert (outcome.delivered, outcome.status_code, outcome.error) == (True, 200, None)
    assert receiver.requests()[0].headers["Host"] == f"xn--bcher-kva.example:{port}"


@contextmanager
def dripping(first: bytes, drip: bytes, count: int, every_s: float = 0.2) -> Iterator[str]:
    """A receiver on 127.0.0.1 that reads the request, sends ``first``, then ``drip`` every
    ``every_s`` seconds, ``count`` times at most, never finishing a reply: its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            connection.sendall(first)
            for _ in range(count):
                if stop.wait(every_s):
                    return
                try:
                    connection.sendall(drip)
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        listener.close()
        thread.join(10)


@pytest.mark.parametrize(
    ("first", "drip"),
    [
        (b"HTTP/1.1 200 OK\r\n", b"X"),  # a head that never ends, a byte at a time
        (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"),  # and no final reply
    ],
    ids=["slow head", "endless 100 Continue"],
)
def test_an_attempt_ends_at_the_timeout_however_the_receiver_trickles(
    services: Services, first: bytes, drip: bytes
) -> None:
    """Each read comes well within the timeout (0.2 s of 1 s): only a bound on the whole
    attempt ends it as timed out, rather than when the receiver gives up 12 s later."""
    principal = principal_for(services)
    with dripping(first, drip, count=60) as url:
        one_completion(services, principal, url)
        (due,) = services.storage.webhooks.due("9999-12-31T00:00:00.000000Z", 10)
        dispatcher = Dispatcher(services.storage, replace(services.settings, webhook_timeout_s=1.0))
        outcome = dispatcher.attempt(due)
    assert not outcome.delivered and outcome.status_code is None
    assert outcome.error == "timed out after 1s (ReadTimeout)"


@pytest.mark.parametrize(("slow_tenants", "workers"), [(1, 2), (3, 2), (4, 1)])
def test_tenants_whose_receivers_never_answer_do_not_keep_another_waiting_behind_their_backlog(
    services: Services, slow_tenants: int, workers: int
) -> None:
    """Slow tenants' 20 deliveries each, due first, go to a receiver that never answers (each
    attempt ends at the 0.5 s timeout); earliest due first, they would hold the fast tenant's
    two deliveries back for 20 timeouts per slow tenant and worker, and more slow tenants than
    twice the workers once kept it from being served at all. The fast tenant's go ahead
    instead: when they are delivered, most of the slow ones have not yet been tried once."""
    release = threading.Event()
    settings = replace(services.settings, webhook_timeout_s=0.5)
    with (
        Receiver(lambda received: 200 if release.wait(30) else 503) as stuck,
        Receiver() as quick,
    ):
        for n in range(slow_tenants):
            slow = principal_for(services, f"slow-tenant-{n}")
            services.webhooks.create(slow, {"url": stuck.url})
            write(services, slow, *({"key": f"a-{i}", "accountId": "c", "bits": 1} for i in range(19)))
            seal_all(services)
        fast = principal_for(services, "fast-tenant")
        services.webhooks.create(fast, {"url": quick.url})
        write(services, fast, {"key": "b-1", "accountId": "c", "bits": 1})
        seal_all(services)
        endpoint_of_fast = services.webhooks.endpoints(fast)[0].id
        dispatcher = Dispatcher(services.storage, settings, workers=workers, poll_s=0.05)
        dispatcher.start()
        try:
            wait_until(lambda: len(quick.requests()) == 2, timeout_s=120)
            untried = [
                a for _, endpoint, _, a in deliveries(services) if endpoint != endpoint_of_fast and a == 0
            ]
        finally:
            release.set()
            dispatcher.stop()
    assert len(untried) >= 10 * slow_tenants, untried


@pytest.mark.parametrize(("workers", "events"), [(1, 2), (3, 12)])
def test_a_deleted_endpoint_gets_nothing_that_was_waiting_for_a_worker(
    services: Services, workers: int, events: int
) -> None:
    """Each worker is held by an event while the others wait in their queue; the endpoint is
    deleted meanwhile. When the held ones are answered, the workers read the waiting ones again
    (several workers share a read): none is sent, each failed with the delete."""
    principal = principal_for(services)
    release = threading.Event()
    with (
        Receiver(block_first(release, workers)) as receiver,
        dispatching(services, workers=workers) as dispatcher,
    ):
        issued = services.webhooks.create(principal, {"url": receiver.url, "events": ["delta.verified"]})
        write(services, principal, *[{"key": f"k{i}", "accountId": "c", "bits": 1} for i in range(events)])
        seal_all(services)
        wait_until(lambda: len(receiver.requests()) == workers and len(dispatcher._in_flight) == events)
        services.webhooks.delete(principal, issued.endpoint.id)
        release.set()
        wait_until(lambda: not dispatcher._in_flight)
    assert len(receiver.requests()) == workers
    assert statuses(services) == ["failed"] * events


def test_storage_calls_that_keep_failing_log_their_traceback_once(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the dispatcher led and its storage calls failed (a database gone for a minute),
    each round logged a whole traceback, every second. The first failure in a row logs its
    traceback and each one after it one line, until a round succeeds."""
    monkeypatch.setattr(dispatcher_module, "_BACKOFF_ON_STORAGE_ERROR_S", 0.02)
    caplog.set_level(logging.INFO, logger="trueup.webhooks.dispatcher")
    with dispatching(services) as dispatcher:
        wait_until(lambda: dispatcher.is_leader)
        with services.storage.engine.write() as tx:  # every round's reads now fail
            tx.execute("ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_away")
        try:
            wait_until(lambda: sum("storage call failed" in m for m in caplog.messages) >= 4)
        finally:
            with services.storage.engine.write() as tx:
                tx.execute("ALTER TABLE webhook_deliveries_away RENAME TO webhook_deliveries")
        principal = principal_for(services)
        with Receiver() as receiver:  # and a round that succeeds again sends what is due
            one_completion(services, principal, receiver.url)
            wait_until(lambda: statuses(services) == ["delivered"])
    failed = [r for r in caplog.records if "storage call failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed[:4]] == [True, False, False, False]
    assert failed[1].getMessage().startswith("dispatcher storage call failed again (2 in a row): ")
