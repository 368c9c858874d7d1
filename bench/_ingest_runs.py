"""The measured ingest paths and how each child process times them and reads its memory.

Each path (ours, the pyarrow floors, the stream floor plus PII) runs in its own subprocess so
peak memories do not contaminate each other; this module is what that child imports.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _ingest_data import BATCH_ROWS, BLOCK_SIZE, DATASET, NOW


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class Work:
    """Paths and objects shared by the measured paths (built in the child, not timed)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.csv = next((workdir / "drop").glob("*.csv"))
        self.runs = workdir / "runs"

    def fresh(self, name: str) -> Path:
        target = self.runs / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        return target

    def connector(self) -> tuple[Any, Any, Any]:
        from aios_dagster.lib.connectors.component import load_connector
        from aios_dagster.lib.connectors.pii import PiiMasker
        from aios_dagster.lib.contracts.runner import load_contract

        spec = load_connector(self.workdir / "defs.yaml", {"sources_dir": str(self.workdir)})
        contract = load_contract(self.workdir / "expectations" / f"{DATASET}.json")
        return spec, contract, PiiMasker(hmac_key="bench-key")


def ours_factory(work: Work) -> Callable[[str], Any]:
    from aios_dagster.lib.connectors.cursors import CursorStore
    from aios_dagster.lib.connectors.runtime import build_reader, run_connector
    from aios_dagster.lib.lake import LakeResource

    spec, contract, pii = work.connector()

    def run(name: str, max_batches: int | None = None, warm: bool = False) -> Any:
        out = work.fresh(name)
        max_batches = 1 if warm else max_batches
        return run_connector(
            spec,
            build_reader(spec),
            contract,
            lake=LakeResource(root=str(out / "lake")),
            pii=pii,
            cursors=CursorStore(root=str(out / "cursors")),
            now=lambda: NOW,
            max_batches=max_batches,
        )

    return run


def floor_factory(work: Work) -> Callable[[str], Any]:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    def run(name: str, warm: bool = False) -> int:
        out = work.fresh(name)
        table = pa_csv.read_csv(work.csv)
        pq.write_table(table, out / "data.parquet", compression="zstd")
        return table.num_rows

    return run


def _stream(
    work: Work, name: str, transform: Callable[[Any], Any] | None, limit: int | None = None
) -> int:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    out = work.fresh(name)
    names = pa_csv.open_csv(work.csv).schema.names
    reader = pa_csv.open_csv(
        work.csv,
        read_options=pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_SIZE),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),  # as the connector parses
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            null_values=[""],
        ),
    )
    rows = 0
    writer: pq.ParquetWriter | None = None
    pending: list[Any] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal writer, pending, pending_rows
        table = pa.Table.from_batches(pending)
        if transform is not None:
            table = transform(table)
        if writer is None:
            writer = pq.ParquetWriter(out / "data.parquet", table.schema, compression="zstd")
        writer.write_table(table)
        pending, pending_rows = [], 0

    for batch in reader:
        if limit is not None and rows >= limit:
            break
        rows += batch.num_rows
        if transform is None:
            pending = [batch]
            flush()
            continue
        pending.append(batch)  # the connector's batching: 100k rows a batch
        pending_rows += batch.num_rows
        if pending_rows >= BATCH_ROWS:
            flush()
    if pending:
        flush()
    if writer is not None:
        writer.close()
    return rows


def stream_floor_factory(work: Work) -> Callable[[str], Any]:
    return lambda name, warm=False: _stream(work, name, None)


def pii_factory(work: Work) -> Callable[[str], Any]:
    from aios_dagster.lib.connectors.pii_policy import TokenCache, apply_pii

    spec, _contract, pii = work.connector()
    tokens = TokenCache(pii)

    def transform(table: Any) -> Any:
        return apply_pii(table, spec.pii, tokens)[0]

    return lambda name, warm=False: _stream(
        work, name, transform, limit=BATCH_ROWS if warm else None
    )


FACTORIES: dict[str, Callable[[Work], Callable[..., Any]]] = {
    "ours": ours_factory,
    "pyarrow_floor": floor_factory,
    "pyarrow_stream_floor": stream_floor_factory,
    "pyarrow_plus_pii": pii_factory,
}


def _settle() -> None:
    """Hand freed memory back to the OS (Python, pyarrow's pool, glibc) before a baseline."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (a run's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class WorkerPeak:
    """The largest VmHWM of this process's phone workers while it runs (polled from /proc).

    A worker's own peak is read while it lives: ``RUSAGE_CHILDREN`` would also count every
    short-lived child forked from this large process before its ``exec``.
    """

    def __init__(self, *, poll: bool, every_s: float = 0.02) -> None:
        self.kib = 0
        self._poll_it = poll  # only ours has workers: the floors' reps run without the poller
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="worker-peak", daemon=True)

    def __enter__(self) -> WorkerPeak:
        if self._poll_it:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._poll_it:
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self._every_s):
            for listing in Path("/proc/self/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    for pid in listing.read_text().split():
                        self._read(pid)

    def _read(self, pid: str) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if b"phone_worker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.kib = max(self.kib, int(line.split()[1]))


PROTOCOL = "@@ingest-bench "


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


def child_measure(path: str, workdir: Path) -> dict[str, Any]:
    """Warm up once, then one timed run per ``rep`` line on stdin; memory from /proc.

    The parent keeps every path's child alive and asks them for a rep in turn, so the paths
    share the box's noisy moments instead of each having a phase of its own. Protocol lines on
    stdout start with :data:`PROTOCOL` (libraries may print too): ``ready`` after the warm-up,
    one timing per rep; the result is printed by the caller as the last line.

    ``process`` peak: VmHWM over the child's whole life (imports, warm-up, reps). ``work`` peak:
    VmHWM over the timed reps minus the RSS they started from (after imports and warm-up, with
    freed memory handed back), i.e. what the ingest itself needed on top of a warm process.
    A run's phone worker process (``phone_worker``) is part of the run: its CPU time is in each
    rep's, and its peak RSS is added to both peaks.
    """
    if path in ("ours", "pyarrow_plus_pii"):
        import great_expectations  # noqa: F401  (imported lazily by validate_frame: not work)
    from aios_dagster.lib.connectors.phone_text import forget_seen_numbers

    work = Work(workdir)
    run = FACTORIES[path](work)
    started = time.perf_counter()
    last = run(f"{path}-warmup", warm=True)  # ours and (c2): the first 100k-row batch only
    warmup_s = time.perf_counter() - started
    shutil.rmtree(work.runs / f"{path}-warmup", ignore_errors=True)
    _settle()
    lifetime_kib = _status_kib("VmHWM")
    reset = _reset_peak()
    baseline_kib = _status_kib("VmRSS")
    times: list[float] = []
    cpu: list[float] = []
    _say({"ready": True, "warmup_s": warmup_s})
    with WorkerPeak(poll=path == "ours") as workers:
        for line in sys.stdin:
            if line.strip() != "rep":
                break
            forget_seen_numbers()  # each rep meets the export's numbers as a new run's process does
            started, cpu_started = time.perf_counter(), _cpu_s()
            last = run(f"{path}-rep")
            times.append(time.perf_counter() - started)
            cpu.append(_cpu_s() - cpu_started)  # every thread and child: robust to a busy box
            _say({"time_s": times[-1], "cpu_s": cpu[-1]})
    peak_kib = _status_kib("VmHWM")
    worker_kib = workers.kib  # 0: no worker ran
    result: dict[str, Any] = {
        "times_s": times,
        "cpu_s": cpu,
        "warmup_s": warmup_s,
        "baseline_mib": baseline_kib / 1024,
        "peak_mib": (max(peak_kib, lifetime_kib) + worker_kib) / 1024,
        "work_peak_mib": (peak_kib - baseline_kib + worker_kib) / 1024,
        "phone_worker_peak_mib": worker_kib / 1024,
        "peak_reset": reset,
        "lake": str(work.runs / f"{path}-rep"),
    }
    if path == "ours":
        result["report"] = {
            "batches": last.batches,
            "rows_in": last.rows_in,
            "rows_landed": last.rows_landed,
            "records_quarantined": last.records_quarantined,
            "rejects": last.rejects,
            "failed_rules": dict(last.failed_rules),
            "pii_masked": dict(last.pii_masked),
            "drift": last.drift.describe(),
        }
    else:
        result["rows"] = last
    return result
