"""Where a load's CPU went (trueup.bench.cpu) and the report row built from it."""

from __future__ import annotations

import os
import sys

import pytest

from trueup.bench.cpu import (
    LOAD_GENERATOR,
    MACHINE_BUSY,
    MACHINE_CAPACITY,
    CpuSample,
    backend_roles,
    cpu_used,
    machine_ticks,
    process_ticks,
    sample,
)
from trueup.bench.loadspec import LoadResult
from trueup.bench.runner import QUICK
from trueup.bench.write_rows import batched_rows, single_rows

PROC_STAT = """cpu  100 5 50 800 40 3 2 0 7 0
cpu0 50 2 25 400 20 1 1 0 7 0
intr 12345
"""


def test_machine_ticks_count_all_but_idle_and_iowait_as_busy() -> None:
    # user nice system idle iowait irq softirq steal; guest (7) is already inside user.
    assert machine_ticks(PROC_STAT) == (100 + 5 + 50 + 3 + 2, 1000)
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        machine_ticks("cpu0 1 2 3 4 5 6 7 8\n")


def test_process_ticks_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", *["0"] * 10, "17", "4", *["0"] * 30]  # state, then utime and stime at 14 and 15
    assert process_ticks("42 (a) b (c)) " + " ".join(fields)) == 21


def test_cpu_used_is_the_difference_in_seconds_per_role() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    first = CpuSample(machine_busy=0, machine_total=0, processes={"API process": 10, "gone": 5}, own_s=1.0)
    last = CpuSample(
        machine_busy=3 * ticks, machine_total=4 * ticks, processes={"API process": 10 + ticks}, own_s=1.25
    )
    assert cpu_used(first, last) == {
        "API process": 1.0,
        "gone": 0.0,  # exited during the window: counted as nothing, never negative
        LOAD_GENERATOR: 0.25,
        MACHINE_BUSY: 3.0,
        MACHINE_CAPACITY: 4.0,
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_sample_sees_this_process_spend_cpu() -> None:
    first = sample({"me": [os.getpid()], "nobody": [2**22 + 12345]})
    assert first is not None
    spins = 0
    while True:  # burn CPU until both of the kernel's counters move: a count, not a time, decides
        spins += sum(range(10_000))
        last = sample({"me": [os.getpid()], "nobody": [2**22 + 12345]})
        assert last is not None
        # A process's times are kept precisely, the machine's per tick: the latter moves later.
        if last.processes["me"] > first.processes["me"] and last.machine_busy > first.machine_busy:
            break
    used = cpu_used(first, last)
    assert used["me"] > 0
    assert used["nobody"] == 0
    assert used[MACHINE_CAPACITY] >= used[MACHINE_BUSY] > 0


def _result_with_cpu(cpu: dict[str, float]) -> LoadResult:
    return LoadResult(completed=20, elapsed_s=10.0, statuses={"202": 20}, cpu=cpu)


def test_the_cpu_row_gives_each_role_per_item_and_the_rate_the_server_would_allow() -> None:
    # 20,000 items in 10 s on 2 cores (20 s of capacity).
    cpu = {
        "API process": 0.4,
        "sequencer process": 0.8,
        LOAD_GENERATOR: 0.2,
        MACHINE_BUSY: 1.6,
        MACHINE_CAPACITY: 20.0,
    }
    rows = batched_rows("PostgreSQL", 50_000, _result_with_cpu(cpu), 40_000.0, QUICK.writes, queued_after=0)
    assert [row.name for row in rows] == [
        "batched writes, PostgreSQL (1,000 items/request, 8 clients)",
        "batched writes, PostgreSQL: CPU per accepted item",
        "batched writes, PostgreSQL: accepted and sealed during the load",
    ]
    row = rows[1]
    assert row.verdict == "info"
    assert row.value == (
        "API process 20.00 µs, sequencer process 40.00 µs, PostgreSQL's other processes and the rest 10.00 µs"
    )
    assert row.reference == "load generator 10.00 µs; cores busy 8.0 % of 2.0"
    # 70 µs of the server's work per item on 2 cores: 2 / 70e-6 items/s.
    assert row.ratio == "<= 28,571 items/s"
    assert row.numbers["rest_us_per_item"] == pytest.approx(10.0)


def test_no_cpu_row_without_cpu_figures_or_accepted_items() -> None:
    assert len(batched_rows("SQLite", 100_000, _result_with_cpu({}), 1.0, QUICK.writes, queued_after=0)) == 2
    nothing = LoadResult(completed=1, elapsed_s=10.0, statuses={"503": 1}, cpu={MACHINE_CAPACITY: 20.0})
    rows = batched_rows("SQLite", 100_000, nothing, 1.0, QUICK.writes, queued_after=0)
    assert "CPU per accepted item" not in " ".join(row.name for row in rows)


def test_backends_are_charged_to_the_trueup_process_that_holds_their_connection() -> None:
    watch = {"API process": [100, 101], "sequencer process": [200]}
    activity = [
        (9001, "trueup/100"),
        (9002, "trueup/101"),
        (9003, "trueup/200"),
        (9004, "trueup/999"),  # another server's
        (9005, "psql"),
        (9006, ""),  # the database's own processes
        (9007, "trueup/x"),
        (9008, "trueup/200/statistics"),  # a connection of one purpose (ANALYZE): left in the rest
    ]
    assert backend_roles(activity, watch) == {
        "PostgreSQL for the API process": [9001, 9002],
        "PostgreSQL for the sequencer process": [9003],
    }
    # A role without a connection yet still has its entry, so one opened later counts from zero.
    assert backend_roles([], {"sequencer process": [200]}) == {"PostgreSQL for the sequencer process": []}


def test_the_single_item_load_has_a_cpu_row_per_request() -> None:
    # 20 requests in 10 s; the load generator's share shows how fast the machine was.
    cpu = {"API process": 0.002, LOAD_GENERATOR: 0.0006, MACHINE_BUSY: 0.003, MACHINE_CAPACITY: 20.0}
    result = LoadResult(completed=20, elapsed_s=10.0, statuses={"202": 20}, cpu=cpu)
    echo = LoadResult(completed=100, elapsed_s=1.0, statuses={"202": 100})
    rows = single_rows(result, echo, QUICK.writes)
    row = rows[-1]
    assert row.name == "single-item writes, 64 clients: CPU per request"
    assert row.value == "API process 100.00 µs, rest of the machine 20.00 µs"
    assert row.reference.startswith("load generator 30.00 µs; ")
    # 120 µs of the server's work per request on 2 cores: 2 / 120e-6 req/s.
    assert row.ratio == "<= 16,667 req/s"
    assert "per request" in row.note
    assert row.numbers["ceiling_req_per_s"] == pytest.approx(2 / 120e-6)
    assert "more than the machine's busy time" not in row.note
    # The processes' precise times can add up to more than the machine's per-tick busy time.
    over = {**cpu, MACHINE_BUSY: 0.0025}
    row = single_rows(
        LoadResult(completed=20, elapsed_s=10.0, statuses={"202": 20}, cpu=over), echo, QUICK.writes
    )[-1]
    assert row.value == "API process 100.00 µs, rest of the machine 0.00 µs"
    assert row.note.endswith(
        "the processes counted 5.00 µs more than the machine's busy time (kept per tick), "
        "so the rest shows as 0"
    )
    assert (
        len(single_rows(LoadResult(completed=20, elapsed_s=10.0, statuses={"202": 20}), echo, QUICK.writes))
        == 3
    )
