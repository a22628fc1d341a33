"""The Merkle tree in memory: sealing throughput and inclusion-proof latency.

Sealing: the same ``n`` canonical leaves (random deltas encoded by :mod:`trueup.proof`)
appended (a) with hashlib alone, the bound; (b) through our :class:`CompactRange` in batches
of 1,000 with a root after each batch, as the sequencer does, leaf hashing included; (c)
through pymerkle 7.0.0, best of the same number of runs, each alternating with one of ours. All
three must end on the same root.

Inclusion proofs: a :class:`MemoryTree` of ``n`` leaf hashes, then ``inclusion_proof`` of
random leaves, each timed alone; the floor beside it is the bare interpreter cost of
slicing one 32-byte hash per tree level, which no Python implementation can go below.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from trueup.bench.reference import PymerkleMissingError, hashlib_bound_seconds, pymerkle_seconds
from trueup.bench.report import Check, Row, fmt_percent, fmt_rate, fmt_times, fmt_us
from trueup.bench.stats import time_pairs
from trueup.proof import (
    CompactRange,
    LeafFields,
    MemoryTree,
    encode_leaf,
    format_occurred_at,
    leaf_hash,
    metadata_digest,
    verify_inclusion,
)

__all__ = ["PROOF_TARGET_LEAVES", "inclusion_rows", "make_leaves", "ours_seconds", "sealing_rows"]

SEAL_BATCH = 1_000
PROOF_TARGET_LEAVES = 10_000_000
"""The tree size at which DESIGN.md §6 sets the inclusion-proof target: a smaller tree's figure
is only indicative."""


def make_leaves(count: int, seed: int = 9162) -> list[bytes]:
    """``count`` canonical leaf encodings of random deltas (random salts, times, customers)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible benchmark data, not secrets
    digest = metadata_digest(None)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    leaves: list[bytes] = []
    for i in range(count):
        amount = rng.randint(1, 1_000_000) * rng.choice((-1, 1))
        moment = base + timedelta(seconds=rng.randrange(365 * 86_400), microseconds=rng.randrange(10**6))
        fields = LeafFields(
            tenant="ten_benchmark0000",
            customer_id=f"cust-{rng.randrange(1_000):04d}",
            key=f"key-{i}",
            delta=amount,
            occurred_at=format_occurred_at(moment),
            metadata_digest=digest,
            salt=rng.randbytes(16),
        )
        leaves.append(encode_leaf(fields))
    return leaves


def ours_seconds(leaves: Sequence[bytes], batch: int = SEAL_BATCH) -> tuple[float, bytes]:
    """Seconds to hash and append ``leaves`` to a :class:`CompactRange` in batches, taking
    the root after each batch (the sequencer's in-memory work per seal); and the root."""
    tree = CompactRange.empty()
    root = tree.root()
    started = time.perf_counter()
    for start in range(0, len(leaves), batch):
        tree.extend([leaf_hash(leaf) for leaf in leaves[start : start + batch]])
        root = tree.root()
    return time.perf_counter() - started, root


def sealing_rows(count: int, repeats: int) -> tuple[list[Row], float]:
    """The sealing rows, and the hashlib bound in leaves/s (the reference of later rows)."""
    leaves = make_leaves(count)
    # Alternately (and in turn first), so that a change in the machine's speed during the runs
    # reaches both sides.
    bound_runs, ours_runs = [], []
    for run in range(repeats):
        if run & 1:
            ours_runs.append(ours_seconds(leaves))
        bound_runs.append(hashlib_bound_seconds(leaves))
        if not run & 1:
            ours_runs.append(ours_seconds(leaves))
    bound = min(bound_runs)
    ours, root = min(ours_runs)
    bound_rate, ours_rate = count / bound, count / ours
    name = f"sealing: CompactRange.extend + root per {SEAL_BATCH:,} ({count:,} leaves)"
    share = ours_rate / bound_rate
    rows = [
        Row(
            name=name,
            value=fmt_rate(ours_rate, "leaves/s"),
            reference=f"hashlib bound {fmt_rate(bound_rate, 'leaves/s')}",
            ratio=fmt_percent(share, "down"),
            target=">= 60 % of hashlib",
            checks=(Check(">= 60 % of hashlib", share >= 0.60),),
            note=(
                f"best of {repeats} runs each, the two sides run alternately; "
                "bound = 1 leaf hash + 1 node hash per leaf, hashlib only"
            ),
            numbers={"leaves": count, "ours_per_s": ours_rate, "hashlib_per_s": bound_rate},
        )
    ]
    pymerkle_name = "sealing vs pymerkle InmemoryTree (same leaves, root per 1,000)"
    try:
        theirs, their_roots, version, ours_beside = _versus_pymerkle(leaves, repeats)
    except PymerkleMissingError as exc:
        rows.append(Row.not_measured(pymerkle_name, ">= 5x pymerkle", skipped=str(exc)))
        return rows, bound_rate
    if their_roots != {root}:
        shown = ", ".join(sorted(other.hex() for other in their_roots))
        rows.append(
            Row.not_measured(
                pymerkle_name, ">= 5x pymerkle", error=f"pymerkle's roots {shown} != ours {root.hex()}"
            )
        )
        return rows, bound_rate
    ours_beside_rate = count / ours_beside
    factor = ours_beside_rate / (count / theirs)
    rows.append(
        Row(
            name=pymerkle_name,
            value=fmt_rate(ours_beside_rate, "leaves/s"),
            reference=f"pymerkle {version} {fmt_rate(count / theirs, 'leaves/s')}",
            ratio=fmt_times(factor, "down"),
            target=">= 5x pymerkle",
            checks=(Check(">= 5x pymerkle", factor >= 5.0),),
            note=(
                f"best of {repeats} runs each, pymerkle's alternating with ours (each in turn first); "
                "roots checked equal"
            ),
            numbers={"ours_per_s": ours_beside_rate, "pymerkle_per_s": count / theirs, "pymerkle": version},
        )
    )
    return rows, bound_rate


def _versus_pymerkle(leaves: Sequence[bytes], repeats: int) -> tuple[float, set[bytes], str, float]:
    """pymerkle's best of ``repeats`` runs and ours beside it, alternately (each in turn first):
    ``(pymerkle's best seconds, the roots its runs ended on, its version, our best seconds)``.

    Raises:
        PymerkleMissingError: if pymerkle is not installed.
    """
    theirs_runs: list[tuple[float, bytes, str]] = []
    ours_runs: list[float] = []
    for run in range(repeats):
        if run & 1:
            ours_runs.append(ours_seconds(leaves)[0])
        theirs_runs.append(pymerkle_seconds(leaves, SEAL_BATCH))
        if not run & 1:
            ours_runs.append(ours_seconds(leaves)[0])
    seconds, _, version = min(theirs_runs)
    return seconds, {root for _, root, _ in theirs_runs}, version, min(ours_runs)


def _build_tree(size: int) -> MemoryTree:
    tree = MemoryTree()
    sha = hashlib.sha256
    chunk = 1 << 20
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        tree.extend([sha(b"\x00" + i.to_bytes(8, "big")).digest() for i in range(start, stop)])
    return tree


def inclusion_rows(size: int, samples: int) -> list[Row]:
    """Inclusion-proof latency at ``size`` leaves (p50 target 20 µs), beside the slicing floor;
    indicative only below :data:`PROOF_TARGET_LEAVES`."""
    started = time.perf_counter()
    tree = _build_tree(size)
    build_s = time.perf_counter() - started
    rng = random.Random(6962)  # noqa: S311 - reproducible benchmark data, not secrets
    indices = [rng.randrange(size) for _ in range(samples)]
    root = tree.root()
    for index in indices[:50]:  # the proofs are right, not just fast
        verify_inclusion(tree.leaf_hash(index), index, size, tree.inclusion_proof(index), root)
    depth = (size - 1).bit_length()
    row = bytearray(1 << 16)
    offsets = [rng.randrange(0, len(row) - 32) for _ in range(depth)]
    proofs, floor = time_pairs(
        lambda i: tree.inclusion_proof(indices[i]),
        lambda _: [bytes(row[o : o + 32]) for o in offsets],
        samples,
        1_000.0,
    )
    ok = proofs.p50 <= 20.0
    return [
        Row(
            name=f"inclusion proof p50 at {size:,} leaves (MemoryTree)",
            value=fmt_us(proofs.p50, "up"),
            reference=f"floor: {depth} bare slices {fmt_us(floor.p50)}",
            ratio=fmt_times(proofs.p50 / floor.p50) if floor.p50 else "",
            target="<= 20 µs",
            checks=(Check("<= 20 µs", ok),),
            note=(
                f"p99 {fmt_us(proofs.p99)} over {samples:,} random leaves, each proof timed "
                f"beside one floor call; tree built in "
                f"{build_s:,.1f} s; 50 proofs verified against the root"
            ),
            numbers={
                "size": size,
                "p50_us": proofs.p50,
                "p99_us": proofs.p99,
                "floor_p50_us": floor.p50,
                "build_s": build_s,
            },
            indicative=None
            if size >= PROOF_TARGET_LEAVES
            else f"measured at {size:,} leaves; the target is at {PROOF_TARGET_LEAVES:,}",
        )
    ]
