"""Run time of a multi-step job: steps forked from a preloaded server vs Dagster's default.

Run: ``.venv/bin/python bench/executor.py [--reps N]``

What a scheduled or sensor-launched run costs end to end: ``dagster job execute`` of
``mail_refresh_job`` (six connectors, their contract checks and the dbt models: one process per
step) on a small generated dataset, as a run worker would start it. Ours is
``AIOS_EXECUTOR=multiprocess`` (forkserver preloading the code location: the imports happen
once per run); the other is ``AIOS_EXECUTOR=spawn``, Dagster's default multiprocess executor,
where every step starts a fresh interpreter that imports Dagster, dbt, pandas and Evidently
again. The two alternate rep by rep on the same data, each rep from an empty lake, so machine
noise falls on both. Each run must succeed with the same number of steps, or the benchmark
stops. Results go to ``bench/results/executor.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Results, add_output_argument, machine, print_ratios, print_table

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB = "mail_refresh_job"
VARIANTS = {"forkserver (ours)": "multiprocess", "spawn (Dagster default)": "spawn"}


def _run(env: dict[str, str], data: Path) -> tuple[float, int]:
    for derived in ("lake", "state", "warehouse"):
        shutil.rmtree(data / derived, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "aios_dagster.definitions", "-j", JOB],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{JOB} failed under {env['AIOS_EXECUTOR']}:\n{done.stdout[-3000:]}")
    return seconds, done.stdout.count("STEP_SUCCESS") + done.stderr.count("STEP_SUCCESS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed runs of each way")
    parser.add_argument("--emails-per-week", type=int, default=300, help="generated mail volume")
    add_output_argument(parser, "executor")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aios-bench-executor-") as tmp:
        home, data = Path(tmp) / "home", Path(tmp) / "data"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
        base = {
            **os.environ,
            "AIOS_DATA_DIR": str(data),
            "DAGSTER_HOME": str(home),
            "DAGSTER_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "GX_ANALYTICS_ENABLED": "false",
        }
        generate = [str(BIN / "aios-dagster"), "generate", "--emails-per-week"]
        # Two weeks: one week leaves the labels export header-only, which its contract refuses.
        generate += [str(args.emails_per_week), "--weeks", "2", "--customers", "50"]
        generate += ["--no-bad-records"]
        subprocess.run(generate, env=base, check=True, capture_output=True)
        seconds: dict[str, list[float]] = {label: [] for label in VARIANTS}
        steps: dict[str, set[int]] = {label: set() for label in VARIANTS}
        for rep in range(args.reps + 1):  # the first round warms the disk cache, untimed
            for label, executor in VARIANTS.items():
                took, done_steps = _run({**base, "AIOS_EXECUTOR": executor}, data)
                if rep:  # the warm-up round lands into an empty lake: its step count differs
                    steps[label].add(done_steps)
                    seconds[label].append(took)
                    print(f"  rep {rep} {label}: {took:.1f} s ({done_steps} steps)", flush=True)
    if len({frozenset(s) for s in steps.values()}) != 1:
        raise SystemExit(f"the two ways ran different steps: {steps}")

    results = Results(
        "executor",
        params={
            "job": JOB,
            "emails_per_week": args.emails_per_week,
            "reps": args.reps,
            "steps": sorted(next(iter(steps.values()))),
            "machine": machine(),
        },
    )
    rows = []
    for label in VARIANTS:
        median = statistics.median(seconds[label])
        results.measure(f"{label}: run seconds (median)", round(median, 2), "s")
        rows.append((label, median, min(seconds[label]), max(seconds[label])))
    ours, theirs = (statistics.median(seconds[label]) for label in VARIANTS)
    results.ratio("vs_spawn_executor", round(theirs / ours, 3))
    print_table(["executor", "median s", "min s", "max s"], rows, ["s", ".1f", ".1f", ".1f"])
    print_ratios(results.ratios)
    print(f"wrote {results.write(args.output)}")


if __name__ == "__main__":
    main()
