"""Where ours spends its time: cProfile of the connector, then wall time per stage.

Kept apart from the timed runs because profiling (and the monkeypatched stage timers) would
distort the rows/s figures; it runs in its own child process after them.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _ingest_data import BATCH_ROWS
from _ingest_runs import Work, ours_factory


def child_profile(workdir: Path, rows: int, top: int) -> dict[str, Any]:
    """cProfile of (a) on the first ``rows`` rows, then wall-clock per stage without it."""
    import great_expectations  # noqa: F401

    import aios_dagster.lib.connectors.batch_steps as runtime
    from aios_dagster.lib.connectors import contract_split, files_source

    work = Work(workdir)
    run = ours_factory(work)
    batches = max(rows // BATCH_ROWS, 1)
    run("profile-warmup", max_batches=1)

    profiler = cProfile.Profile()
    profiler.enable()
    run("profile", max_batches=batches)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = []
    for (file, line, func), (_cc, ncalls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = f"{Path(file).name}:{line}({func})" if line else func
        entries.append({"function": short, "calls": ncalls, "tottime_s": tt, "cumtime_s": ct})
    by_tottime = sorted(entries, key=lambda e: -e["tottime_s"])[:top]
    cum_of = {e["function"]: e["cumtime_s"] for e in entries}

    # Stage timing without the profiler: wrap the runtime's own steps.
    stages: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    original_batches = files_source.FilesReader.batches
    originals = {
        (runtime, "apply_pii"): runtime.apply_pii,
        (runtime, "conform_table"): runtime.conform_table,
        (runtime, "split_table"): runtime.split_table,
        (contract_split, "validate_frame"): contract_split.validate_frame,
        (contract_split, "record_copies"): contract_split.record_copies,
        (contract_split.LakeResource, "write"): contract_split.LakeResource.write,
    }
    labels = {
        "apply_pii": "pii (tokenize + mask + drop; own thread, overlaps the rest)",
        "conform_table": "conform (cast to schema)",
        "split_table": "contract + split (write overlaps the next batch)",
        "validate_frame": "  of which validate_frame",
        "record_copies": "  of which quarantined record copies",
        "write": "parquet write (background thread)",
    }
    read_label = "read (waiting for the reader thread)"
    labels["batches"] = read_label

    def timed_batches(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            iterator = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    stages[read_label] = stages.get(read_label, 0.0) + time.perf_counter() - started
                yield item

        return wrapper

    for (owner, attr), fn in originals.items():
        setattr(owner, attr, timed(labels[attr], fn))
    files_source.FilesReader.batches = timed_batches(original_batches)  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        report = run("profile-stages", max_batches=batches)
        wall = time.perf_counter() - started
    finally:
        for (owner, attr), fn in originals.items():
            setattr(owner, attr, fn)
        files_source.FilesReader.batches = original_batches  # type: ignore[method-assign]
    # PII runs in its own thread, overlapping the others: the main thread waits for it, for the
    # reader and for the writes in what is left.
    top_level = ("conform_table", "split_table", "batches")
    accounted = sum(stages.get(labels[k], 0.0) for k in top_level)
    stages["waiting for masking and writes, type-failure rows, cursor, rest"] = wall - accounted
    return {
        "rows": report.rows_in,
        "profiled_total_s": total,
        "top_tottime": by_tottime,
        "cumtime_s": {
            k: v
            for k, v in cum_of.items()
            if any(
                k.endswith(f"({name})")
                for name in (
                    "apply_pii",
                    "mask_array",
                    "mask_phones_array",
                    "mask_signoff_names",
                    "tokenize",
                    "conform_table",
                    "_cast_by_value",
                    "split_table",
                    "validation_view",
                    "validate_frame",
                    "record_copies",
                    "write_table",
                    "batches",
                    "read_csv",
                )
            )
        },
        "stages_wall_s": {"total": wall, **stages},
    }
