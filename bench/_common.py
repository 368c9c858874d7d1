"""What every benchmark script shares: timing repetitions, summaries, the results file, tables.

The scripts are run as ``python bench/<name>.py`` (their folder is on ``sys.path``), so they
import this as ``_common``; the leading underscore says it is not a benchmark itself.

Every script writes one JSON document of the same shape, so results can be compared and read
by tools without knowing which script made them::

    {"benchmark": str, "params": {...},
     "measurements": {label: {"value": number, "unit": str}},
     "ratios": {label: number}}

A ratio is ours over the other (rates: ours / theirs; latencies: theirs / ours), so above 1
always means ours is better; its label names the other (``vs_plain_loop``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- timing


@dataclass
class Timed:
    """Wall-clock seconds of each timed repetition and the output of the last one."""

    seconds: list[float]
    output: Any

    def rates(self, units: float) -> list[float]:
        """``units`` (rows, requests) per second, one per repetition."""
        return [units / s for s in self.seconds]

    def median_rate(self, units: float) -> float:
        return statistics.median(self.rates(units))


def time_reps(fn: Callable[[], Any], reps: int, *, warmup: int = 1) -> Timed:
    """Run ``fn`` ``warmup`` times untimed (imports, caches, connections), then time ``reps``."""
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    output = None
    for _ in range(warmup):
        output = fn()
    seconds: list[float] = []
    for _ in range(reps):
        started = time.perf_counter()
        output = fn()
        seconds.append(time.perf_counter() - started)
    return Timed(seconds, output)


def measure_rate(
    fn: Callable[[], Any], units: float, reps: int, *, warmup: int = 1
) -> tuple[float, list[float], Any]:
    """Median rate, every repetition's rate, and the last output of ``fn`` over ``units``."""
    timed = time_reps(fn, reps, warmup=warmup)
    return timed.median_rate(units), timed.rates(units), timed.output


# ----------------------------------------------------------------------------- summaries


def pct(values: Sequence[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, max and mean: what a latency distribution is reported as."""
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def rounded(value: Any, digits: int = 3) -> Any:
    """``value`` with every float rounded, at any depth (results stay readable in review)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def machine() -> dict[str, Any]:
    """Where the figures were taken; other work on the machine skews every one of them."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


# ----------------------------------------------------------------------------- results file


@dataclass
class Results:
    """The house results document, filled in as a script measures."""

    benchmark: str
    params: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)

    def measure(self, label: str, value: float, unit: str) -> None:
        self.measurements[label] = {"value": value, "unit": unit}

    def value(self, label: str) -> float:
        return float(self.measurements[label]["value"])

    def ratio(self, label: str, value: float) -> None:
        """``label`` names the other side (``vs_plain_loop``); ``value`` is ours over it."""
        self.ratios[label] = value

    def document(self, digits: int | None = None) -> dict[str, Any]:
        doc = {
            "benchmark": self.benchmark,
            "params": self.params,
            "measurements": self.measurements,
            "ratios": self.ratios,
        }
        return rounded(doc, digits) if digits is not None else doc

    def write(self, path: Path, *, digits: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document(digits), indent=2) + "\n", encoding="utf-8")
        return path


def add_output_argument(
    parser: argparse.ArgumentParser, benchmark: str, flag: str = "--output"
) -> None:
    """``--output``, defaulting to ``bench/results/<benchmark>.json`` (the committed figures)."""
    parser.add_argument(
        flag,
        type=Path,
        default=RESULTS_DIR / f"{benchmark}.json",
        help="where the results JSON goes (default: %(default)s)",
    )


# ----------------------------------------------------------------------------- tables


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], formats: Sequence[str]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    ``formats`` holds one format spec per column (``"s"``, ``",.0f"``, ``".2f"``); widths fit
    the widest cell, so labels never shift the numbers out of line.
    """
    if len(header) != len(formats):
        raise ValueError("one format per column")
    cells = [list(header)] + [
        [format(v, f) if v is not None else "-" for v, f in zip(row, formats, strict=True)]
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], formats: Sequence[str]
) -> None:
    print(table(header, rows, formats))


def print_ratios(ratios: dict[str, float]) -> None:
    print("ratios (ours over the other): " + ", ".join(f"{k} {v:.3g}x" for k, v in ratios.items()))
