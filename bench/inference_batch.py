"""Batch-inference throughput: our Triton path vs a plain client loop vs in-process numpy.

Run: ``.venv/bin/python bench/inference_batch.py [--rows N]``

Starts its own local Triton server (CPU, Python backend) over a temporary model repository,
publishes a random ``LinearHeadsModel`` (256+8 features, heads of 6 and 3 labels) and, in one
run, measures rows/s of

(a) ``TritonResource.infer`` (chunks of 1024 rows, 4 in flight, retries armed),
(b) a hand-written single-threaded ``tritonclient.grpc`` loop at the same batch size,
(c) ``LinearHeadsModel.predict_proba`` in-process (the ceiling: no serialisation, no network),
(d) a hand-written client with the same chunking and concurrency as (a), but tensors passed
    through *system shared memory* (``tritonclient.utils.shared_memory`` regions registered
    over gRPC) instead of inside the gRPC messages: does skipping protobuf serialisation and
    the loopback copy pay off here?
(e) ``TritonResource(shared_memory=True)``, the resource's version of (d), with its failover,
    breaker and region bookkeeping. This is what the platform runs against a server on the
    same host (``AIOS_TRITON_SHARED_MEMORY=auto``), so it is "ours" in the ratios; (a) is
    reported as ``triton_resource_grpc_only`` (what a remote server gets).

Each is warmed up once, then timed ``--reps`` times; the median is reported. Outputs of (a)
and (b) are checked against (c) to 1e-4 so the benchmark cannot time the wrong work. Results go
to ``bench/results/inference_batch.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from _common import Results, add_output_argument, measure_rate, print_ratios, print_table
from _served import served_model  # bench/ is the script's folder
from tritonclient.utils import InferenceServerException

from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.triton import TritonResource

MODEL_NAME = "bench_router"
HEADS = {"queue": 6, "priority": 3}
BATCH_ROWS = 1024
CONCURRENCY = 4
TOLERANCE = 1e-4

Outputs = dict[str, np.ndarray]


def plain_loop(url: str, x: np.ndarray, output_names: list[str]) -> Outputs:
    """What a careful user writes by hand: one client, one request at a time."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in output_names}
    with grpcclient.InferenceServerClient(url=url) as client:
        requested = [grpcclient.InferRequestedOutput(name) for name in output_names]
        for start in range(0, x.shape[0], BATCH_ROWS):
            chunk = x[start : start + BATCH_ROWS]
            infer_input = grpcclient.InferInput("features", list(chunk.shape), "FP32")
            infer_input.set_data_from_numpy(chunk)
            result = client.infer(MODEL_NAME, [infer_input], outputs=requested)
            for name in output_names:
                parts[name].append(result.as_numpy(name))
    return {name: np.concatenate(arrays, axis=0) for name, arrays in parts.items()}


def unregister(client: grpcclient.InferenceServerClient, name: str) -> None:
    """Triton frees a region just after the response; retry while it says "in use"."""
    for _ in range(200):
        try:
            client.unregister_system_shared_memory(name)
            return
        except InferenceServerException as exc:
            if "in use" not in str(exc.message() or ""):
                raise
            time.sleep(0.01)
    client.unregister_system_shared_memory(name)


def shm_concurrent(
    url: str, x: np.ndarray, output_names: list[str], n_labels: list[int]
) -> Outputs:
    """Chunks of BATCH_ROWS, CONCURRENCY in flight, tensors in system shared memory.

    Each worker owns one input and one output region, registered once per call (as a client
    would per run), and handles every CONCURRENCY-th chunk: copy the chunk in, infer with
    references to the regions, copy the outputs out into the result arrays.
    """
    n_rows, n_features = x.shape
    outputs = {
        name: np.empty((n_rows, width), dtype=np.float32)
        for name, width in zip(output_names, n_labels, strict=True)
    }
    in_bytes = BATCH_ROWS * n_features * 4
    out_widths = dict(zip(output_names, n_labels, strict=True))
    out_offsets: dict[str, int] = {}
    offset = 0
    for name in output_names:
        out_offsets[name] = offset
        offset += BATCH_ROWS * out_widths[name] * 4
    out_bytes = offset
    starts = list(range(0, n_rows, BATCH_ROWS))

    def run(worker: int) -> None:
        tag = f"bench_{uuid.uuid4().hex[:8]}_{worker}"
        in_handle = shm.create_shared_memory_region(f"{tag}_in", f"/{tag}_in", in_bytes)
        out_handle = shm.create_shared_memory_region(f"{tag}_out", f"/{tag}_out", out_bytes)
        try:
            with grpcclient.InferenceServerClient(url=url) as client:
                client.register_system_shared_memory(f"{tag}_in", f"/{tag}_in", in_bytes)
                client.register_system_shared_memory(f"{tag}_out", f"/{tag}_out", out_bytes)
                try:
                    for start in starts[worker::CONCURRENCY]:
                        chunk = x[start : start + BATCH_ROWS]
                        rows = chunk.shape[0]
                        shm.set_shared_memory_region(in_handle, [chunk])
                        infer_input = grpcclient.InferInput("features", [rows, n_features], "FP32")
                        infer_input.set_shared_memory(f"{tag}_in", rows * n_features * 4)
                        requested = []
                        for name in output_names:
                            out = grpcclient.InferRequestedOutput(name)
                            out.set_shared_memory(
                                f"{tag}_out", rows * out_widths[name] * 4, out_offsets[name]
                            )
                            requested.append(out)
                        client.infer(MODEL_NAME, [infer_input], outputs=requested)
                        for name in output_names:
                            outputs[name][start : start + rows] = shm.get_contents_as_numpy(
                                out_handle,
                                np.float32,
                                [rows, out_widths[name]],
                                offset=out_offsets[name],
                            )
                finally:
                    unregister(client, f"{tag}_in")
                    unregister(client, f"{tag}_out")
        finally:
            shm.destroy_shared_memory_region(in_handle)
            shm.destroy_shared_memory_region(out_handle)

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        for future in [pool.submit(run, w) for w in range(min(CONCURRENCY, len(starts)))]:
            future.result()
    return outputs


def check(label: str, got: Outputs, expected: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for head, probs in expected.items():
        array = got[f"{head}_probs"]
        assert array.shape == probs.shape, f"{label}: {head} shape {array.shape} != {probs.shape}"
        worst = max(worst, float(np.abs(array - probs).max()))
    assert worst <= TOLERANCE, f"{label}: max abs error {worst:.2e} > {TOLERANCE}"
    return worst


# Labels of the measured paths, and how the table names them.
PATHS = {
    "triton_resource": "triton_resource (shm, 1024 x 4 in flight)",
    "triton_resource_grpc_only": "triton_resource grpc only",
    "plain_loop": "plain_loop (1024, 1 thread)",
    "shm_concurrent": "shm_concurrent (1024 x 4, system shm)",
    "in_process": "in_process (numpy ceiling)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=256 + 8)
    parser.add_argument("--reps", type=int, default=3)
    add_output_argument(parser, "inference_batch")
    return parser.parse_args(argv)


def measure_paths(
    model: LinearHeadsModel, x: np.ndarray, reps: int
) -> dict[str, tuple[float, list[float], Outputs]]:
    """(median rows/s, every rep's rows/s, outputs) of each path in ``PATHS``, one server."""
    rows = len(x)
    output_names = [f"{head}_probs" for head in HEADS]
    with served_model(
        model, MODEL_NAME, batch_rows=BATCH_ROWS, concurrency=CONCURRENCY, prefix="bench_triton_"
    ) as (server, resource):
        shm_resource = TritonResource(
            url=server.grpc_url,
            max_batch_rows=BATCH_ROWS,
            max_concurrency=CONCURRENCY,
            shared_memory=True,
        )
        widths = list(HEADS.values())
        # "Ours" is the resource as the platform configures it for this server: a loopback
        # server gets shared-memory tensors (AIOS_TRITON_SHARED_MEMORY=auto); gRPC only is
        # what a remote server gets.
        paths: dict[str, Callable[[], Outputs]] = {
            "triton_resource_grpc_only": lambda: (
                resource.infer(MODEL_NAME, x, output_names).outputs
            ),
            "plain_loop": lambda: plain_loop(server.grpc_url, x, output_names),
            "triton_resource": lambda: shm_resource.infer(MODEL_NAME, x, output_names).outputs,
            "shm_concurrent": lambda: shm_concurrent(server.grpc_url, x, output_names, widths),
            "in_process": lambda: {f"{k}_probs": v for k, v in model.predict_proba(x).items()},
        }
        return {key: measure_rate(fn, rows, reps) for key, fn in paths.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Other work on the machine skews every figure; record how busy it was.
    load_at_start = round(os.getloadavg()[0], 2)
    model = LinearHeadsModel.random(args.features, HEADS, seed=42)
    x = np.random.default_rng(7).normal(0.0, 1.5, size=(args.rows, args.features))
    x = np.ascontiguousarray(x, dtype=np.float32)

    measured = measure_paths(model, x, args.reps)
    expected = model.predict_proba(x)
    errors = {key: check(key, out, expected) for key, (_, _, out) in measured.items()}
    rate = {key: median for key, (median, _, _) in measured.items()}

    results = Results(
        "inference_batch",
        params={
            "rows": args.rows,
            "features": args.features,
            "heads": HEADS,
            "batch_rows": BATCH_ROWS,
            "concurrency": CONCURRENCY,
            "reps": args.reps,
            "statistic": "median",
            "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0), CPU, python backend",
            "cpu_count": os.cpu_count(),
            "loadavg_1m_at_start": load_at_start,
            "python": sys.version.split()[0],
            "max_abs_error": {k: errors[k] for k in PATHS if k != "in_process"},
        },
    )
    for key in ("triton_resource", "triton_resource_grpc_only", "plain_loop", "in_process"):
        results.measure(key, rate[key], "rows/s")
    results.measure("shm_concurrent", rate["shm_concurrent"], "rows/s")
    ours = rate["triton_resource"]
    results.ratio("vs_plain_loop", ours / rate["plain_loop"])
    results.ratio("vs_in_process", ours / rate["in_process"])
    results.ratio("vs_shm_concurrent", ours / rate["shm_concurrent"])
    grpc_only = rate["triton_resource_grpc_only"]
    results.ratio("grpc_only_vs_plain_loop", grpc_only / rate["plain_loop"])
    results.write(args.output)

    print(f"\ninference_batch: {args.rows:,} rows x {args.features} features, heads {HEADS}")
    print_table(
        ["path", "median rows/s", "all reps (rows/s)"],
        [
            [label, rate[key], ", ".join(f"{r:,.0f}" for r in measured[key][1])]
            for key, label in PATHS.items()
        ],
        ["s", ",.0f", "s"],
    )
    print_ratios(results.ratios)
    print(f"max abs error vs in-process {max(errors.values()):.1e}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
