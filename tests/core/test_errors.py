"""Domain errors cross a process boundary (the committer child) intact."""

from __future__ import annotations

import pickle

import pytest

from trueup.core.errors import (
    DomainError,
    DuplicateKeyError,
    IdempotencyMismatchError,
    PeriodLockedError,
    PlanLimitExceededError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)

ERRORS = [
    DomainError("plain"),
    ValidationError("items[3].bits", "must be an integer"),
    DuplicateKeyError("order-1", ("amount", "reason"), "items[0]"),
    IdempotencyMismatchError("in use by a different request"),
    PeriodLockedError("period 2026-01 is locked"),
    PlanLimitExceededError("allowance used up"),
    RateLimitedError("slow down", 3),
    UnavailableError("storage is unavailable", 5),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: type(error).__name__)
def test_a_domain_error_survives_pickling(error: DomainError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert str(copy) == str(error)
    assert copy.code == error.code
    assert copy.__dict__ == error.__dict__
