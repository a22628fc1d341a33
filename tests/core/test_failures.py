"""A failing operation's log: one traceback, then a line a try, and a line when it works again."""

from __future__ import annotations

import logging

import pytest

from trueup.core.failures import FailuresInARow


def test_failures_in_a_row_are_logged_once_in_full_then_counted_then_their_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("trueup.test.failures")
    failures = FailuresInARow(log, "group commits")
    with caplog.at_level(logging.INFO, logger=log.name):
        failures.succeeded()  # nothing failed: nothing to say
        for n in range(3):
            failures.failed("group commit of 2 requests", OSError(f"disk full {n}"))
        failures.succeeded()
        failures.succeeded()
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("ERROR", "group commit of 2 requests failed", True),
        ("ERROR", "group commit of 2 requests failed again (2 in a row): disk full 1", False),
        ("ERROR", "group commit of 2 requests failed again (3 in a row): disk full 2", False),
        ("INFO", "group commits work again, after 3 failures in a row", False),
    ]
    assert failures.count == 0
