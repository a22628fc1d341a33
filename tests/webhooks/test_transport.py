"""The attempt transport's deadline on writes: a body is written in slices, each given only
what is left of the attempt (a stream below gives every partial send of one write the same
timeout, so one write of a large body could outlast the attempt)."""

from __future__ import annotations

import time
from typing import Any

import httpcore
import pytest

from trueup.webhooks.transport import _WRITE_SLICE, _Deadline, _Stream


class _Recorded(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.writes: list[tuple[int, float | None]] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append((len(buffer), timeout))
        time.sleep(0.001)  # time passes between slices

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # pragma: no cover
        return b""

    def close(self) -> None:  # pragma: no cover
        pass

    def get_extra_info(self, info: str) -> Any:  # pragma: no cover
        return None


def test_a_large_body_is_written_in_slices_each_with_what_is_left() -> None:
    inner, deadline = _Recorded(), _Deadline()
    deadline.at = time.monotonic() + 100
    _Stream(inner, deadline).write(b"x" * (2 * _WRITE_SLICE + 10), timeout=1_000.0)
    assert [size for size, _ in inner.writes] == [_WRITE_SLICE, _WRITE_SLICE, 10]
    left = [timeout for _, timeout in inner.writes]
    assert all(t is not None and t <= 100 for t in left)
    assert left[0] > left[1] > left[2]  # recomputed for each slice


def test_a_write_with_no_time_left_is_a_write_timeout() -> None:
    inner, deadline = _Recorded(), _Deadline()
    deadline.at = time.monotonic() - 1
    with pytest.raises(httpcore.WriteTimeout, match="the attempt's time ran out"):
        _Stream(inner, deadline).write(b"x", timeout=5.0)
    assert inner.writes == []
