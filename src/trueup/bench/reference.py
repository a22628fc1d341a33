"""The side-by-side references: what the same work costs without Trueup around it.

- :func:`raw_insert_seconds`: the same delta rows inserted with one plain ``executemany`` in
  one transaction, into a fresh copy of the schema (same indexes, same durability setting),
  with the server's own column list;
- :func:`hashlib_bound_seconds`: the hashing a seal cannot avoid, with ``hashlib`` alone;
- :func:`pymerkle_seconds`: pymerkle 7.0.0 (a dev dependency) appending the same leaves;
- :func:`sync_latencies_ms`: what the disk makes a durable commit wait, with nothing else around it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trueup.bench.stats import Summary, summarize
from trueup.bench.workload import DeltaRow
from trueup.storage import open_storage
from trueup.storage.write_drafts import DELTA_INSERT_COLUMNS

__all__ = [
    "PymerkleMissingError",
    "hashlib_bound_seconds",
    "pymerkle_seconds",
    "raw_insert_seconds",
    "sync_latencies_ms",
]

# The server's own column list (trueup.storage.write_drafts), in a bare statement: the
# reference is the insert alone, not our code path around it.
_INSERT_DELTAS = (
    f"INSERT INTO deltas ({', '.join(DELTA_INSERT_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join('?' for _ in DELTA_INSERT_COLUMNS)})"
)


class PymerkleMissingError(RuntimeError):
    """pymerkle is not installed (it is a dev dependency: ``make install``)."""


def raw_insert_seconds(database_url: str, rows: Sequence[DeltaRow]) -> float:
    """Seconds to insert ``rows`` with one ``executemany`` in one durable transaction.

    ``database_url`` must name an empty database (a fresh SQLite file or PostgreSQL schema);
    :func:`~trueup.storage.open_storage` creates the schema in it first, so the table has
    the same indexes as the server's. The commit (with its fsync) is inside the timing.
    """
    storage = open_storage(database_url, pool_size=2)
    try:
        started = time.perf_counter()
        with storage.engine.write() as tx:
            tx.executemany(_INSERT_DELTAS, rows)
        return time.perf_counter() - started
    finally:
        storage.close()


def sync_latencies_ms(directory: Path, count: int = 200, size: int = 4_096) -> Summary:
    """``count`` appends of ``size`` bytes to a new file in ``directory``, each made durable with
    ``fdatasync`` (the call SQLite makes at each WAL commit on Linux), timed one by one (ms).

    Every write figure waits on it and the echo and raw-insert references hardly do (the raw
    insert syncs once), so a disk slower for a while shows here and nowhere else.
    """
    block = os.urandom(size)
    handle, name = tempfile.mkstemp(prefix="sync-", dir=directory)
    try:
        sample: list[float] = []
        for _ in range(count):
            os.write(handle, block)
            started = time.perf_counter()
            os.fdatasync(handle)
            sample.append((time.perf_counter() - started) * 1_000)
        return summarize(sample)
    finally:
        os.close(handle)
        os.unlink(name)


def hashlib_bound_seconds(leaves: Sequence[bytes]) -> float:
    """Seconds for one leaf hash and one interior node hash per leaf, with hashlib only.

    A tree of ``n`` leaves has ``n - 1`` interior nodes, so this is the least hashing any
    RFC 9162 implementation does to append ``leaves`` (RFC 9162 §2.1.1 prefixes included).
    """
    sha = hashlib.sha256
    started = time.perf_counter()
    hashes = [sha(b"\x00" + leaf).digest() for leaf in leaves]
    for digest in hashes:
        sha(b"\x01" + digest + digest).digest()
    return time.perf_counter() - started


def _pymerkle() -> Any:
    try:
        return importlib.import_module("pymerkle")
    except ImportError as exc:
        raise PymerkleMissingError(
            "pymerkle 7.0.0 is not installed; it is a dev dependency: run `make install`"
        ) from exc


def pymerkle_seconds(leaves: Sequence[bytes], batch: int = 1_000) -> tuple[float, bytes, str]:
    """Seconds for pymerkle's ``InmemoryTree`` to append ``leaves`` in batches, with a root
    after each batch (the same work as a seal); also its final root and its version.

    Raises:
        PymerkleMissingError: if pymerkle is not installed.
    """
    pymerkle = _pymerkle()
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    root = b""
    started = time.perf_counter()
    for start in range(0, len(leaves), batch):
        tree.append_entries(leaves[start : start + batch])
        root = tree.get_root()
    elapsed = time.perf_counter() - started
    return elapsed, bytes(root), str(pymerkle.__version__)
