"""How derive and compare are timed at scale."""

from __future__ import annotations

import time

import pytest

from trueup.bench import ledger
from trueup.bench.ledger import History


def test_derive_and_compare_timings_are_bounded_by_time_not_a_small_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"fast": lambda _: None}
    monkeypatch.setattr(ledger, "_operations", lambda services, who, history: calls)
    history = History("whale", [1])
    started = time.perf_counter()
    timings = ledger._time_operations(None, None, history, history, budget_s=0.05)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    big, small = timings["fast"]
    assert big.count == small.count > 1_000  # calls of ~1 µs: the 0.1 s holds thousands
    assert elapsed < 2.0
