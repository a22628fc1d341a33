"""What the report reads off a write load's result: the rate accepted, the replies, the queue
left behind, and where the cores went (read by :mod:`.cpu`) per accepted item or request.
Shared by the rows of the default server's writes, of the other deployments and of the ledger.
"""

from __future__ import annotations

from trueup.bench.cpu import LOAD_GENERATOR, MACHINE_BUSY, MACHINE_CAPACITY
from trueup.bench.loadspec import LoadResult
from trueup.bench.report import Check, Row, fmt_percent, fmt_rate, fmt_us
from trueup.bench.writes import WritePlan

__all__ = [
    "BATCH",
    "accepted_items_per_s",
    "accepted_req_per_s",
    "batched_cpu_rows",
    "delivery_checks",
    "queue_note",
    "replies_check",
    "replies_note",
    "single_cpu_rows",
]

BATCH = 1_000


def accepted_items_per_s(result: LoadResult) -> float:
    """Items accepted per second in a batched load (1,000 items a request)."""
    return result.ok(202) * BATCH / result.elapsed_s if result.elapsed_s > 0 else 0.0


def accepted_req_per_s(result: LoadResult) -> float:
    """Requests accepted per second in a single-item load."""
    return result.ok(202) / result.elapsed_s if result.elapsed_s > 0 else 0.0


def replies_note(result: LoadResult) -> str:
    shown = ", ".join(f"{status}: {count:,}" for status, count in sorted(result.statuses.items()))
    errors = f"; {result.errors:,} errors ({result.error_sample})" if result.errors else ""
    unanswered = f"; {result.unanswered:,} sent and never answered" if result.unanswered else ""
    return f"replies {{{shown}}}{errors}{unanswered}"


def replies_check(result: LoadResult) -> Check:
    """Errors, requests never answered and replies other than 202 at most 0.1 % of the replies
    (none at all: a miss)."""
    bad = result.errors + result.unanswered + result.completed - result.ok(202)
    return Check(
        "errors + non-202 <= 0.1 % of replies", result.completed > 0 and bad <= 0.001 * result.completed
    )


def delivery_checks(result: LoadResult, offered_req_per_s: float) -> tuple[Check, ...]:
    """Whether an open-loop load was delivered: 202s at >= 95 % of the offered request rate.

    Sends the generator made late (its event loop behind, on cores it shares with the server)
    are counted in the note, not judged: the judged readings start at the 202 or at the
    server's ``acceptedAt``, after the send, so a late send moves neither, and a rate that was
    kept is the load the figure is about. (A first version also missed when 1 % of the sends
    were over 5 ms late: the first full run with it delivered 99.5 % of the rate with 5 % of
    its sends late, on a machine whose two cores the server kept busy.)"""
    achieved = result.ok(202) / result.elapsed_s if result.elapsed_s > 0 else 0.0
    return (Check("load not delivered: achieved < 95 % of offered", achieved >= 0.95 * offered_req_per_s),)


def queue_note(queued_after: int | None) -> str:
    if queued_after is None:
        return "queue depth not read"
    return f"{queued_after:,} deltas still queued (accepted, not yet sealed) when the load stopped"


def batched_cpu_rows(backend: str, result: LoadResult) -> list[Row]:
    """Where the cores went during the batched load, per accepted item, and the rate the
    server's work per item would allow if it had every core (none when CPU was not read)."""
    return _cpu_rows(
        f"batched writes, {backend}: CPU per accepted item",
        result,
        result.ok(202) * BATCH,
        "item",
        "PostgreSQL's other processes and the rest" if backend == "PostgreSQL" else "rest of the machine",
        f"{backend}: CPU seconds over the measured window (/proc, read by the load process at its "
        "start and end) / items accepted in it",
    )


def single_cpu_rows(result: LoadResult, plan: WritePlan) -> list[Row]:
    """The same for the single-item load, per request. The load generator's share is the same
    work per request in every run, so it also shows how fast the machine was during the load."""
    return _cpu_rows(
        f"single-item writes, {plan.single_clients} clients: CPU per request",
        result,
        result.ok(202),
        "request",
        "rest of the machine",
        "CPU seconds over the measured window (/proc, read by the load process at its start and "
        "end) / requests answered 202 in it; the load generator does the same work per request in "
        "every run, so its figure moves with the speed of the machine",
    )


def _cpu_rows(name: str, result: LoadResult, count: int, unit: str, rest_name: str, how: str) -> list[Row]:
    """CPU per ``unit`` (``count`` of them in the window) of each watched role, the rest and the
    load generator; none when CPU was not read or nothing was answered."""
    capacity = result.cpu.get(MACHINE_CAPACITY, 0.0)
    if not count or capacity <= 0 or result.elapsed_s <= 0:
        return []
    per_unit = {role: seconds * 1e6 / count for role, seconds in result.cpu.items()}
    roles = [role for role in result.cpu if role not in (LOAD_GENERATOR, MACHINE_BUSY, MACHINE_CAPACITY)]
    remainder = per_unit[MACHINE_BUSY] - per_unit[LOAD_GENERATOR] - sum(per_unit[role] for role in roles)
    rest = max(0.0, remainder)
    server = sum(per_unit[role] for role in roles) + rest
    # The processes' times are kept precisely, the machine's per tick: over a short window the
    # parts can add up to a little more than the whole, and the rest is then shown as 0.
    clamped = (
        f"; the processes counted {fmt_us(-remainder)} more than the machine's busy time (kept per "
        "tick), so the rest shows as 0"
        if remainder < 0
        else ""
    )
    cores = capacity / result.elapsed_s
    ceiling = cores * 1e6 / server if server > 0 else 0.0
    parts = ", ".join(f"{role} {fmt_us(per_unit[role])}" for role in roles)
    return [
        Row(
            name=name,
            value=f"{parts}, {rest_name} {fmt_us(rest)}",
            reference=(
                f"load generator {fmt_us(per_unit[LOAD_GENERATOR])}; "
                f"cores busy {fmt_percent(result.cpu[MACHINE_BUSY] / capacity)} of {cores:.1f}"
            ),
            ratio=f"<= {fmt_rate(ceiling, 'items/s' if unit == 'item' else 'req/s')}",
            note=(
                f"{how}; the ratio is the rate the server's work per {unit} (all but the load "
                f"generator: {fmt_us(server)}) would allow on all {cores:.1f} cores, if the load cost "
                f"nothing and the work per {unit} stayed the same{clamped}"
            ),
            numbers={
                f"cpu_us_per_{unit}": {role: us for role, us in per_unit.items() if role != MACHINE_CAPACITY},
                f"rest_us_per_{unit}": rest,
                f"ceiling_{'items' if unit == 'item' else 'req'}_per_s": ceiling,
                "cores": cores,
            },
        )
    ]
