"""``trueup sequencer --supervised`` reports to its parent through a pipe: once the parent is
gone, a report stops the child and says why in its log, once."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import pytest

from trueup.cli.sequencer import _Reports


def test_a_report_to_a_parent_that_is_gone_stops_the_child_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the parent is gone: nobody reads the reports
    stop = threading.Event()
    out = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below, past the lost lines
    with caplog.at_level(logging.WARNING):
        reports = _Reports(out, stop)
        reports.send("role leader")
        assert stop.is_set()
        reports.send("role leader")
    assert [r.getMessage() for r in caplog.records] == ["trueup serve is gone; stopping"]
    with contextlib.suppress(BrokenPipeError):  # the unsent lines are still buffered
        out.close()


def test_reports_reach_a_parent_that_reads_them() -> None:
    read_end, write_end = os.pipe()
    stop = threading.Event()
    with open(write_end, "w", encoding="utf-8") as out, open(read_end, encoding="utf-8") as parent:
        _Reports(out, stop).send("role standby")
        assert parent.readline() == "role standby\n"
    assert not stop.is_set()
