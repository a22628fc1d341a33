"""The machine a run measured: cores, CPU, memory, versions; and peak memory of processes, as rows."""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import sys

from trueup.bench.report import Row, fmt_bytes_kib

__all__ = ["harness_peak_rss_kib", "machine_info", "rss_rows"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine_info(postgres_version: str | None) -> dict[str, str]:
    """What the report prints under its title."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": f"{usable} usable of {os.cpu_count()}",
        "cpu": _cpu_model(),
        "memory": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version or "not reachable",
    }


def harness_peak_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def rss_rows(rss: dict[str, int], harness_kib: int) -> list[Row]:
    """Peak resident memory of the servers (VmHWM) and of this harness (ru_maxrss)."""
    rows: list[Row] = []
    measured = {name: kib for name, kib in rss.items() if kib}
    if measured:
        worst = max(measured, key=lambda name: measured[name])
        others = ", ".join(
            f"{name.removeprefix('server, ')} {fmt_bytes_kib(kib)}" for name, kib in measured.items()
        )
        rows.append(
            Row(
                name="peak RSS, server + its child processes (VmHWM, summed)",
                value=fmt_bytes_kib(measured[worst]),
                reference=worst.removeprefix("server, "),
                note=others,
                numbers=dict(measured),
            )
        )
    rows.append(
        Row(
            name="peak RSS, harness (ru_maxrss)",
            value=fmt_bytes_kib(harness_kib),
            reference="includes the in-memory proof tree",
            numbers={"kib": harness_kib},
        )
    )
    return rows
