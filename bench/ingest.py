"""Ingest throughput: the files connector's landing runtime vs the pyarrow floor, one run.

Run: ``.venv/bin/python bench/ingest.py [--rows N] [--reps N]``

Generates, deterministically (numpy, seeded), a ``--rows`` CSV shaped like a bank's CRM /
transactions export (21 columns: ids, customer e-mail, phone and account number, the customer's
name, a free-text note where some rows hold an e-mail address, a card or a phone number, amounts,
currencies, timestamps, categories, flags) with ``--bad-fraction`` bad rows planted (a null
``txn_id``, a currency outside the contract's set, an amount that does not parse). The CSV, a
``files`` connector spec (tokenize e-mail / phone / account, mask the note, drop the name, a
typed landed schema) and a GE contract go to a temporary folder, never into the repository.

In one run it measures rows/s of

(a) ``ours``: ``run_connector`` with the real ``FilesReader`` over the drop folder, a fresh lake
    and cursor store each rep: stream the CSV, tokenize, mask, conform, validate the contract,
    quarantine, write ``raw_`` and ``quarantine_`` Parquet parts, save the cursor;
(b) ``pyarrow_floor``: ``pyarrow.csv.read_csv`` (defaults: threads, type inference) and
    ``pyarrow.parquet.write_table`` (zstd, as the lake writes) of the same file, nothing else;
(b2) ``pyarrow_stream_floor``: the same work streamed the way the connector parses
    (``open_csv``, single-threaded, every column as text, quoted newlines allowed, the
    connector's block size, one Parquet row group per block), so memory is bounded like ours;
(c2) ``pyarrow_plus_pii``: (b2) plus ``pii_policy.apply_pii`` -- the connector's own PII step,
    in Arrow -- on each 100k-row batch: the middle reference that shows what PII alone costs.

Each path runs in its own fresh subprocess (so peak memories do not contaminate each other):
imports, one warm-up (the first 100k-row batch for (a) and (c2), which is all they need to load
their lazy imports and compile their regexes; the whole file for the floors), then ``--reps``
timed runs (fewer if ``--budget-s`` per path would be exceeded; the JSON says how many ran);
the median wall time is reported as rows/s, with the CPU time of every thread next to it (this
2-core box is shared, so wall time is noisy and CPU time is the steadier number). Peak memory is
the child's ``VmHWM`` over its whole life (``process``) and, after the warm-up hands freed
memory back and ``/proc/self/clear_refs`` resets the mark, ``VmHWM`` over the timed reps minus
the RSS they started from (``work``: what the ingest itself needed).

(a) is verified on the lake of its last rep: rows landed + records quarantined == rows in,
every planted bad row is quarantined and nothing else is, and no written Parquet string value
contains an e-mail address (a regex over every string column of every part, plus an exact
look-up of a sample of the input's addresses).
(a) is then profiled once with cProfile on the first ``--profile-rows`` rows (``max_batches``),
and timed per stage (PII, conform, contract + write, read) without the profiler. Results go to
``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20261124
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
BATCH_ROWS = 100_000  # FilesSourceConfig's default
BLOCK_SIZE = 4 << 20  # FilesSourceConfig's default block_size_bytes
CONNECTOR = "raw_crm_transactions"
DATASET = "crm_transactions"
EMAIL_RX = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


def _words(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=object)


FIRST = _words(
    "olivia amelia isla ava mia ivy lily noah oliver george leo arthur muhammad harry"
    " jack freddie sofia grace ella theo"
)
LAST = _words(
    "smith jones taylor brown williams wilson johnson davies patel wright walker robinson"
    " thompson white hughes edwards green hall wood khan"
)
DOMAINS = np.array(
    ["example.co.uk", "mail.test", "inbox.example", "post.test", "bank-customer.test"],
    dtype=object,
)
CURRENCIES = np.array(["GBP", "EUR", "USD"], dtype=object)
BAD_CURRENCIES = np.array(["JPY", "gbp", "XXX", "EURO"], dtype=object)
BAD_AMOUNTS = np.array(["n/a", "12,50", "1.2.3", "£10.00", "ten"], dtype=object)
CATEGORIES = _words(
    "groceries fuel travel dining utilities rent salary transfer cash fees insurance entertainment"
)
CHANNELS = np.array(["card", "online", "atm", "transfer", "branch", "mobile"], dtype=object)
COUNTRIES = np.array(["GB", "GB", "GB", "IE", "FR", "DE", "ES", "US"], dtype=object)
PHRASES = np.array(
    [
        "recurring payment, no action",
        "customer queried the fee on the phone",
        "refund expected next week",
        "merchant name looks unfamiliar to the customer",
        "duplicate booking suspected, investigating",
        "salary credited early",
        "standing order amended at branch",
        "travel notice on file",
        "chargeback window open until month end",
        "customer satisfied with the explanation",
    ],
    dtype=object,
)
RULES = ("null_txn_id", "bad_currency", "bad_amount")

# Landed columns, in order; the CSV also has email/phone/account_number (tokenized) and
# full_name (dropped).
SCHEMA: dict[str, str] = {
    "txn_id": "string",
    "customer_id": "string",
    "email_token": "string",
    "phone_token": "string",
    "account_token": "string",
    "note": "string",
    "amount": "float64",
    "currency": "string",
    "booked_at": "timestamp",
    "updated_at": "timestamp",
    "value_date": "date",
    "category": "string",
    "merchant": "string",
    "channel": "string",
    "country": "string",
    "mcc": "int64",
    "is_disputed": "bool",
    "is_international": "bool",
    "balance_after": "float64",
    "branch_code": "string",
}


# --------------------------------------------------------------------------------------------
# Input: CSV, connector spec, contract
# --------------------------------------------------------------------------------------------


def _codes(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    text = np.char.add(prefix, np.char.zfill(numbers.astype(f"U{width}"), width))
    return text.astype(object)


def _iso(seconds: np.ndarray) -> np.ndarray:
    stamps = np.datetime64("2026-01-01T00:00:00", "s") + seconds.astype("timedelta64[s]")
    return np.datetime_as_string(stamps, unit="s", timezone="UTC").astype(object)


def make_csv(path: Path, rows: int, bad_fraction: float, seed: int = SEED) -> dict[str, Any]:
    """Write the export; return the planted bad rows (0-based data rows) and sample addresses."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    n_customers = max(rows // 20, 1)
    c = np.arange(n_customers)
    cust_email = np.array(
        [f"{FIRST[i % 20]}.{LAST[(i // 20) % 20]}{i}@{DOMAINS[i % 5]}" for i in range(n_customers)],
        dtype=object,
    )
    cust_name = (FIRST[c % 20] + " " + LAST[(c // 20) % 20]).astype(object)
    cust_phone = _codes("07", rng.integers(0, 10**9, n_customers), 9)
    cust_account = _codes("", rng.integers(10**7, 10**8, n_customers), 8)

    cust = rng.integers(0, n_customers, rows)
    booked_s = rng.integers(0, 300 * 86_400, rows)
    amount = np.round(rng.lognormal(3.0, 1.2, rows), 2)

    kinds = rng.choice(5, rows, p=[0.55, 0.15, 0.12, 0.10, 0.08])  # text, mail, card, phone, null
    phrase = PHRASES[rng.integers(0, len(PHRASES), rows)]
    other = cust_email[rng.integers(0, n_customers, rows)]
    card = rng.integers(0, 10_000, (rows, 4))
    notes: list[str | None] = []
    for i in range(rows):
        k = kinds[i]
        if k == 0:
            notes.append(phrase[i])
        elif k == 1:
            notes.append(f"{phrase[i]}; statement copy to {other[i]} as requested")
        elif k == 2:
            a, b, cc, d = card[i]
            notes.append(f"card {a:04d} {b:04d} {cc:04d} {d:04d} reported lost, {phrase[i]}")
        elif k == 3:
            notes.append(f"call back on {cust_phone[cust[i]]} after 5pm")
        else:
            notes.append(None)

    txn_id = _codes("T", np.arange(1, rows + 1), 9)
    amount_text = pa.array(amount).cast(pa.string()).to_numpy(zero_copy_only=False)
    amount_text = amount_text.astype(object)
    currency = CURRENCIES[rng.choice(3, rows, p=[0.8, 0.15, 0.05])]

    per_rule = max(int(rows * bad_fraction) // len(RULES), 1)
    chosen = rng.choice(rows, size=per_rule * len(RULES), replace=False)
    groups = np.split(chosen, len(RULES))
    txn_id[groups[0]] = None
    currency = currency.copy()
    currency[groups[1]] = BAD_CURRENCIES[np.arange(per_rule) % len(BAD_CURRENCIES)]
    amount_text[groups[2]] = BAD_AMOUNTS[np.arange(per_rule) % len(BAD_AMOUNTS)]

    columns = {
        "txn_id": txn_id,
        "customer_id": _codes("C", cust, 7),
        "email": cust_email[cust],
        "phone": cust_phone[cust],
        "account_number": cust_account[cust],
        "full_name": cust_name[cust],
        "note": np.array(notes, dtype=object),
        "amount": amount_text,
        "currency": currency,
        "booked_at": _iso(booked_s),
        "updated_at": _iso(booked_s + rng.integers(0, 86_400, rows)),
        "value_date": np.datetime_as_string(
            np.datetime64("2026-01-01", "D") + (booked_s // 86_400).astype("timedelta64[D]")
        ).astype(object),
        "category": CATEGORIES[rng.integers(0, len(CATEGORIES), rows)],
        "merchant": _codes("M", rng.integers(0, 5_000, rows), 5),
        "channel": CHANNELS[rng.integers(0, len(CHANNELS), rows)],
        "country": COUNTRIES[rng.integers(0, len(COUNTRIES), rows)],
        "mcc": rng.integers(1000, 9999, rows).astype(str).astype(object),
        "is_disputed": np.where(rng.random(rows) < 0.002, "true", "false").astype(object),
        "is_international": np.where(rng.random(rows) < 0.1, "Y", "N").astype(object),
        "balance_after": pa.array(np.round(rng.normal(2_500, 1_500, rows), 2))
        .cast(pa.string())
        .to_numpy(zero_copy_only=False),
        "branch_code": _codes("BR", rng.integers(0, 400, rows), 4),
    }
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(table, path)
    sample = rng.choice(rows, size=min(rows, 2_000), replace=False)
    mail_rows = np.flatnonzero(kinds == 1)[:500]
    addresses = sorted(set(cust_email[cust[sample]]) | set(other[mail_rows]))
    return {
        "planted": {rule: sorted(int(i) for i in g) for rule, g in zip(RULES, groups, strict=True)},
        "sample_addresses": addresses,
        "note_kinds": {
            name: int(np.count_nonzero(kinds == k))
            for k, name in enumerate(["text", "email", "card", "phone", "null"])
        },
    }


def write_spec(path: Path, drop: Path) -> None:
    """The connector as a user declares it: a ConnectorComponent ``defs.yaml``."""
    schema = "\n".join(f"    {name}: {kind}" for name, kind in SCHEMA.items())
    path.write_text(
        f"""# Generated by bench/ingest.py: a bank's CRM transactions export drop folder.
type: aios_dagster.lib.connectors.component.ConnectorComponent
attributes:
  name: {CONNECTOR}
  kind: files
  contract: {DATASET}
  description: CRM transactions export (benchmark).
  source:
    url: "{{{{ sources_dir }}}}/{drop.name}"
    pattern: "*.csv"
    format: csv
    batch_rows: {BATCH_ROWS}
  pii:
    email: {{action: tokenize, as: email_token}}
    phone: {{action: tokenize, as: phone_token}}
    account_number: {{action: tokenize, as: account_token}}
    note: {{action: mask}}
    full_name: {{action: drop}}
  schema:
{schema}
""",
        encoding="utf-8",
    )


def write_contract(path: Path) -> None:
    def rule(kind: str, why: str, **kwargs: Any) -> dict[str, Any]:
        return {"type": f"expect_{kind}", "kwargs": kwargs, "meta": {"why": why}}

    suite = {
        "name": DATASET,
        "meta": {
            "contract": {
                "dataset": DATASET,
                "version": 1,
                "severity": "error",
                "record_id": "txn_id",
                "max_quarantine_fraction": 0.01,
                "owner": "bench@bank",
            }
        },
        "expectations": [
            rule(
                "table_columns_to_match_set",
                "what staging reads",
                column_set=list(SCHEMA),
                exact_match=True,
            ),
            rule("column_values_to_not_be_null", "dedup key", column="txn_id"),
            rule("column_values_to_be_unique", "booked once", column="txn_id"),
            rule("column_values_to_not_be_null", "joins by customer", column="customer_id"),
            rule("column_values_to_not_be_null", "spend features", column="amount"),
            rule("column_values_to_not_be_null", "history windows", column="booked_at"),
            rule(
                "column_values_to_be_in_set",
                "currencies the bank books",
                column="currency",
                value_set=["GBP", "EUR", "USD"],
            ),
            rule(
                "column_values_to_be_in_set",
                "known channels",
                column="channel",
                value_set=list(dict.fromkeys(CHANNELS)),
            ),
        ],
    }
    path.write_text(json.dumps(suite, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The measured paths (each runs in its own child process)
# --------------------------------------------------------------------------------------------


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


def child_measure(path: str, workdir: Path, reps: int, budget_s: float) -> dict[str, Any]:
    """Warm up once, then up to ``reps`` timed runs within ``budget_s``; memory from /proc.

    ``process`` peak: VmHWM over the child's whole life (imports, warm-up, reps). ``work`` peak:
    VmHWM over the timed reps minus the RSS they started from (after imports and warm-up, with
    freed memory handed back), i.e. what the ingest itself needed on top of a warm process.
    """
    if path in ("ours", "pyarrow_plus_pii"):
        import great_expectations  # noqa: F401  (imported lazily by validate_frame: not work)
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
    spent = warmup_s
    for _ in range(reps):
        if times and spent + times[-1] > budget_s:
            break  # one more rep would overrun the budget: report fewer, the JSON says so
        started, cpu_started = time.perf_counter(), time.process_time()
        last = run(f"{path}-rep")
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)  # every thread: robust to a busy box
        spent += times[-1]
    peak_kib = _status_kib("VmHWM")
    result: dict[str, Any] = {
        "times_s": times,
        "cpu_s": cpu,
        "warmup_s": warmup_s,
        "baseline_mib": baseline_kib / 1024,
        "peak_mib": max(peak_kib, lifetime_kib) / 1024,
        "work_peak_mib": (peak_kib - baseline_kib) / 1024,
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


def child_profile(workdir: Path, rows: int, top: int) -> dict[str, Any]:
    """cProfile of (a) on the first ``rows`` rows, then wall-clock per stage without it."""
    import great_expectations  # noqa: F401

    import aios_dagster.lib.connectors.runtime as runtime
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
        "apply_pii": "pii (tokenize + mask + drop)",
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
    top_level = ("apply_pii", "conform_table", "split_table", "batches")
    accounted = sum(stages.get(labels[k], 0.0) for k in top_level)
    stages["waiting for writes, type-failure rows, cursor, rest"] = wall - accounted
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


# --------------------------------------------------------------------------------------------
# Parent: orchestrate, verify, report
# --------------------------------------------------------------------------------------------


def _child(args: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"child {args[:2]} failed with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=200.0, help="per path, reps included")
    parser.add_argument("--profile-rows", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "ingest.json"
    )
    parser.add_argument("--child", choices=[*FACTORIES, "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "profile":
        print(json.dumps(child_profile(args.workdir, args.profile_rows, args.top)))
        return 0
    if args.child:
        print(json.dumps(child_measure(args.child, args.workdir, args.reps, args.budget_s)))
        return 0

    begun = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="aios_ingest_bench_"))
    try:
        return _run(args, workdir, begun)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path, begun: float) -> int:
    started = time.perf_counter()
    csv_path = workdir / "drop" / "transactions.csv"
    meta = make_csv(csv_path, args.rows, args.bad_fraction)
    write_spec(workdir / "defs.yaml", csv_path.parent)
    (workdir / "expectations").mkdir()
    write_contract(workdir / "expectations" / f"{DATASET}.json")
    size_mib = csv_path.stat().st_size / 2**20
    planted = sum(len(g) for g in meta["planted"].values())
    print(
        f"generated {args.rows:,} rows ({size_mib:.0f} MiB CSV, {planted} planted bad rows) "
        f"in {time.perf_counter() - started:.1f} s under {workdir}"
    )

    paths = [
        ("ours", "ours: run_connector (FilesReader, PII, conform, contract, Parquet)"),
        ("pyarrow_floor", "pyarrow floor: read_csv + write_table"),
        ("pyarrow_stream_floor", "pyarrow stream floor: open_csv (text) + ParquetWriter"),
        ("pyarrow_plus_pii", "pyarrow stream + the PII policy (Arrow)"),
    ]
    results: dict[str, dict[str, Any]] = {}
    for key, label in paths:
        started = time.perf_counter()
        common = ["--workdir", str(workdir), "--reps", str(args.reps)]
        results[key] = _child(
            ["--child", key, *common, "--budget-s", str(args.budget_s)], timeout=900
        )
        done = len(results[key]["times_s"])
        print(
            f"  {label}: {time.perf_counter() - started:.1f} s "
            f"(warm-up {results[key]['warmup_s']:.1f} s + {done} reps)"
        )
        if key != "ours":
            assert results[key]["rows"] == args.rows, (key, results[key]["rows"])
    checks = verify(Path(results["ours"]["lake"]), meta, args.rows, results["ours"]["report"])
    print(
        f"  verified: {checks['rows_landed']:,} landed + {checks['records_quarantined']:,} "
        f"quarantined == {args.rows:,} in; all {checks['planted_bad_rows']} planted rows "
        f"quarantined; no e-mail address in {checks['string_values_scanned']:,} written values"
    )
    started = time.perf_counter()
    profile = _child(
        [
            *("--child", "profile", "--workdir", str(workdir)),
            *("--profile-rows", str(args.profile_rows), "--top", str(args.top)),
        ],
        timeout=600,
    )
    print(f"  profile of ours on {profile['rows']:,} rows: {time.perf_counter() - started:.1f} s")

    def rate(key: str) -> float:
        return args.rows / statistics.median(results[key]["times_s"])

    def work_mib(key: str) -> float:
        return results[key]["work_peak_mib"]

    ours, floor = rate("ours"), rate("pyarrow_floor")
    measurements: dict[str, dict[str, Any]] = {}
    for key, _ in paths:
        measurements[key] = {"value": rate(key), "unit": "rows/s"}
        measurements[f"{key}_s_per_run"] = {
            "value": statistics.median(results[key]["times_s"]),
            "unit": "s",
        }
        measurements[f"{key}_cpu_s_per_run"] = {
            "value": statistics.median(results[key]["cpu_s"]),
            "unit": "CPU s",
        }
        measurements[f"{key}_peak_rss_work"] = {"value": work_mib(key), "unit": "MiB"}
        measurements[f"{key}_peak_rss_process"] = {
            "value": results[key]["peak_mib"],
            "unit": "MiB",
        }
    measurements["peak_rss_work_ratio_vs_pyarrow_floor"] = {
        "value": work_mib("ours") / work_mib("pyarrow_floor"),
        "unit": "x",
    }
    measurements["peak_rss_process_ratio_vs_pyarrow_floor"] = {
        "value": results["ours"]["peak_mib"] / results["pyarrow_floor"]["peak_mib"],
        "unit": "x",
    }
    import pandas as pd
    import pyarrow as pa

    report = {
        "benchmark": "ingest",
        "params": {
            "rows": args.rows,
            "csv_mib": size_mib,
            "source_columns": 21,
            "landed_columns": len(SCHEMA),
            "bad_fraction": args.bad_fraction,
            "planted_bad_rows": {k: len(v) for k, v in meta["planted"].items()},
            "note_kinds": meta["note_kinds"],
            "batch_rows": BATCH_ROWS,
            "block_size_bytes": BLOCK_SIZE,
            "pii": "tokenize email/phone/account_number, mask note, drop full_name",
            "contract_expectations": 8,
            "parquet_compression": "zstd",
            "reps_requested": args.reps,
            "reps_run": {key: len(results[key]["times_s"]) for key, _ in paths},
            "warmup": "ours and pyarrow_plus_pii: first 100k-row batch; floors: whole file",
            "statistic": "median",
            "all_rates_rows_per_s": {
                key: [args.rows / t for t in results[key]["times_s"]] for key, _ in paths
            },
            "memory": (
                "each path in a fresh subprocess: process = VmHWM over the child's life "
                "(imports, warm-up, reps); work = VmHWM over the timed reps (reset with "
                "/proc/self/clear_refs after the warm-up) minus the RSS they started from"
            ),
            "peak_reset": {key: results[key]["peak_reset"] for key, _ in paths},
            "ours_report": results["ours"]["report"],
            "verification": checks,
            "profile": profile,
            "pyarrow": pa.__version__,
            "pandas": pd.__version__,
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_at_end": list(os.getloadavg()),
            "total_runtime_s": time.perf_counter() - begun,
        },
        "measurements": measurements,
        "ratios": {
            "vs_pyarrow_floor": ours / floor,
            "vs_pyarrow_stream_floor": ours / rate("pyarrow_stream_floor"),
            "vs_pyarrow_plus_pii": ours / rate("pyarrow_plus_pii"),
            "cpu_time_vs_pyarrow_floor": statistics.median(results["pyarrow_floor"]["cpu_s"])
            / statistics.median(results["ours"]["cpu_s"]),
            "peak_rss_work_vs_pyarrow_floor": measurements["peak_rss_work_ratio_vs_pyarrow_floor"][
                "value"
            ],
            "peak_rss_process_vs_pyarrow_floor": measurements[
                "peak_rss_process_ratio_vs_pyarrow_floor"
            ]["value"],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"\ningest: {args.rows:,} rows x 21 columns ({size_mib:.0f} MiB CSV), {planted} bad rows")
    print(
        f"{'path':<62} {'rows/s':>10} {'s/run':>7} {'CPU s':>7} {'work MiB':>9} "
        f"{'proc MiB':>9}  reps (rows/s)"
    )
    for key, label in paths:
        reps = ", ".join(f"{args.rows / t:,.0f}" for t in results[key]["times_s"])
        print(
            f"{label:<62} {rate(key):>10,.0f} {args.rows / rate(key):>7.2f} "
            f"{statistics.median(results[key]['cpu_s']):>7.2f} "
            f"{work_mib(key):>9.0f} {results[key]['peak_mib']:>9.0f}  {reps}"
        )
    r = report["ratios"]
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
    print(f"top {args.top} functions by own time (cProfile, {profile['rows']:,} rows):")
    for entry in profile["top_tottime"]:
        print(
            f"  {entry['tottime_s']:>7.2f} s own {entry['cumtime_s']:>7.2f} s cum "
            f"{entry['calls']:>10,}  {entry['function']}"
        )
    print(f"wrote {args.output} (total {time.perf_counter() - begun:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
