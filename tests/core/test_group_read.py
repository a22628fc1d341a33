"""GroupRead: threads that ask while a read is under way share the next read, never that one."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from tests.e2e.server import wait_until
from trueup.core.group_read import GroupRead, SharedReadError, _Ask


class _Store:
    """A read that answers ``key@n`` for the n-th read, the first held until ``release`` is set."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self._fail_first = fail_first

    def read(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.batches.append(list(keys))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(30), "never released"
            if self._fail_first:
                raise OSError("the database went away")
        return {key: f"{key}@{len(self.batches)}" for key in keys if key != "gone"}


def _ask(group: GroupRead[str, str], key: str, answers: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            answers[key] = group.current(key)
        except Exception as exc:
            answers[key] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _threads_waiting(group: GroupRead[str, str]) -> int:
    return len(group._waiting)


def test_threads_asking_during_a_read_share_the_next_one() -> None:
    store = _Store()
    group = GroupRead(store.read)
    answers: dict[str, object] = {}
    first = _ask(group, "a", answers)
    assert store.started.wait(30)
    later = [_ask(group, key, answers) for key in ("b", "gone", "c")]
    wait_until(lambda: _threads_waiting(group) == 3)
    store.release.set()
    for thread in [first, *later]:
        thread.join(30)
    assert store.batches == [["a"], ["b", "gone", "c"]]
    assert answers == {"a": "a@1", "b": "b@2", "gone": None, "c": "c@2"}
    assert group.reads == 2


def test_a_failed_read_raises_in_each_thread_it_was_for_and_the_next_read_goes_on() -> None:
    """The thread that read gets the read's error; one whose key it read too gets a
    SharedReadError of its own, caused by it; one that asked during the read is answered by
    the next read."""
    calls: list[list[str]] = []
    started, release = threading.Event(), threading.Event()

    def read(keys: Sequence[str]) -> Mapping[str, str]:
        calls.append(list(keys))
        if len(calls) == 1:
            started.set()
            assert release.wait(30)
        if len(calls) == 2:
            raise OSError("the database went away")
        return {key: f"{key}@{len(calls)}" for key in keys}

    group = GroupRead(read)
    answers: dict[str, object] = {}
    first = _ask(group, "a", answers)
    assert started.wait(30)
    later = [_ask(group, key, answers) for key in ("b", "c")]
    wait_until(lambda: _threads_waiting(group) == 2)
    release.set()
    for thread in [first, *later]:
        thread.join(30)
    assert calls == [["a"], ["b", "c"]]
    assert answers["a"] == "a@1"
    errors = [answers["b"], answers["c"]]  # one read for both: one made it, the other shared it
    assert sorted(type(error).__name__ for error in errors) == ["OSError", "SharedReadError"]
    shared = next(error for error in errors if isinstance(error, SharedReadError))
    assert isinstance(shared.__cause__, OSError) and "the database went away" in str(shared)
    assert group.current("d") == "d@3"  # nothing is left marked as reading


def test_a_read_whose_answer_cannot_be_used_raises_too_and_the_group_goes_on() -> None:
    replies: list[object] = [["not", "a", "mapping"]]

    def read(keys: Sequence[str]) -> Mapping[str, str]:
        if replies:
            return replies.pop()  # type: ignore[return-value]  # the fault under test
        return {key: key for key in keys}

    group = GroupRead(read)
    answers: dict[str, object] = {}
    for key in ("a", "b"):  # in threads: a group left reading would keep the second waiting
        thread = _ask(group, key, answers)
        thread.join(30)
        assert not thread.is_alive(), f"{key} was left waiting"
    assert isinstance(answers["a"], AttributeError) and answers["b"] == "b"


def test_a_waiting_thread_that_stops_waiting_leaves_the_queue_or_passes_its_turn_on() -> None:
    """A thread interrupted while it waits (``KeyboardInterrupt`` in the main thread) is taken
    out of the queue; had it just been made the next reader, the next in line reads instead."""
    store = _Store()
    group = GroupRead(store.read)
    answers: dict[str, object] = {}
    first = _ask(group, "a", answers)
    assert store.started.wait(30)
    with group._lock:  # a thread that asked, then was interrupted before its answer came
        gone: _Ask[str, str] = _Ask("gone")
        group._waiting.append(gone)
    second = _ask(group, "b", answers)
    wait_until(lambda: _threads_waiting(group) == 2)  # it is first in line: the next reader
    store.release.set()
    wait_until(lambda: gone.reads)  # its turn came; it will not take it
    group._leave(gone)
    first.join(30)
    second.join(30)
    assert store.batches == [["a"], ["b"]]
    assert answers == {"a": "a@1", "b": "b@2"}
    assert not group._reading and not group._waiting
    alone: _Ask[str, str] = _Ask("alone")  # one that leaves while simply waiting in line
    group._waiting.append(alone)
    group._leave(alone)
    assert group._waiting == [] and group.current("c") == "c@3"


def test_a_thread_alone_reads_for_itself() -> None:
    store = _Store()
    store.release.set()
    group = GroupRead(store.read)
    assert [group.current("x"), group.current("gone"), group.current("y")] == ["x@1", None, "y@3"]
    assert store.batches == [["x"], ["gone"], ["y"]]


def test_many_threads_asking_over_and_over_each_get_their_own_key() -> None:
    threads = 8
    store = _Store()
    store.release.set()
    group = GroupRead(store.read)
    wrong: list[tuple[str, str | None]] = []

    def run(n: int) -> None:
        for i in range(200):
            key = f"{n}-{i}"
            found = group.current(key)
            if found is None or not found.startswith(f"{key}@"):
                wrong.append((key, found))

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert wrong == []
    assert sum(len(batch) for batch in store.batches) == threads * 200
