"""The collector settings the server (and the benchmark's in-process timings) run with."""

from __future__ import annotations

import gc

from trueup.service.collector import YOUNG_THRESHOLD, collector_settled


def test_settling_freezes_what_is_loaded_and_makes_young_passes_rarer() -> None:
    survivor = [object()]
    thresholds = gc.get_threshold()
    with collector_settled():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        # What was alive is out of the collector's reach; what comes after is not.
        assert not any(obj is survivor for obj in gc.get_objects())
        newcomer = [object()]
        assert any(obj is newcomer for obj in gc.get_objects())
    # Afterwards the process has CPython's settings back.
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    assert any(obj is survivor for obj in gc.get_objects())
