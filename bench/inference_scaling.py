"""Batch-inference scaling: rows/s and peak memory of ``TritonResource.infer`` at 10k-1M rows.

Run: ``.venv/bin/python bench/inference_scaling.py [--sizes 10000,100000,1000000]``

The question it answers: does scoring cost grow linearly with the row count while memory stays
flat? Same model as ``bench/inference_batch.py`` (random ``LinearHeadsModel``, 256+8 features,
heads of 6 and 3 labels, chunks of 1024 rows, 4 in flight). Features are streamed through
``infer`` in Arrow-sized slices (``--slice-rows``, 100k by default), the way the inference asset
reads a day of parquet, so 1M x 264 float32 (~1 GB) never exists at once; each slice is
generated from its own seed, so every repetition scores the same data.

Each size runs in its **own subprocess with its own Triton server**, so peak RSS (``VmHWM``,
the kernel's high-water mark) of the client and of the server's process group belongs to that
size alone. Per size: a warm-up, then ``--reps`` passes over all slices (small sizes repeated
until ``--min-rows`` rows were scored); only the ``infer`` calls are timed, not generating the
slices. The first pass checks a strided sample (~1000 rows per slice) of Triton's outputs
against ``LinearHeadsModel.predict_proba`` to 1e-4 (the tests compare every row). Then the
in-process reference (no serialisation, no network) is timed over the same slices after
resetting ``VmHWM``, so each path reports its own memory peak. Medians over reps are reported.
Results go to ``bench/results/inference_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import Results, add_output_argument, print_table

MODEL_NAME = "bench_router"
HEADS = {"queue": 6, "priority": 3}
BATCH_ROWS = 1024
CONCURRENCY = 4
TOLERANCE = 1e-4
SEED = 42


def _label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def _vm_kib(pid: int | str, field: str) -> int:
    """``field`` (VmHWM, VmRSS) of a process in KiB from /proc; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _group_hwm_kib(pgid: int) -> int:
    """Summed peak RSS of a process group: the server plus its Python-backend stubs."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # Field 5 of /proc/<pid>/stat is the pgrp; the command may contain spaces.
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                total += _vm_kib(proc.name, "VmHWM")
        except (OSError, ValueError, IndexError):
            continue
    return total


def _slice(rows: int, index: int, n_features: int) -> np.ndarray:
    # Drawn in float32 directly: a float64 draw would double the slice's memory peak.
    x = np.random.default_rng(1000 + index).standard_normal((rows, n_features), np.float32)
    x *= 1.5
    return x


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5).

    Lets the Triton phase and the in-process phase each report their own peak, instead of the
    in-process maths' temporaries (two slice-sized copies while standardising) hiding what the
    client of the server needs.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def worker(rows: int, slice_rows: int, n_features: int, reps: int, min_rows: int) -> dict[str, Any]:
    """Measure one size in this process (run by ``main`` in a fresh subprocess).

    Small sizes are repeated until ``min_rows`` rows were scored, so a 10k-row call is not a
    single 30 ms sample on a busy machine.
    """
    from _served import served_model  # bench/ is the script's folder

    from aios_dagster.lib.serving.linear_model import LinearHeadsModel

    model = LinearHeadsModel.random(n_features, HEADS, seed=SEED)
    output_names = [f"{head}_probs" for head in HEADS]
    bounds = [(a, min(a + slice_rows, rows)) for a in range(0, rows, slice_rows)]
    reps = max(reps, -(-min_rows // rows))
    worst = 0.0

    def passes(score: Callable[[np.ndarray, bool], None]) -> list[float]:
        rates = []
        for rep in range(reps):
            elapsed = 0.0
            for index, (a, b) in enumerate(bounds):
                x = _slice(b - a, index, n_features)
                started = time.perf_counter()
                score(x, rep == 0)
                elapsed += time.perf_counter() - started
                del x
            rates.append(rows / elapsed)
        return rates

    with served_model(
        model, MODEL_NAME, batch_rows=BATCH_ROWS, concurrency=CONCURRENCY, prefix="bench_scaling_"
    ) as (server, resource):
        warm = _slice(min(slice_rows, 10_000), -1, n_features)
        resource.infer(MODEL_NAME, warm, output_names)
        model.predict_proba(warm)
        del warm
        client_base_kib = _vm_kib("self", "VmRSS")
        server_base_kib = _group_hwm_kib(server.pid or 0)
        separate_peaks = _reset_peak()

        def via_triton(x: np.ndarray, check: bool) -> None:
            nonlocal worst
            result = resource.infer(MODEL_NAME, x, output_names)
            if check:  # a strided sample: the reference must not inflate this phase's peak
                sample = slice(None, None, max(1, x.shape[0] // 997))
                for head, probs in model.predict_proba(x[sample]).items():
                    got = result.outputs[f"{head}_probs"]
                    assert got.shape == (x.shape[0], probs.shape[1]), got.shape
                    worst = max(worst, float(np.abs(got[sample] - probs).max()))

        wall_started = time.perf_counter()
        triton_rates = passes(via_triton)
        wall_s = time.perf_counter() - wall_started
        client_triton_kib = _vm_kib("self", "VmHWM")
        server_peak_kib = _group_hwm_kib(server.pid or 0)
    _reset_peak()

    def in_process(x: np.ndarray, _check: bool) -> None:
        model.predict_proba(x)

    local_rates = passes(in_process)
    client_local_kib = _vm_kib("self", "VmHWM")
    if worst > TOLERANCE:
        raise AssertionError(f"{rows} rows: max abs error {worst:.2e} > {TOLERANCE}")
    return {
        "rows": rows,
        "slices": len(bounds),
        "reps": reps,
        "triton_rows_per_s": statistics.median(triton_rates),
        "triton_all": triton_rates,
        "in_process_rows_per_s": statistics.median(local_rates),
        "in_process_all": local_rates,
        "max_abs_error_sampled": worst,
        "triton_wall_s": wall_s,
        "separate_peaks": separate_peaks,
        "client_base_rss_mib": client_base_kib / 1024,
        "client_peak_rss_mib": client_triton_kib / 1024,
        "in_process_peak_rss_mib": client_local_kib / 1024,
        "server_base_hwm_mib": server_base_kib / 1024,
        "server_peak_rss_mib": server_peak_kib / 1024,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--slice-rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=256 + 8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--min-rows", type=int, default=1_000_000, help="repeat small sizes up to this many rows"
    )
    parser.add_argument("--worker-rows", type=int, help=argparse.SUPPRESS)
    add_output_argument(parser, "inference_scaling")
    return parser.parse_args(argv)


def run_size(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """``worker`` for one size in a fresh subprocess (its own memory high-water mark)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--worker-rows={rows}",
            f"--slice-rows={args.slice_rows}",
            f"--features={args.features}",
            f"--reps={args.reps}",
            f"--min-rows={args.min_rows}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr[-4000:])
        raise SystemExit(f"worker for {rows} rows failed with code {completed.returncode}")
    run: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    run["subprocess_s"] = time.perf_counter() - started
    return run


PER_SIZE_PARAMS = (
    "slices",
    "reps",
    "max_abs_error_sampled",
    "triton_wall_s",
    "subprocess_s",
    "separate_peaks",
    "triton_all",
    "in_process_all",
    "client_base_rss_mib",
    "server_base_hwm_mib",
)


def build_results(
    args: argparse.Namespace, sizes: list[int], runs: dict[str, dict[str, Any]], load: float
) -> Results:
    results = Results(
        "inference_scaling",
        params={
            "sizes": sizes,
            "slice_rows": args.slice_rows,
            "features": args.features,
            "heads": HEADS,
            "batch_rows": BATCH_ROWS,
            "concurrency": CONCURRENCY,
            "reps": args.reps,
            "min_rows_per_size": args.min_rows,
            "statistic": "median",
            "memory": "VmHWM per size, each size in its own subprocess and Triton server; "
            "client peak = Triton phase (imports, server handle, slices, outputs); in-process "
            "peak measured after resetting VmHWM; server = tritonserver + python-backend stub "
            "process group",
            "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0), CPU, python backend",
            "cpu_count": os.cpu_count(),
            "loadavg_1m_at_start": load,
            "python": sys.version.split()[0],
            "per_size": {
                label: {key: run[key] for key in PER_SIZE_PARAMS} for label, run in runs.items()
            },
        },
    )
    for label, run in runs.items():
        results.measure(f"triton_resource_{label}", run["triton_rows_per_s"], "rows/s")
        results.measure(f"in_process_{label}", run["in_process_rows_per_s"], "rows/s")
        results.measure(f"client_peak_rss_{label}", run["client_peak_rss_mib"], "MiB")
        results.measure(f"in_process_peak_rss_{label}", run["in_process_peak_rss_mib"], "MiB")
        results.measure(f"server_peak_rss_{label}", run["server_peak_rss_mib"], "MiB")
        results.ratio(
            f"vs_in_process_{label}", run["triton_rows_per_s"] / run["in_process_rows_per_s"]
        )
    labels = list(runs)
    if len(labels) > 1:
        small, large = runs[labels[0]], runs[labels[-1]]
        pair = f"{labels[-1]}_vs_{labels[0]}"
        results.ratio(f"linearity_{pair}", large["triton_rows_per_s"] / small["triton_rows_per_s"])
        results.ratio(
            f"in_process_linearity_{pair}",
            large["in_process_rows_per_s"] / small["in_process_rows_per_s"],
        )
    return results


def print_summary(
    args: argparse.Namespace, runs: dict[str, dict[str, Any]], results: Results
) -> None:
    print(
        f"\ninference_scaling: {args.features} features, heads {HEADS}, "
        f"slices of {args.slice_rows:,} rows, median of {args.reps}"
    )
    print_table(
        [
            "rows",
            "triton rows/s",
            "in-proc rows/s",
            "vs in-proc",
            "client peak MiB",
            "server peak MiB",
            "in-proc peak MiB",
            "subproc s",
        ],
        [
            [
                f"{run['rows']:,}",
                run["triton_rows_per_s"],
                run["in_process_rows_per_s"],
                results.ratios[f"vs_in_process_{label}"],
                run["client_peak_rss_mib"],
                run["server_peak_rss_mib"],
                run["in_process_peak_rss_mib"],
                run["subprocess_s"],
            ]
            for label, run in runs.items()
        ],
        ["s", ",.0f", ",.0f", ".3f", ",.0f", ",.0f", ",.0f", ".1f"],
    )
    for key, value in results.ratios.items():
        if key.startswith(("linearity", "in_process_linearity")):
            print(f"{key}: {value:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker_rows is not None:
        report = worker(args.worker_rows, args.slice_rows, args.features, args.reps, args.min_rows)
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    # Other work on the machine skews every figure; record how busy it was.
    load_at_start = round(os.getloadavg()[0], 2)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = {_label(rows): run_size(rows, args) for rows in sizes}
    results = build_results(args, sizes, runs, load_at_start)
    results.write(args.output)
    print_summary(args, runs, results)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
