"""Figures measured below the size their target names (the quick run) are indicative only: the
table never says ``pass`` or ``MISS`` for them, and the notes say what their checks gave."""

from __future__ import annotations

import pytest

from trueup.bench import merkle
from trueup.bench.ledger import TARGET_DELTAS, History, LedgerTimings, ledger_rows
from trueup.bench.merkle import inclusion_rows
from trueup.bench.report import Check, Report, Row
from trueup.bench.stats import Summary


def test_an_indicative_row_is_neither_pass_nor_miss_and_its_checks_are_in_the_notes() -> None:
    report = Report(title="t", mode="quick", machine={})
    report.add(
        [
            Row("held", "1 µs", checks=(Check("<= 20 µs", True),), indicative="measured at 1 leaves"),
            Row("failed", "9 ms", checks=(Check("<= 5 ms", False),), note="n", indicative="small"),
        ]
    )
    assert [row.verdict for row in report.rows] == ["indicative", "indicative"]
    assert [row.checked for row in report.rows] == ["pass", "MISS (<= 5 ms)"]
    text = report.text()
    assert "0 pass, 0 miss, 2 indicative" in text
    assert "held: indicative only, not judged (measured at 1 leaves); at this size <= 20 µs: held" in text
    assert "failed: indicative only, not judged (small); at this size <= 5 ms: failed; n" in text


def test_an_inclusion_proof_below_the_target_size_is_indicative(monkeypatch: pytest.MonkeyPatch) -> None:
    (row,) = inclusion_rows(1_024, 200)
    assert row.verdict == "indicative"
    assert row.indicative == "measured at 1,024 leaves; the target is at 10,000,000"
    monkeypatch.setattr(merkle, "PROOF_TARGET_LEAVES", 1_024)
    (row,) = inclusion_rows(1_024, 200)
    assert row.indicative is None
    assert row.verdict in ("pass", "MISS (<= 20 µs)")


@pytest.mark.parametrize(("deltas", "indicative"), [(100_000, True), (TARGET_DELTAS, False)])
def test_derive_and_compare_below_the_target_history_are_indicative(deltas: int, indicative: bool) -> None:
    big = History("whale", [1] * deltas, commit_s=1.0, seal_s=1.0)
    small = History("minnow", [1] * 1_000, commit_s=1.0, seal_s=1.0)
    timings = LedgerTimings(big=big, small=small)
    timings.in_process = {"derive, all deltas (page 1 of 100)": (Summary(10, p99=1.0), Summary(10, p99=1.0))}
    rows = [row for row in ledger_rows(timings, None) if row.checks]
    assert len(rows) == 1
    assert rows[0].verdict == ("indicative" if indicative else "pass")
