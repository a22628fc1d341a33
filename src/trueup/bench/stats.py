"""Summaries of timing samples: count, mean and the percentiles the report quotes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns

__all__ = ["Summary", "percentile", "summarize", "time_pairs"]


@dataclass(frozen=True, slots=True)
class Summary:
    """Percentiles of a sample, in the unit of the sample (``count == 0``: no sample)."""

    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of an ascending sample (nearest rank; 0.0 when empty).

    Nearest rank, not interpolation: a p99 is always a latency that really happened.
    """
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def summarize(sample: Sequence[float]) -> Summary:
    """Count, mean, p50, p90, p99 and max of ``sample``."""
    if not sample:
        return Summary()
    ordered = sorted(sample)
    return Summary(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=float(ordered[-1]),
    )


def time_pairs(
    first: Callable[[int], object],
    second: Callable[[int], object],
    count: int,
    unit_ns: float,
    budget_s: float | None = None,
) -> tuple[Summary, Summary]:
    """Time ``first(i)`` and ``second(i)`` alternately for ``i`` in ``range(count)``.

    A figure and its reference measured this way share every moment of the run, so a machine
    that speeds up or slows down part-way (a neighbour on the host, say) moves both alike and
    leaves their ratio alone; timed one after the other, the drift would land on one side. The
    order within a pair swaps every time, so what one call leaves behind (a warm cache, a
    collection it set off) falls on both sides alike too.
    Each call is timed on its own (``perf_counter_ns`` around it, about 100 ns of timer
    overhead per call). Stops early once ``budget_s`` seconds have passed (the summaries'
    ``count`` says how many pairs were timed).
    """
    samples: tuple[list[float], list[float]] = ([], [])
    stop_at = None if budget_s is None else perf_counter_ns() + int(budget_s * 1e9)
    forward = ((first, samples[0]), (second, samples[1]))
    backward = forward[::-1]
    for i in range(count):
        ended = 0
        for call, sample in backward if i & 1 else forward:
            started = perf_counter_ns()
            call(i)
            ended = perf_counter_ns()
            sample.append((ended - started) / unit_ns)
        if stop_at is not None and ended > stop_at:
            break
    return summarize(samples[0]), summarize(samples[1])
