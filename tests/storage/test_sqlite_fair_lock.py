"""The SQLite writer lock hands turns over in arrival order, so sealing is never starved."""

from __future__ import annotations

import threading
import time

from trueup.storage.sqlite import _FairLock


def _wait_for_ticket(lock: _FairLock, ticket: int) -> None:
    deadline = time.monotonic() + 30
    while lock._next_ticket <= ticket:  # waiting until the thread has queued
        assert time.monotonic() < deadline, "the thread never queued for the lock"
        time.sleep(0.001)


def test_waiting_threads_get_the_lock_in_the_order_they_asked_for_it() -> None:
    lock = _FairLock()
    order: list[str] = []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    with lock:
        threads = []
        for ticket, name in enumerate(["sequencer", "committer", "another"], start=1):
            thread = threading.Thread(target=take, args=(name,))
            thread.start()
            _wait_for_ticket(lock, ticket)
            threads.append(thread)
        order.append("holder")
    # The holder asks again at once; it queues behind the three that were waiting.
    take("holder again")
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["holder", "sequencer", "committer", "another", "holder again"]
