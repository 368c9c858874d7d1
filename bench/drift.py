"""Data-drift time: ``compute_drift`` vs plain Evidently ``DataDriftPreset`` on the same data.

Run: ``.venv/bin/python bench/drift.py [--rows N] [--reps N] [--evidently-reps N] [--profile]``

Builds a reference and a current window of ``--rows`` rows x 20 columns (15 numeric, 5
categorical; see ``_drift_data``) deterministically, then in one process times

(a) ``compute_drift(reference, current)`` -- the project's drift verdicts;
(b) plain ``Report([DataDriftPreset()], include_tests=True).run(...)`` on the full data, the
    way an Evidently user gets the same verdicts.

Evidently is imported and warmed up on a small slice first (untimed), so neither side pays for
imports; (a) is warmed up once and timed ``--reps`` times, (b) timed ``--evidently-reps`` times;
medians are reported. Every column's method, threshold, score and verdict from (a) must match
(b)'s, and the drifted-columns count too: the ratio is only worth anything if both did the
same job. ``--profile`` adds one untimed, profiled Evidently run and records where its time
goes. Results go to ``bench/results/drift.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import statistics
import sys
import warnings
from typing import Any

import pandas as pd
from _common import Results, add_output_argument, machine, print_ratios, print_table, time_reps
from _drift_data import DRIFTED, make_windows

from aios_dagster.lib.monitoring.fast_drift import DriftResult, compute_drift

os.environ.setdefault("DO_NOT_TRACK", "1")

_METHOD = re.compile(r"The drift detection method is (?P<method>.+)\. The drift threshold")
SCORE_TOLERANCE = 1e-9
"""Relative difference between the two scores still counted as the same score."""


def plain_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> Any:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Report([DataDriftPreset()], include_tests=True).run(
            current_data=current, reference_data=reference
        )


def evidently_verdicts(snapshot: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """Per column (report order) method, threshold, score, verdict; and the drifted count."""
    data = snapshot.dict()
    tests = {}
    for test in data["tests"]:
        name = str(test["name"])
        if name.startswith("Value Drift for column "):
            found = _METHOD.search(str(test["description"]))
            tests[name.removeprefix("Value Drift for column ")] = (
                found["method"] if found else "?",
                str(test["status"]).endswith("FAIL"),
            )
    columns: dict[str, dict[str, Any]] = {}
    count = -1
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            count = int(metric["value"]["count"])
        elif config["type"].endswith("ValueDrift"):
            method, drifted = tests[config["column"]]
            columns[config["column"]] = {
                "method": method,
                "threshold": float(config["threshold"]),
                "score": float(metric["value"]),
                "drifted": drifted,
            }
    return columns, count


def compare(ours: DriftResult, plain: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Per column: does ours say exactly what Evidently says?"""
    agree = {}
    for column in plain.keys() | {c.column for c in ours.columns}:
        theirs = plain.get(column)
        mine = next((c for c in ours.columns if c.column == column), None)
        agree[column] = (
            theirs is not None
            and mine is not None
            and (mine.method, mine.threshold, mine.drifted)
            == (theirs["method"], theirs["threshold"], theirs["drifted"])
            and abs(mine.score - theirs["score"])
            <= SCORE_TOLERANCE * max(abs(theirs["score"]), 1e-300)
        )
    return agree


def profile_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Where one plain Evidently run spends its time: self time by package, heaviest calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    plain_evidently(reference, current)
    profiler.disable()
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    packages = ("evidently", "scipy", "plotly", "pandas", "numpy")
    self_time: dict[str, float] = {}
    calls = []
    for (path, line, function), (_, count, own, cumulative, _) in entries.items():
        package = next((p for p in packages if f"/{p}/" in path), None)
        # C functions (numpy's sort, pandas' hash tables) have no path: group them together.
        group = package or ("C functions" if path == "~" else _top_package(path))
        self_time[group] = self_time.get(group, 0.0) + own
        if package is not None:
            where = path.split("site-packages/")[-1]
            calls.append({"call": f"{where}:{line}({function})", "calls": count, "s": cumulative})
    calls.sort(key=lambda row: -row["s"])
    by_package = dict(sorted(self_time.items(), key=lambda kv: -kv[1]))
    return {"self_seconds_by_package": by_package, "heaviest_calls": calls[:25]}


def _top_package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/")[-1].split("/")[0]
    return "python stdlib" if "/lib/python" in path else "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5, help="timed runs of ours")
    parser.add_argument("--evidently-reps", type=int, default=3, help="timed Evidently runs")
    parser.add_argument("--profile", action="store_true", help="add a profiled Evidently run")
    add_output_argument(parser, "drift")
    args = parser.parse_args(argv)

    reference, current = make_windows(args.rows)
    print(f"drift: {args.rows:,} rows x {reference.shape[1]} columns per window")
    plain_evidently(reference.head(2000), current.head(2000))  # imports and caches, untimed

    ours = time_reps(lambda: compute_drift(reference, current), args.reps, warmup=1)
    print(f"  ours: {', '.join(f'{s:.2f}' for s in ours.seconds)} s")
    theirs = time_reps(lambda: plain_evidently(reference, current), args.evidently_reps, warmup=0)
    print(f"  plain Evidently: {', '.join(f'{s:.1f}' for s in theirs.seconds)} s")
    result: DriftResult = ours.output
    plain, plain_count = evidently_verdicts(theirs.output)
    agree = compare(result, plain)
    same_count = plain_count == result.drifted_columns
    profile = profile_evidently(reference, current) if args.profile else None

    ours_s, theirs_s = statistics.median(ours.seconds), statistics.median(theirs.seconds)
    results = Results(
        "drift",
        params={
            "rows": args.rows,
            "columns": reference.shape[1],
            "numeric_columns": sum(c.startswith("n_") for c in reference.columns),
            "categorical_columns": sum(c.startswith("c_") for c in reference.columns),
            "planted_drift": list(DRIFTED),
            "reps": args.reps,
            "evidently_reps": args.evidently_reps,
            "warmup": "ours once; Evidently on a 2,000-row slice (imports, caches)",
            "statistic": "median",
            "evidently_call": "Report([DataDriftPreset()], include_tests=True).run(full data)",
            "ours_seconds_all": ours.seconds,
            "evidently_seconds_all": theirs.seconds,
            "score_tolerance": SCORE_TOLERANCE,
            "disagreeing_columns": sorted(c for c, ok in agree.items() if not ok),
            "drifted_count_agrees": same_count,
            "engines": {c.column: c.engine for c in result.columns if c.engine != "numpy"},
            "verdicts": {
                c.column: {"method": c.method, "score": c.score, "drifted": c.drifted}
                for c in result.columns
            },
            "evidently": _evidently_version(),
            "pandas": pd.__version__,
            **machine(),
            **({"evidently_profile": profile} if profile is not None else {}),
        },
    )
    results.measure("ours", ours_s, "s")
    results.measure("plain_evidently", theirs_s, "s")
    results.measure("agreement", sum(agree.values()), f"columns of {len(agree)}")
    results.measure("drifted_columns", result.drifted_columns, f"columns of {len(agree)}")
    results.ratio("vs_plain_evidently", theirs_s / ours_s)
    results.write(args.output)

    print_table(
        ["column", "method", "threshold", "Evidently", "ours", "drift E/ours", "agree"],
        [
            [
                c.column,
                c.method,
                c.threshold,
                plain.get(c.column, {}).get("score"),
                c.score,
                f"{plain.get(c.column, {}).get('drifted')}/{c.drifted}",
                "yes" if agree[c.column] else "NO",
            ]
            for c in result.columns
        ],
        ["s", "s", ".3g", ".10g", ".10g", "s", "s"],
    )
    print(f"\ndrifted columns: ours {result.drifted_columns}, Evidently {plain_count}")
    print(f"median s: ours {ours_s:.2f}, plain Evidently {theirs_s:.1f}")
    print_ratios(results.ratios)
    print(f"agreement: {sum(agree.values())} columns of {len(agree)}")
    print(f"wrote {args.output}")
    return 0 if all(agree.values()) and same_count else 1


def _evidently_version() -> str:
    from evidently import __version__

    return str(__version__)


if __name__ == "__main__":
    sys.exit(main())
