"""GroupRead: threads that ask while a read is under way share the next read, never that one."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from tests.e2e.server import wait_until
from trueup.core.group_read import GroupRead


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
        except OSError as exc:
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
    store = _Store(fail_first=True)
    group = GroupRead(store.read)
    answers: dict[str, object] = {}
    first = _ask(group, "a", answers)
    assert store.started.wait(30)
    second = _ask(group, "b", answers)
    wait_until(lambda: _threads_waiting(group) == 1)
    store.release.set()
    first.join(30)
    second.join(30)
    assert isinstance(answers["a"], OSError) and answers["b"] == "b@2"
    assert group.current("d") == "d@3"  # nothing is left marked as reading


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
