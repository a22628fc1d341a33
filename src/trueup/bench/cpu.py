"""Where a load's CPU time went: each watched process, the load generator, and the machine.

The load generator, the server under test, its child processes and (on PostgreSQL) the
database share the same cores. A rate alone does not say which of them the cores went to; CPU
seconds per accepted item do, and with them the rate the server's own work per item would allow
if it had every core. The load process reads them from ``/proc`` at the start and at the end of
its measured window (it is the one that knows the window). That is close to, not exactly, the
work of the requests it counted: requests in flight at either edge are worked on in the window
but not counted (a few per connection, against thousands counted), and the sequencer seals in
the window some items accepted before it. Cores are the host's (``/proc/stat``): under a CPU
quota the ceiling overstates what the deployment may use.

On PostgreSQL the load process also reads ``pg_stat_activity`` at each end of the window and
charges each backend to the Trueup process that holds its connection (:func:`backend_roles`);
the database's other processes (WAL writer, checkpointer) and connections of one purpose (the
sequencer's planner-statistics ``ANALYZE``, ``trueup/<pid>/statistics``, on a connection of its
own each time) stay in the rest of the machine.

Where ``/proc`` is missing (not Linux) nothing is read and the report leaves the row out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LOAD_GENERATOR",
    "MACHINE_BUSY",
    "MACHINE_CAPACITY",
    "CpuSample",
    "backend_roles",
    "cpu_used",
    "sample",
]

LOAD_GENERATOR = "load generator"
MACHINE_BUSY = "machine busy"
MACHINE_CAPACITY = "machine capacity"
"""Keys of :func:`cpu_used` beside the watched roles: CPU seconds of the load process itself,
of every core together (busy: neither idle nor waiting for I/O), and the cores' total time."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU counters at one instant, in clock ticks (``own_s``: seconds)."""

    machine_busy: int
    machine_total: int
    processes: dict[str, int]
    """Each watched role's ticks: the sum over its processes (user + system, all threads)."""
    own_s: float


def machine_ticks(stat_text: str) -> tuple[int, int]:
    """``(busy, total)`` ticks of all cores from the text of ``/proc/stat``.

    Busy is everything but ``idle`` and ``iowait``; ``guest`` time is already counted in
    ``user``, so only the first eight fields add up to the total.
    """
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(value) for value in fields[1:9]]
            total = sum(values)
            return total - values[3] - values[4], total
    raise ValueError("no aggregate cpu line in /proc/stat")


def process_ticks(stat_text: str) -> int:
    """User + system ticks of one process from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may hold spaces or parentheses itself,
    so the fields are counted from the last ``)``: ``utime`` and ``stime`` are fields 14 and 15.
    """
    after_name = stat_text.rsplit(")", 1)[1].split()
    return int(after_name[11]) + int(after_name[12])


def sample(watch: Mapping[str, Sequence[int]]) -> CpuSample | None:
    """The counters now, or ``None`` where ``/proc`` cannot be read. A watched process that
    cannot be read (it has exited) counts nothing, so a role whose process exits during a
    window is under-counted."""
    try:
        busy, total = machine_ticks(Path("/proc/stat").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    processes: dict[str, int] = {}
    for role, pids in watch.items():
        ticks = 0
        for pid in pids:
            try:
                text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
                ticks += process_ticks(text)
            except (OSError, IndexError, ValueError):
                continue
        processes[role] = ticks
    return CpuSample(busy, total, processes, time.process_time())


def backend_roles(
    activity: Iterable[tuple[int, str]], watch: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """The PostgreSQL backends of the watched processes, as roles ``PostgreSQL for the <role>``,
    from ``pg_stat_activity``'s ``(pid, application_name)``: Trueup names each connection
    ``trueup/<pid of its process>`` (``storage/postgres_urls.py``). Every watched role gets one,
    empty when it holds no connection, so a backend opened during a window counts from zero."""
    owner = {pid: role for role, pids in watch.items() for pid in pids}
    roles: dict[str, list[int]] = {f"PostgreSQL for the {role}": [] for role in watch}
    for backend, name in activity:
        prefix, _, client = name.partition("/")
        if prefix == "trueup" and client.isdigit() and int(client) in owner:
            roles[f"PostgreSQL for the {owner[int(client)]}"].append(backend)
    return roles


def cpu_used(first: CpuSample, last: CpuSample) -> dict[str, float]:
    """CPU seconds spent between two samples: per watched role, by the load generator, by the
    whole machine (:data:`MACHINE_BUSY`) and the cores' capacity over the window
    (:data:`MACHINE_CAPACITY`, cores x seconds)."""
    used = {
        role: max(0, last.processes.get(role, 0) - ticks) / _CLOCK_TICKS
        for role, ticks in first.processes.items()
    }
    used[LOAD_GENERATOR] = max(0.0, last.own_s - first.own_s)
    used[MACHINE_BUSY] = max(0, last.machine_busy - first.machine_busy) / _CLOCK_TICKS
    used[MACHINE_CAPACITY] = max(0, last.machine_total - first.machine_total) / _CLOCK_TICKS
    return used
