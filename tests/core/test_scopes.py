"""Scopes of derive and compare: a bad value is a 400 that names its field and shows the value as
JSON spells it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trueup.core.errors import ValidationError
from trueup.core.scopes import parse_compare_body

NOW = datetime(2026, 3, 1, tzinfo=UTC)
BODY = {"customerId": "cust-1", "yourBalance": 5, "theirBalance": 4, "startingBalance": 0}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"startingCheckpointType": [1]}, "startingCheckpointType: must be a string, got an array"),
        (
            {"startingCheckpoint": "chk_x", "startingCheckpointType": 7},
            "startingCheckpointType: must be a string, got 7",
        ),
        ({"period": 202602}, "period: must be a YYYY-MM string, got 202602"),
        (
            {"theirWindows": [{"period": None, "netChange": 1}]},
            "theirWindows[0].period: must be a YYYY-MM string, got null",
        ),
        ({"period": {"y": 2026}}, "period: must be a YYYY-MM string, got an object"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_as_json_spells_it(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_compare_body({**BODY, **extra}, NOW)
    assert caught.value.message == message
