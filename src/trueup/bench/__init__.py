"""``trueup bench``: the benchmark harness behind ``make bench`` (DESIGN.md §6).

It measures, in one run on this machine, each figure of DESIGN.md §6 beside a reference
measured in the same run — the raw ``executemany`` insert rate of the same rows, the hashlib
bound and pymerkle on the same leaves, the load generator's own ceiling — and prints one
table with the ratio, the target and pass/miss.

- :mod:`.load` — the HTTP/1.1 load generator (raw asyncio sockets, its own process), and
  :mod:`.loadspec` — what it sends and what it measured;
- :mod:`.server` — the real ``trueup serve`` process under test;
- :mod:`.writes`, :mod:`.ledger`, :mod:`.merkle` — the measurements (the last two with their
  rows);
- :mod:`.reference` — the references (raw executemany, hashlib, pymerkle);
- :mod:`.write_rows` — the default server's write loads into rows, :mod:`.deployments` — the
  other deployments beside it, :mod:`.load_figures` — what both read off a load's result;
  :mod:`.report` — the table;
- :mod:`.runner` — one run, in order, bounded in time.

This package sits beside :mod:`trueup.cli` at the top of the layers and may import any layer.
"""

from trueup.bench.runner import FULL, QUICK, RunPlan, run_benchmarks

__all__ = ["FULL", "QUICK", "RunPlan", "run_benchmarks"]
