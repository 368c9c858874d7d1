"""Checking and reporting an ingest run: verify ours's lake, fill the results file, print tables.

The parent process does this after the children have measured; the JSON keys and labels are
those of the committed ``bench/results/ingest.json``, so results stay comparable across runs.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import Results, Timed, print_table
from _ingest_data import BATCH_ROWS, BLOCK_SIZE, DATASET, EMAIL_RX, SCHEMA

PATHS = [
    ("ours", "ours: run_connector (FilesReader, PII, conform, contract, Parquet)"),
    ("pyarrow_floor", "pyarrow floor: read_csv + write_table"),
    ("pyarrow_stream_floor", "pyarrow stream floor: open_csv (text) + ParquetWriter"),
    ("pyarrow_plus_pii", "pyarrow stream + the PII policy (Arrow)"),
]


def verify(lake_dir: Path, meta: dict[str, Any], rows: int, report: dict[str, Any]) -> dict:
    """Conservation, planted rows, no e-mail address in any written value."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lake = lake_dir / "lake"
    raw_parts = sorted((lake / f"raw_{DATASET}").glob("**/*.parquet"))
    quarantine_parts = sorted((lake / f"quarantine_{DATASET}").glob("**/*.parquet"))
    landed = sum(pq.read_metadata(p).num_rows for p in raw_parts)
    quarantine = pa.concat_tables([pq.read_table(p) for p in quarantine_parts])
    assert report["rows_in"] == rows, report
    assert report["rows_landed"] + report["records_quarantined"] == rows, report
    assert landed == report["rows_landed"], (landed, report)
    offsets = set(quarantine.column("offset").to_pylist())
    assert len(offsets) == report["records_quarantined"], (len(offsets), report)
    planted = {f"transactions.csv:line {i + 2}" for g in meta["planted"].values() for i in g}
    assert offsets == planted, (len(offsets - planted), len(planted - offsets))
    by_rule: dict[str, int] = {}
    for rule in quarantine.column("rule").to_pylist():
        by_rule[rule] = by_rule.get(rule, 0) + 1

    sample = pa.array(meta["sample_addresses"])
    lowered = pc.utf8_lower(sample)
    scanned = 0
    for part in [*raw_parts, *quarantine_parts]:
        table = pq.read_table(part)
        for name in table.column_names:
            column = table.column(name)
            if not pa.types.is_string(column.type):
                continue
            scanned += len(column)
            hits = pc.sum(pc.match_substring_regex(column, EMAIL_RX)).as_py() or 0
            assert hits == 0, f"{part.name}:{name} holds {hits} e-mail addresses"
            exact = pc.sum(pc.is_in(pc.utf8_lower(column), value_set=lowered)).as_py() or 0
            assert exact == 0, f"{part.name}:{name} holds input addresses"
    sample_in_notes = sum("@" in a for a in meta["sample_addresses"])
    return {
        "rows_in": rows,
        "rows_landed": landed,
        "records_quarantined": len(offsets),
        "planted_bad_rows": len(planted),
        "quarantine_rows_by_rule": by_rule,
        "email_regex_hits_in_parquet": 0,
        "sample_addresses_checked": sample_in_notes,
        "string_values_scanned": scanned,
        "raw_parts": len(raw_parts),
        "quarantine_parts": len(quarantine_parts),
    }


def _rate(rows: int, times: list[float]) -> float:
    """Rows over the median wall time (not the median of rates: they differ for even reps)."""
    return rows / statistics.median(times)


def build_results(
    rows: int,
    *,
    size_mib: float,
    bad_fraction: float,
    reps: int,
    meta: dict[str, Any],
    results: dict[str, dict[str, Any]],
    checks: dict[str, Any],
    profile: dict[str, Any],
    total_runtime_s: float,
) -> Results:
    """The house results document, with the labels of the committed ``ingest.json``."""
    import pandas as pd
    import pyarrow as pa

    out = Results("ingest")
    for key, _ in PATHS:
        res = results[key]
        out.measure(key, _rate(rows, res["times_s"]), "rows/s")
        out.measure(f"{key}_s_per_run", statistics.median(res["times_s"]), "s")
        out.measure(f"{key}_cpu_s_per_run", statistics.median(res["cpu_s"]), "CPU s")
        out.measure(f"{key}_peak_rss_work", res["work_peak_mib"], "MiB")
        out.measure(f"{key}_peak_rss_process", res["peak_mib"], "MiB")
    work_ratio = results["ours"]["work_peak_mib"] / results["pyarrow_floor"]["work_peak_mib"]
    process_ratio = results["ours"]["peak_mib"] / results["pyarrow_floor"]["peak_mib"]
    out.measure("peak_rss_work_ratio_vs_pyarrow_floor", work_ratio, "x")
    out.measure("peak_rss_process_ratio_vs_pyarrow_floor", process_ratio, "x")

    out.params = {
        "rows": rows,
        "csv_mib": size_mib,
        "source_columns": 21,
        "landed_columns": len(SCHEMA),
        "bad_fraction": bad_fraction,
        "planted_bad_rows": {k: len(v) for k, v in meta["planted"].items()},
        "note_kinds": meta["note_kinds"],
        "batch_rows": BATCH_ROWS,
        "block_size_bytes": BLOCK_SIZE,
        "pii": "tokenize email/phone/account_number, mask note, drop full_name",
        "contract_expectations": 8,
        "parquet_compression": "zstd",
        "reps_requested": reps,
        "reps_run": {key: len(results[key]["times_s"]) for key, _ in PATHS},
        "warmup": "ours and pyarrow_plus_pii: first 100k-row batch; floors: whole file",
        "statistic": "median",
        "schedule": "every path's child kept warm; one rep of each per round, order rotating",
        "per_round_ours_over_floor": [
            floor / ours
            for ours, floor in zip(
                results["ours"]["times_s"], results["pyarrow_floor"]["times_s"], strict=False
            )
        ],
        "all_rates_rows_per_s": {
            key: Timed(results[key]["times_s"], None).rates(rows) for key, _ in PATHS
        },
        "memory": (
            "each path in a fresh subprocess: process = VmHWM over the child's life "
            "(imports, warm-up, reps); work = VmHWM over the timed reps (reset with "
            "/proc/self/clear_refs after the warm-up) minus the RSS they started from; "
            "both plus the peak RSS of ours' phone worker process; CPU includes the worker's"
        ),
        "phone_worker_peak_mib": results["ours"]["phone_worker_peak_mib"],
        "peak_reset": {key: results[key]["peak_reset"] for key, _ in PATHS},
        "ours_report": results["ours"]["report"],
        "verification": checks,
        "profile": profile,
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_at_end": list(os.getloadavg()),
        "total_runtime_s": total_runtime_s,
    }
    ours = out.value("ours")
    out.ratio("vs_pyarrow_floor", ours / out.value("pyarrow_floor"))
    out.ratio("vs_pyarrow_stream_floor", ours / out.value("pyarrow_stream_floor"))
    out.ratio("vs_pyarrow_plus_pii", ours / out.value("pyarrow_plus_pii"))
    out.ratio(
        "cpu_time_vs_pyarrow_floor",
        out.value("pyarrow_floor_cpu_s_per_run") / out.value("ours_cpu_s_per_run"),
    )
    out.ratio("peak_rss_work_vs_pyarrow_floor", work_ratio)
    out.ratio("peak_rss_process_vs_pyarrow_floor", process_ratio)
    return out


def print_report(
    out: Results, results: dict[str, dict[str, Any]], profile: dict[str, Any], top: int
) -> None:
    """The summary table, the ratios, the stages of ours and its top functions."""
    rows = out.params["rows"]
    planted = sum(out.params["planted_bad_rows"].values())
    size_mib = out.params["csv_mib"]
    print(f"\ningest: {rows:,} rows x 21 columns ({size_mib:.0f} MiB CSV), {planted} bad rows")
    print_table(
        ["path", "rows/s", "s/run", "CPU s", "work MiB", "proc MiB", "reps (rows/s)"],
        [
            [
                label,
                out.value(key),
                out.value(f"{key}_s_per_run"),
                out.value(f"{key}_cpu_s_per_run"),
                out.value(f"{key}_peak_rss_work"),
                out.value(f"{key}_peak_rss_process"),
                ", ".join(f"{rows / t:,.0f}" for t in results[key]["times_s"]),
            ]
            for key, label in PATHS
        ],
        ["s", ",.0f", ".2f", ".2f", ".0f", ".0f", "s"],
    )
    r = out.ratios
    print(
        f"ratios (ours / reference rows/s): vs pyarrow floor {r['vs_pyarrow_floor']:.3f}x, "
        f"vs stream floor {r['vs_pyarrow_stream_floor']:.3f}x, "
        f"vs stream + PII {r['vs_pyarrow_plus_pii']:.3f}x"
    )
    print(
        f"peak memory ours / floor: work {r['peak_rss_work_vs_pyarrow_floor']:.2f}x, "
        f"process {r['peak_rss_process_vs_pyarrow_floor']:.2f}x"
    )
    print(f"\nstages of ours (wall, {profile['rows']:,} rows, no profiler):")
    for name, seconds in profile["stages_wall_s"].items():
        print(f"  {name:<44} {seconds:>7.2f} s")
    print(f"top {top} functions by own time (cProfile, {profile['rows']:,} rows):")
    for entry in profile["top_tottime"]:
        print(
            f"  {entry['tottime_s']:>7.2f} s own {entry['cumtime_s']:>7.2f} s cum "
            f"{entry['calls']:>10,}  {entry['function']}"
        )
