"""The cyclic garbage collector's settings for a long-running process (the server, and the
benchmark when it times the server's work in process, so it sees what the server sees)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_settled", "settle_collector"]

YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation passes (CPython's default is 700)."""


def settle_collector() -> None:
    """Freeze what is loaded so far and collect the young generation less often.

    Everything alive at this point (modules, the app, caches) lives as long as the process:
    frozen, it stays out of the collector's full passes, which otherwise walk it all and show
    up as latency spikes of tens of milliseconds. Requests allocate many short-lived objects,
    so young passes are made rarer too.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)


@contextmanager
def collector_settled() -> Iterator[None]:
    """:func:`settle_collector` for the duration of a block, then CPython's settings again
    (nothing frozen, the thresholds as they were): for a process that does other work after."""
    thresholds = gc.get_threshold()
    settle_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
