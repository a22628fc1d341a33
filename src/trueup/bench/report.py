"""The benchmark report: one table of figures, each beside its reference, ratio and target.

A :class:`Row` is one figure. Its verdict is ``pass`` when every :class:`Check` against the
DESIGN.md §6 targets holds, ``MISS`` naming the failed checks otherwise, ``info`` for
figures without a target, ``indicative`` for a figure measured below the size its target
names (the quick run; its checks' results are in the notes, and only a run at that size
decides), and ``skipped``/``error`` with the reason when it could not be measured. The same
report renders as a plain-text table (stdout), Markdown and JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Check",
    "Report",
    "Rounding",
    "Row",
    "fmt_bytes_kib",
    "fmt_count",
    "fmt_ms",
    "fmt_percent",
    "fmt_rate",
    "fmt_times",
    "fmt_us",
]


@dataclass(frozen=True, slots=True)
class Check:
    """One target: ``label`` as printed (``>= 100,000/s``) and whether it held."""

    label: str
    ok: bool


@dataclass(slots=True)
class Row:
    """One figure of the report. ``numbers`` keeps the raw values for the JSON file."""

    name: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    checks: tuple[Check, ...] = ()
    note: str = ""
    skipped: str | None = None
    error: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    indicative: str | None = None
    """Why the figure cannot decide its target (``measured at 1,000,000 leaves; the target is
    at 10,000,000``): its verdict is then ``indicative`` whatever its checks say."""

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "error"
        if self.skipped is not None:
            return "skipped"
        if not self.checks:
            return "info"
        if self.indicative is not None:
            return "indicative"
        return self.checked

    @property
    def checked(self) -> str:
        """What the checks alone say: ``pass`` or ``MISS (<failed checks>)``.

        A miss always names what failed, even when every check did: a row's checks may hold
        more than its target column shows (its replies, say), and a bare ``MISS`` would hide
        which of them failed.
        """
        failed = [check.label for check in self.checks if not check.ok]
        if not failed:
            return "pass"
        return "MISS (" + "; ".join(failed) + ")"

    @classmethod
    def not_measured(
        cls, name: str, target: str, *, skipped: str | None = None, error: str | None = None
    ) -> Row:
        """A row for a figure that could not be measured (exactly one reason given)."""
        reason = f"skipped: {skipped}" if skipped is not None else f"error: {error}"
        return cls(name=name, value=reason, target=target, skipped=skipped, error=error)


Rounding = Literal["up", "down"] | None
"""How a figure judged against a bound is rounded to the digits shown: away from passing
(``up`` for an upper bound such as a latency, ``down`` for a lower bound such as a rate), so a
figure that missed its target is never shown as meeting it (24.996 ms against <= 25 ms may show
as 25.00, but 25.004 ms shows as 25.01, not 25.00); ``None``: to the nearest."""


def _shown(value: float, digits: int, rounding: Rounding) -> float:
    if rounding is None:
        return value
    scale = 10.0**digits
    whole = math.ceil(value * scale) if rounding == "up" else math.floor(value * scale)
    return whole / scale


def fmt_count(value: float) -> str:
    return f"{value:,.0f}"


def fmt_rate(value: float, unit: str, rounding: Rounding = None) -> str:
    return f"{_shown(value, 0, rounding):,.0f} {unit}"


def fmt_ms(value: float, rounding: Rounding = None) -> str:
    digits = 2 if _shown(value, 2, rounding) < 100 else 0
    return f"{_shown(value, digits, rounding):,.{digits}f} ms"


def fmt_us(value: float, rounding: Rounding = None) -> str:
    return f"{_shown(value, 2, rounding):,.2f} µs"


def fmt_percent(fraction: float, rounding: Rounding = None) -> str:
    return f"{_shown(fraction * 100, 1, rounding):.1f} %"


def fmt_times(factor: float, rounding: Rounding = None) -> str:
    return f"{_shown(factor, 2, rounding):,.2f}x"


def fmt_bytes_kib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _note(row: Row) -> str:
    """The row's note; for an indicative row, first why and what its checks gave at its size."""
    if row.indicative is None or not row.checks:
        return row.note
    results = "; ".join(f"{check.label}: {'held' if check.ok else 'failed'}" for check in row.checks)
    told = f"indicative only, not judged ({row.indicative}); at this size {results}"
    return f"{told}; {row.note}" if row.note else told


_COLUMNS = ("figure", "value", "reference (same run)", "ratio", "target (DESIGN.md §6)", "verdict")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.name, row.value, row.reference, row.ratio, row.target, row.verdict)


@dataclass(slots=True)
class Report:
    """Every row of one run, the machine it ran on and how long each part took."""

    title: str
    mode: str
    machine: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    sections: list[tuple[str, float]] = field(default_factory=list)
    total_seconds: float = 0.0

    def add(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)

    @property
    def misses(self) -> int:
        return sum(1 for row in self.rows if row.verdict.startswith("MISS"))

    def _summary_line(self) -> str:
        counted = [row.verdict for row in self.rows]
        passes = sum(1 for verdict in counted if verdict == "pass")
        indicative = sum(1 for verdict in counted if verdict == "indicative")
        skipped = sum(1 for verdict in counted if verdict == "skipped")
        errors = sum(1 for verdict in counted if verdict == "error")
        shown = f", {indicative} indicative (below the target's size: not judged)" if indicative else ""
        return (
            f"{passes} pass, {self.misses} miss{shown}, {skipped} skipped, {errors} error; "
            f"total {self.total_seconds:,.0f} s"
        )

    def _notes(self) -> list[str]:
        return [f"{row.name}: {_note(row)}" for row in self.rows if row.note or row.indicative]

    def text(self) -> str:
        """The plain-text table printed to stdout."""
        table = [_COLUMNS, *(_cells(row) for row in self.rows)]
        widths = [max(len(cells[i]) for cells in table) for i in range(len(_COLUMNS))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

        rule = "  ".join("-" * width for width in widths)
        out = [self.title, self._machine_line(), "", line(_COLUMNS), rule]
        out += [line(cells) for cells in table[1:]]
        out += [rule, self._summary_line(), "", "notes:"]
        out += [f"  - {note}" for note in self._notes()]
        out += ["", "time per part: " + ", ".join(f"{name} {secs:,.0f} s" for name, secs in self.sections)]
        return "\n".join(out) + "\n"

    def _machine_line(self) -> str:
        return "machine: " + ", ".join(f"{key} {value}" for key, value in self.machine.items())

    def markdown(self) -> str:
        """The same table as Markdown (``bench/out/latest.md``)."""

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        out = [f"# {self.title}", "", self._machine_line(), "", line(_COLUMNS)]
        out.append("| " + " | ".join("---" for _ in _COLUMNS) + " |")
        out += [line(_cells(row)) for row in self.rows]
        out += ["", self._summary_line(), "", "## Notes", ""]
        out += [f"- {note}" for note in self._notes()]
        out += ["", "## Time per part", ""]
        out += [f"- {name}: {secs:,.1f} s" for name, secs in self.sections]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Everything, with the raw numbers of each row (``bench/out/latest.json``)."""
        return {
            "title": self.title,
            "mode": self.mode,
            "machine": self.machine,
            "rows": [{**asdict(row), "verdict": row.verdict} for row in self.rows],
            "sections": [{"name": name, "seconds": secs} for name, secs in self.sections],
            "total_seconds": self.total_seconds,
        }
