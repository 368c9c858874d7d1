"""Contract validation throughput: our runner vs a plain Great Expectations validate.

Run: ``.venv/bin/python bench/contracts.py [--rows N] [--reps N]``

Builds ``--rows`` synthetic transactions matching ``expectations/transactions.json`` (the
core-banking contract: column set, not-null ids/amount/booking time, unique ``txn_id``, known
currencies), deterministically with numpy, and plants ``--bad-fraction`` bad rows spread over
every row-level rule (plus nulls that the contract tolerates, so null handling is exercised).
In one run it measures rows/s of

(a) ``validate_frame`` -- what landing and the asset checks call: validate *and* name every bad
    row with its rule (the quarantine rows);
(b) a plain GE ``batch.validate(suite)`` with GE's default result format (SUMMARY), the way a GE
    user validates a frame: context, data source and suite are built once, outside the timing;
(c) the same with ``result_format=COMPLETE``, what a GE user needs to find *all* the bad rows;
(d) ``validate_frame(engine="ge")``: our runner with GE evaluating every rule (no pandas fast
    path), to show what GE itself costs once it loads the batch once.

Each is warmed up once, then timed ``--reps`` times; the median is reported. Peak memory is the
high-water RSS above the starting RSS of a forked child that runs the path once (tracemalloc
would distort the timing). Per rule, (a)'s and (d)'s verdicts and unexpected counts must equal
(b)'s and (c)'s, their quarantined offsets must equal (c)'s ``unexpected_index_list`` and the
planted rows, so the benchmark cannot time the wrong work. Results go to
``bench/results/contracts.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import Results, add_output_argument, measure_rate, print_ratios, print_table

from aios_dagster.lib.contracts.runner import Contract, load_contract, validate_frame

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

CONTRACT = Path(__file__).resolve().parents[1] / "expectations" / "transactions.json"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SEED = 20261124
CURRENCIES = np.array(["GBP", "EUR", "USD"], dtype=object)
CHANNELS = np.array(["card", "online", "atm", "transfer", "branch"], dtype=object)
BAD_CURRENCIES = np.array(["JPY", "gbp", "XXX"], dtype=object)
# Row-level rules of the contract, named as the runner names them; planted in this order.
RULES = (
    "column_values_to_not_be_null(txn_id)",
    "column_values_to_be_unique(txn_id)",
    "column_values_to_not_be_null(customer_id)",
    "column_values_to_not_be_null(amount)",
    "column_values_to_not_be_null(booked_at)",
    "column_values_to_be_in_set(currency)",
)

Planted = dict[str, set[int]]


def _codes(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width ids (``T000000042``) as a Python-object array, as a lake read returns them."""
    text = np.char.add(prefix, np.char.zfill(numbers.astype(f"U{width}"), width))
    return text.astype(object)


def make_transactions(
    rows: int, bad_fraction: float, seed: int = SEED
) -> tuple[pd.DataFrame, Planted]:
    """``rows`` transactions and, per rule, the offsets that must fail it.

    Bad rows are disjoint across rules so every planted row breaks exactly one rule; a duplicate
    is planted as a pair (both copies break uniqueness, as in GE). Nulls in ``currency`` and
    ``merchant`` are planted too: the contract tolerates them, so they must *not* be quarantined.
    """
    rng = np.random.default_rng(seed)
    booked = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300 * 86_400, rows), unit="s"
    )
    frame = pd.DataFrame(
        {
            "txn_id": _codes("T", np.arange(rows), 9),
            "customer_id": _codes("C", rng.integers(0, max(rows // 20, 1), rows), 7),
            "account_token": _codes("A", rng.integers(0, max(rows // 15, 1), rows), 8),
            "booked_at": booked,
            "amount": np.round(rng.lognormal(3.0, 1.2, rows), 2),
            "currency": CURRENCIES[rng.choice(3, rows, p=[0.8, 0.15, 0.05])],
            "merchant": _codes("M", rng.integers(0, 5_000, rows), 5),
            "channel": CHANNELS[rng.integers(0, len(CHANNELS), rows)],
            "is_disputed": rng.random(rows) < 0.002,
            "updated_at": booked + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s"),
        }
    )
    per_rule = max(int(rows * bad_fraction) // len(RULES), 2)
    chosen = rng.choice(rows, size=per_rule * len(RULES) + 2 * per_rule, replace=False)
    groups = np.split(chosen[: per_rule * len(RULES)], len(RULES))
    tolerated = chosen[per_rule * len(RULES) :]
    planted: Planted = {rule: set() for rule in RULES}

    frame.loc[groups[0], "txn_id"] = None
    planted[RULES[0]] = set(groups[0].tolist())
    half = per_rule // 2
    originals, copies = groups[1][:half], groups[1][half : 2 * half]
    frame.loc[copies, "txn_id"] = frame.loc[originals, "txn_id"].to_numpy()
    planted[RULES[1]] = set(originals.tolist()) | set(copies.tolist())
    frame.loc[groups[2], "customer_id"] = None
    planted[RULES[2]] = set(groups[2].tolist())
    frame.loc[groups[3], "amount"] = np.nan
    planted[RULES[3]] = set(groups[3].tolist())
    frame.loc[groups[4], "booked_at"] = pd.NaT
    planted[RULES[4]] = set(groups[4].tolist())
    frame.loc[groups[5], "currency"] = BAD_CURRENCIES[np.arange(per_rule) % len(BAD_CURRENCIES)]
    planted[RULES[5]] = set(groups[5].tolist())
    frame.loc[tolerated[:per_rule], "currency"] = None
    frame.loc[tolerated[per_rule:], "merchant"] = None
    return frame, planted


class PlainGE:
    """A GE user's setup, built once: ephemeral context, pandas data source, the suite."""

    def __init__(self, contract: Contract) -> None:
        import great_expectations as gx
        from great_expectations.core import ExpectationSuite
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        # The runner turns progress bars off too; leaving them on would time tqdm, not GE.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        spec = {k: v for k, v in contract.suite.items() if k in {"name", "expectations", "meta"}}
        self.suite = self.context.suites.add(ExpectationSuite(**spec))
        self.batch_definition = (
            self.context.data_sources.add_pandas("bench")
            .add_dataframe_asset(contract.name)
            .add_batch_definition_whole_dataframe("all")
        )

    def validate(self, frame: pd.DataFrame, result_format: str) -> Any:
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(self.suite, result_format={"result_format": result_format})


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak_child(fn: Callable[[], Any], conn: Any) -> None:
    start = _status_kib("VmRSS")
    fn()
    conn.send((_status_kib("VmHWM") - start) / 1024)
    conn.close()


def peak_mib(fn: Callable[[], Any]) -> float:
    """High-water RSS above the starting RSS, in MiB, of one run of ``fn`` in a forked child.

    A fork inherits the warmed-up process (imports, caches, the frame), so only the run's own
    allocations count; the kernel resets the child's high-water mark to its RSS at fork time.
    """
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_peak_child, args=(fn, sender))
    child.start()
    sender.close()
    value = float(receiver.recv())
    child.join()
    return value


def _ge_by_rule(result: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in result.results:
        column = r.expectation_config.kwargs.get("column")
        rule = r.expectation_config.type.removeprefix("expect_")
        out[f"{rule}({column})" if column else rule] = {
            "success": bool(r.success),
            "unexpected_count": r.result.get("unexpected_count"),
            "index": r.result.get("unexpected_index_list"),
        }
    return out


def check(ours: Any, summary: Any, complete: Any, planted: Planted) -> dict[str, int]:
    """Every rule: same verdict and count in all, same rows in ours, COMPLETE and planted."""
    by_summary, by_complete = _ge_by_rule(summary), _ge_by_rule(complete)
    assert [o.rule for o in ours.outcomes] == list(by_complete), "rules differ"
    offsets = ours.quarantine.groupby("rule")["offset"].agg(lambda s: {int(v) for v in s})
    counts: dict[str, int] = {}
    for outcome in ours.outcomes:
        for label, ge in (("summary", by_summary), ("complete", by_complete)):
            theirs = ge[outcome.rule]
            assert outcome.success == theirs["success"], (label, outcome)
            if outcome.row_level:
                assert outcome.unexpected_count == theirs["unexpected_count"], (label, outcome)
        if outcome.row_level:
            rows = offsets.get(outcome.rule, set())
            assert rows == set(by_complete[outcome.rule]["index"]), outcome.rule
            assert rows == planted[outcome.rule], outcome.rule
            counts[outcome.rule] = outcome.unexpected_count
    assert set(counts) == set(planted), (sorted(counts), sorted(planted))
    bad = set().union(*planted.values())
    assert set(ours.bad_index.tolist()) == bad
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--reps", type=int, default=3)
    add_output_argument(parser, "contracts")
    args = parser.parse_args(argv)

    contract = load_contract(CONTRACT)
    frame, planted = make_transactions(args.rows, args.bad_fraction)
    plain = PlainGE(contract)

    def ours_run() -> Any:
        return validate_frame(frame, contract, source="bench", now=NOW)

    def ours_ge_run() -> Any:
        return validate_frame(frame, contract, source="bench", now=NOW, engine="ge")

    def summary_run() -> Any:
        return plain.validate(frame, "SUMMARY")

    def complete_run() -> Any:
        return plain.validate(frame, "COMPLETE")

    paths: list[tuple[str, str, Callable[[], Any]]] = [
        ("validate_frame", "validate_frame (validate + quarantine rows)", ours_run),
        ("plain_ge", "plain GE batch.validate (SUMMARY)", summary_run),
        ("ge_complete", "plain GE batch.validate (COMPLETE)", complete_run),
        ("validate_frame_ge", 'validate_frame(engine="ge")', ours_ge_run),
    ]
    rates: dict[str, tuple[float, list[float]]] = {}
    outputs: dict[str, Any] = {}
    peaks: dict[str, float] = {}
    for key, label, fn in paths:
        started = time.perf_counter()
        median, all_rates, outputs[key] = measure_rate(fn, args.rows, args.reps)
        rates[key] = (median, all_rates)
        peaks[key] = peak_mib(fn)
        print(f"  {label}: {time.perf_counter() - started:.1f} s for warm-up, reps and memory")
    ge_outputs = (outputs["plain_ge"], outputs["ge_complete"], planted)
    counts = check(outputs["validate_frame"], *ge_outputs)
    assert check(outputs["validate_frame_ge"], *ge_outputs) == counts
    engines = sorted({o.engine for o in outputs["validate_frame"].outcomes})

    results = Results(
        "contracts",
        params={
            "rows": args.rows,
            "columns": len(frame.columns),
            "contract": f"{contract.name}@v{contract.version}",
            "expectations": len(contract.suite["expectations"]),
            "bad_fraction": args.bad_fraction,
            "bad_rows": int(sum(counts.values())),
            "unexpected_count_by_rule": counts,
            "reps": args.reps,
            "warmup": 1,
            "statistic": "median",
            "plain_ge_setup": "context, pandas data source and suite built once, not timed",
            "validate_frame_engines": engines,
            "memory": "peak RSS above start of a forked child running the path once",
            "great_expectations": _ge_version(),
            "pandas": pd.__version__,
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        },
    )
    for key, _, _ in paths:
        results.measure(key, rates[key][0], "rows/s")
    for key, _, _ in paths:
        results.measure(f"{key}_peak_rss", peaks[key], "MiB")
    ours = rates["validate_frame"][0]
    results.ratio("vs_plain_ge", ours / rates["plain_ge"][0])
    results.ratio("vs_ge_complete", ours / rates["ge_complete"][0])
    results.ratio("ge_engine_vs_plain_ge", rates["validate_frame_ge"][0] / rates["plain_ge"][0])
    results.write(args.output)

    print(f"\ncontracts: {args.rows:,} rows, {contract.name}@v{contract.version}, ", end="")
    print(f"{sum(counts.values()):,} bad rows over {len(counts)} rules")
    print_table(
        ["path", "median rows/s", "s/run", "peak MiB", "all reps (rows/s)"],
        [
            [
                label,
                rates[key][0],
                args.rows / rates[key][0],
                peaks[key],
                ", ".join(f"{r:,.0f}" for r in rates[key][1]),
            ]
            for key, label, _ in paths
        ],
        ["s", ",.0f", ".2f", ".0f", "s"],
    )
    print_ratios(results.ratios)
    print("rules, counts and rows agree")
    print(f"wrote {args.output}")
    return 0


def _ge_version() -> str:
    import great_expectations as gx

    return str(gx.__version__)


if __name__ == "__main__":
    raise SystemExit(main())
