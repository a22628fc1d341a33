"""The collector settings the server (and the benchmark's in-process timings) run with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from trueup.service.collector import YOUNG_THRESHOLD, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_is_loaded_and_makes_young_passes_rarer() -> None:
    survivor = [object()]
    settle_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    # What was alive is out of the collector's reach; what comes after is not.
    assert not any(obj is survivor for obj in gc.get_objects())
    newcomer = [object()]
    assert any(obj is newcomer for obj in gc.get_objects())
