"""How sealing is compared with pymerkle: best of several runs, alternating with ours."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trueup.bench import merkle


def test_pymerkle_is_timed_best_of_the_repeats_alternating_with_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    seconds = iter([3.0, 2.0, 4.0])
    ours_seconds = merkle.ours_seconds

    def theirs(leaves: Sequence[bytes], batch: int) -> tuple[float, bytes, str]:
        calls.append("pymerkle")
        return next(seconds), ours_seconds(leaves)[1], "7.0.0"

    def ours(leaves: Sequence[bytes], batch: int = merkle.SEAL_BATCH) -> tuple[float, bytes]:
        calls.append("ours")
        return ours_seconds(leaves, batch)

    monkeypatch.setattr(merkle, "pymerkle_seconds", theirs)
    monkeypatch.setattr(merkle, "ours_seconds", ours)
    rows, _ = merkle.sealing_rows(100, 3)
    # The hashlib comparison's three runs of ours, then pymerkle's three, each beside one of ours.
    assert calls[3:] == ["pymerkle", "ours", "ours", "pymerkle", "pymerkle", "ours"]
    row = rows[1]
    assert row.numbers["pymerkle_per_s"] == 100 / 2.0  # the best of its runs
    assert row.note.startswith("best of 3 runs each")


def test_a_pymerkle_run_on_another_root_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    roots = iter([None, b"\x00" * 32, None])
    ours_seconds = merkle.ours_seconds

    def theirs(leaves: Sequence[bytes], batch: int) -> tuple[float, bytes, str]:
        return 1.0, next(roots) or ours_seconds(leaves)[1], "7.0.0"

    monkeypatch.setattr(merkle, "pymerkle_seconds", theirs)
    rows, _ = merkle.sealing_rows(100, 3)
    assert rows[1].verdict == "error"
    assert "0" * 64 in (rows[1].error or "")
