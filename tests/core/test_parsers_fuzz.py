"""Hypothesis fuzz of the request parsers: any input either parses or raises ValidationError."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trueup.core.deltas import DeltaLimits
from trueup.core.emit import parse_emit, parse_emit_batch
from trueup.core.errors import ValidationError
from trueup.core.scopes import parse_compare_body, parse_derive_query
from trueup.core.strict_json import loads_strict
from trueup.core.writes import parse_writes_body

LIMITS = DeltaLimits()
NOW = datetime(2026, 11, 25, tzinfo=UTC)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "key",
        "accountId",
        "bits",
        "metadata",
        "occurredAt",
        "reason",
        "customerId",
        "delta",
        "referenceId",
        "yourBalance",
        "theirBalance",
        "startingBalance",
        "startingCheckpoint",
        "period",
        "timePreset",
        "startDate",
        "endDate",
        "asOf",
        "yourWindows",
        "theirWindows",
        "items",
        "deltas",
        "netChange",
    ]
)
shaped = st.dictionaries(field_names, json_values, max_size=8)


def _reference() -> str:
    return "ref_fuzz"


def _only_validation_errors(action: Callable[[], object]) -> None:
    with contextlib.suppress(ValidationError):
        action()


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_validation_error(body: bytes) -> None:
    _only_validation_errors(lambda: loads_strict(body))


@FUZZ
@given(st.lists(shaped, max_size=4), json_values)
def test_writes_bodies_parse_or_raise_validation_error(items: list[dict[str, object]], other: object) -> None:
    _only_validation_errors(lambda: parse_writes_body({"items": items}, LIMITS))
    _only_validation_errors(lambda: parse_writes_body(other, LIMITS))
    text = json.dumps({"items": items}).encode()
    _only_validation_errors(lambda: parse_writes_body(loads_strict(text), LIMITS))


@FUZZ
@given(shaped, st.lists(shaped, max_size=4))
def test_emit_bodies_parse_or_raise_validation_error(single: dict[str, object], batch: list[object]) -> None:
    _only_validation_errors(lambda: parse_emit(single, LIMITS, _reference))
    _only_validation_errors(lambda: parse_emit_batch({"deltas": batch}, LIMITS, _reference))


@FUZZ
@given(shaped, st.dictionaries(field_names, st.text(max_size=30), max_size=6))
def test_balance_requests_parse_or_raise_validation_error(
    body: dict[str, object], query: dict[str, str]
) -> None:
    _only_validation_errors(lambda: parse_compare_body(body, NOW))
    _only_validation_errors(lambda: parse_derive_query(query, NOW))
