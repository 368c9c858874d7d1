"""The results document and the printed summary of ``bench/microbatch_latency.py``."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

import dagster as dg
from _common import Results, print_ratios, print_table, summary
from _microbatch_analysis import BREAKDOWN_FIELDS
from _microbatch_delivery import SMALL, PhaseResult

if TYPE_CHECKING:
    from microbatch_latency import Bench


def _phase_params(phase: PhaseResult) -> dict[str, Any]:
    return {
        "delivered": len(phase.delivered),
        "quarantined_by_contract": len(phase.quarantined),
        "timed": len(phase.latencies),
        "wall_s": round(phase.wall_s, 1),
    }


def _params(bench: Bench, total_s: float) -> dict[str, Any]:
    args, results = bench.args, bench.results
    floor = results.get("floor")
    return {
        "emails_daemon": args.emails,
        "emails_in_process": args.floor_emails if floor else 0,
        "interval_s": args.interval,
        "arrival": "steady, one email per interval, temp name then rename into the inbox",
        "latency": "mtime of the first predictions part holding the email - delivery time",
        "reference_data": {**SMALL, "emails_generated": bench.generated.emails},
        "triage_run_s": round(bench.triage_s, 1),
        "model": f"{bench.triage['model_name']} v{bench.triage['model_version']}",
        "sensor_minimum_interval_s": 10,
        "sensor_daemon_loop_s": 5,
        "run_coordinator": f"QueuedRunCoordinator max_concurrent_runs={args.max_runs}, "
        "dequeue_interval_seconds=1",
        "run_launcher": "DefaultRunLauncher (a run worker subprocess per run)",
        "executor": "job default multi_or_in_process_executor: multiprocess (a subprocess "
        "per step, 2 at a time) under the daemon, in-process for the floor",
        "storage": "sqlite (DAGSTER_HOME)",
        "daemon_phase": _phase_params(results["daemon"]["phase"]),
        "in_process_phase": _phase_params(floor["phase"]) if floor else None,
        "daemon_sensor_ticks": results["daemon"]["ticks"],
        "daemon_failed_runs": results["daemon"]["failed_runs"],
        "exactly_once": results["integrity"],
        "daemon_breakdown": results["daemon"]["analysis"],
        "in_process_breakdown": floor["analysis"] if floor else None,
        "total_bench_s": round(total_s, 1),
        "dagster": dg.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_start_and_end": [results["load_at_start"], os.getloadavg()[0]],
        "python": platform.python_version(),
    }


def _measure(results: Results, label: str, value: float, unit: str = "s") -> None:
    results.measure(label, round(value, 2) if isinstance(value, float) else value, unit)


def build_results(bench: Bench, total_s: float) -> Results:
    """The house results document: latency percentiles, run breakdown, ratio to the floor."""
    results = Results("microbatch_latency", params=_params(bench, total_s))
    daemon = bench.results["daemon"]
    ours, analysis = daemon["phase"], daemon["analysis"]
    latency = summary(list(ours.latencies.values()))
    for key, value in latency.items():
        _measure(results, f"daemon_latency_{key}", value)
    _measure(results, "daemon_emails_timed", len(ours.latencies), "emails")
    _measure(results, "daemon_runs_launched", analysis["runs"], "runs")
    for key in ("behind_run_s", "pickup_s", "run_to_persisted_s"):
        for q in ("p50", "p95"):
            if analysis[key]:
                _measure(results, f"daemon_{key[:-2]}_{q}", analysis[key][q])
    for key, value in analysis["median_run"].items():
        if key in BREAKDOWN_FIELDS:
            _measure(results, f"daemon_run_{BREAKDOWN_FIELDS[key]}_median", value)
    if "floor" in bench.results:
        floor, floor_analysis = bench.results["floor"]["phase"], bench.results["floor"]["analysis"]
        floor_latency = summary(list(floor.latencies.values()))
        for key, value in floor_latency.items():
            _measure(results, f"in_process_latency_{key}", value)
        _measure(results, "in_process_emails_timed", len(floor.latencies), "emails")
        _measure(results, "in_process_runs", floor_analysis["runs"], "runs")
        for key in ("run_s", "path_compute_s"):
            if floor_analysis["median_run"]:
                label = f"in_process_run_{BREAKDOWN_FIELDS[key]}_median"
                _measure(results, label, floor_analysis["median_run"][key])
        # Latencies: the other's over ours, so above 1 means ours is faster.
        results.ratio("vs_in_process_trigger", round(floor_latency["p50"] / latency["p50"], 3))
        results.ratio("vs_in_process_trigger_p95", round(floor_latency["p95"] / latency["p95"], 3))
    return results


RUN_PARTS = (
    ("queue_s", "queued -> starting (dequeued)"),
    ("launch_s", "starting -> run worker started"),
    ("path_wait_s", "critical path: waiting for slot"),
    ("path_process_s", "critical path: step process start"),
    ("path_compute_s", "critical path: step compute"),
    ("finish_s", "last step -> run success"),
    ("run_s", "total"),
)
SPLIT_PARTS = (
    ("behind_run_s", "  behind the run in progress"),
    ("pickup_s", "  until the sensor's run created"),
    ("run_to_persisted_s", "  run created -> persisted"),
)
QS = ("p50", "p95", "p99", "max")
PCT_FORMATS = ["s", ".1f", ".1f", ".1f", ".1f"]


def print_summary(results: dict[str, Any], ratios: dict[str, float]) -> None:
    """Latency percentiles, the daemon latency split, and the median run broken down."""
    daemon = results["daemon"]
    analysis = daemon["analysis"]
    phases = [("daemon + sensor", daemon["phase"])]
    if "floor" in results:
        phases.append(("in-process trigger", results["floor"]["phase"]))
    print()
    print_table(
        ["latency (s)", "p50", "p95", "p99", "max", "n"],
        [
            [label, *(summary(list(p.latencies.values()))[q] for q in QS), len(p.latencies)]
            for label, p in phases
        ],
        [*PCT_FORMATS, "d"],
    )
    print("daemon latency split per email:")
    print_table(
        ["", "p50", "p95", "p99", "max"],
        [[label, *(analysis[k][q] for q in QS)] for k, label in SPLIT_PARTS if analysis[k]],
        PCT_FORMATS,
    )
    ticks = daemon["ticks"]
    print(
        f"\ndaemon: {analysis['runs']} runs launched ({analysis['runs_that_scored']} scored, "
        f"{analysis['emails_per_run'].get('p50', 0):.0f} emails per run p50); "
        f"{ticks['ticks']} sensor ticks, {ticks['skipped_run_in_progress']} skipped for a run "
        f"in progress; tick gap p50 {ticks['tick_gap_s'].get('p50', 0):.1f} s"
    )
    print_median_runs(results)
    print_ratios(ratios)
    print(f"exactly once: {results['integrity']}; failed runs: {daemon['failed_runs']}")


def print_median_runs(results: dict[str, Any]) -> None:
    columns = [("daemon", results["daemon"]["analysis"]["median_run"])]
    if "floor" in results:
        columns.append(("in-process", results["floor"]["analysis"]["median_run"]))
    columns = [(name, run) for name, run in columns if run]
    if not columns:
        return
    stages = sorted({s for _, run in columns for s in run["path_by_stage_s"]})
    rows = [[label, *(run[key] for _, run in columns)] for key, label in RUN_PARTS]
    rows += [
        [f"  on path: {stage}", *(run["path_by_stage_s"].get(stage, 0.0) for _, run in columns)]
        for stage in stages
    ]
    print()
    print_table(
        ["median run (s)", *(name for name, _ in columns)], rows, ["s"] + [".1f"] * len(columns)
    )
