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

Each path runs in its own subprocess (so peak memories do not contaminate each other):
imports, one warm-up (the first 100k-row batch for (a) and (c2), which is all they need to load
their lazy imports and compile their regexes; the whole file for the floors). The children then
stay up and run ``--reps`` rounds, one timed run of each path per round in a rotating order,
so that the box's busy moments fall on every path alike (before 2026-12-08 each path ran all
its reps in a phase of its own, and the ratio moved with whichever phase was unlucky). Fewer
rounds run if ``--budget-s`` would be exceeded; the JSON says how many. Each rep starts with the
phone matcher's cache emptied, and ours starts its phone worker process afresh: a run's step
process starts without the numbers an earlier run parsed (figures before 2026-12-07 kept them
across reps, which flattered ours).
The median wall time is reported as rows/s, with the CPU time of every thread next to it (this
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

This file parses arguments, sets up the temporary folder and runs each path in its child
process; the input is generated in ``_ingest_data``, the measured paths and their memory
readings are in ``_ingest_runs``, the profile in ``_ingest_profile``, and verification, the
results file and printed tables in ``_ingest_report``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_output_argument
from _ingest_data import DATASET, make_csv, write_contract, write_spec
from _ingest_profile import child_profile
from _ingest_report import PATHS, build_results, print_report, verify
from _ingest_runs import FACTORIES, PROTOCOL, child_measure

_ENV = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}


def _child(args: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_ENV,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"child {args[:2]} failed with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Path:
    """One path's child process, kept warm between the reps it is asked for."""

    def __init__(self, key: str, workdir: Path) -> None:
        self.key = key
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", key, "--workdir", str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_ENV,
        )

    def _message(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                return dict(json.loads(line[len(PROTOCOL) :]))
        raise RuntimeError(f"child {self.key} ended with {self.proc.wait()}")

    def ready(self) -> float:
        return float(self._message()["warmup_s"])

    def rep(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("rep\n")
        self.proc.stdin.flush()
        return float(self._message()["time_s"])

    def result(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        last = self.proc.stdout.read().strip().splitlines()[-1]
        if self.proc.wait() != 0:
            raise RuntimeError(f"child {self.key} failed with {self.proc.returncode}")
        return dict(json.loads(last))


def _measure(workdir: Path, reps: int, budget_s: float) -> dict[str, dict[str, Any]]:
    """Every path warmed in its own child, then rounds of one rep each, the order rotating."""
    paths = [_Path(key, workdir) for key, _ in PATHS]
    for path in paths:  # one at a time: a warm-up is not timed, but it should not contend
        print(f"  {path.key}: warmed up in {path.ready():.1f} s")
    started = time.perf_counter()
    for rnd in range(reps):
        if rnd and time.perf_counter() - started > budget_s:
            break  # another round would overrun the budget: fewer reps, the JSON says so
        order = paths[rnd % len(paths) :] + paths[: rnd % len(paths)]
        took = {path.key: path.rep() for path in order}
        print(f"  round {rnd + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
    return {path.key: path.result() for path in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=600.0, help="all rounds together")
    parser.add_argument("--profile-rows", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    add_output_argument(parser, "ingest")
    parser.add_argument("--child", choices=[*FACTORIES, "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "profile":
        print(json.dumps(child_profile(args.workdir, args.profile_rows, args.top)))
        return 0
    if args.child:
        print(json.dumps(child_measure(args.child, args.workdir)))
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

    results = _measure(workdir, args.reps, args.budget_s)
    for key, _label in PATHS:
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

    out = build_results(
        args.rows,
        size_mib=size_mib,
        bad_fraction=args.bad_fraction,
        reps=args.reps,
        meta=meta,
        results=results,
        checks=checks,
        profile=profile,
        total_runtime_s=time.perf_counter() - begun,
    )
    out.write(args.output)
    print_report(out, results, profile, args.top)
    print(f"wrote {args.output} (total {time.perf_counter() - begun:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
