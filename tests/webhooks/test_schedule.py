"""The retry schedule: doubling from the base, jittered upwards, capped, ten retries."""

from __future__ import annotations

import pytest

from trueup.webhooks.schedule import CAP_S, JITTER, MAX_ATTEMPTS, MAX_RETRIES, retry_delay


def test_without_jitter_the_delay_doubles_from_the_base() -> None:
    assert [retry_delay(n, 5.0, 0.0) for n in range(1, 11)] == [
        5.0,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        320.0,
        640.0,
        1280.0,
        2560.0,
    ]


def test_jitter_stretches_a_delay_by_at_most_a_quarter() -> None:
    assert retry_delay(1, 5.0, 0.5) == pytest.approx(5.0 * (1 + JITTER * 0.5))
    assert retry_delay(3, 5.0, 0.999999) < 20.0 * (1 + JITTER)


def test_no_delay_exceeds_one_hour() -> None:
    assert retry_delay(10, 60.0, 0.0) == CAP_S
    assert all(retry_delay(n, 1000.0, 0.99) == CAP_S for n in range(3, 11))


def test_after_ten_retries_there_is_no_next_attempt() -> None:
    assert MAX_RETRIES == 10 and MAX_ATTEMPTS == 11
    assert retry_delay(MAX_RETRIES, 5.0, 0.0) is not None
    assert retry_delay(MAX_RETRIES + 1, 5.0, 0.0) is None


@pytest.mark.parametrize(
    ("retry", "base", "u"), [(0, 5.0, 0.0), (1, 0.0, 0.0), (1, 5.0, 1.0), (1, 5.0, -0.1)]
)
def test_bad_arguments_are_refused(retry: int, base: float, u: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        retry_delay(retry, base, u)
