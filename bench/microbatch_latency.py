"""Micro-batch latency: email landed in the mailbox -> its prediction persisted in the lake.

Run: ``.venv/bin/python bench/microbatch_latency.py [--emails N] [--interval S]``

Everything is real and runs on this machine, in a temporary folder:

1. Small reference data is generated, a local Triton server started and the triage job run
   once in-process (ingest, dbt, train, publish to Triton, score), so a model is served and
   the mailbox connector's cursor covers every generated email.
2. **Daemon path** (what production does): a ``DAGSTER_HOME`` with SQLite storage and a
   ``QueuedRunCoordinator``, ``dagster-daemon run`` as a subprocess and ``raw_emails_sensor``
   started. ``--emails`` new emails are delivered at one per ``--interval`` seconds (each
   written under a temporary name, then renamed into the inbox, so the connector never reads
   half a file). The sensor launches ``microbatch_job`` runs (run worker subprocess, multiprocess
   executor) that land, featurise and score them.
3. **In-process floor**: the same kind of delivery (other emails) while this process evaluates
   the same sensor itself and runs ``microbatch_job`` in-process as soon as it reports new mail
   (no daemon, no sensor interval, no run-launch or step subprocesses).

An email's persisted time is the mtime of the ``email_router_predictions`` part that first
contains it (parts are written atomically; a watcher thread reads each new part once). Latency
= persisted - delivered. Emails the ``emails`` contract quarantines are counted, not timed.
Each run is broken down from its event log (queue, run-worker launch, and along the critical
path each step's wait for an executor slot, process start and compute), and each email's
latency is split into: behind the run in progress (the sensor launches nothing while one is
active), the sensor's pick-up (until the run that scored it was created) and that run's time.
An exactly-once check closes the run: one prediction and one decision-log entry per email.

The generator dates delivered mail ``today`` (UTC) at times spread over the day, so some
``received_at`` lie in the future (the contract allows up to now + 1 day; the micro-batch
scorer's 48 h look-back only bounds the past). Results go to
``bench/results/microbatch_latency.json`` (``--out`` elsewhere).

This file sets the bench up and runs its two phases; delivering and watching mail is in
``_microbatch_delivery``, the event-log breakdown in ``_microbatch_analysis``, the results file
and printed tables in ``_microbatch_report``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from _common import add_output_argument
from _microbatch_analysis import analyse, step_dependencies, tick_stats
from _microbatch_delivery import (
    PREDICTIONS,
    SMALL,
    BenchFailure,
    run_phase,
    stage_emails,
)
from _microbatch_report import build_results, print_summary
from dagster._core.scheduler.instigation import InstigatorType

from aios_dagster.cli import ensure_manifest, run_triage
from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import generate_reference_data
from aios_dagster.lib.inference.decision_log import DECISION_LOG
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SENSOR = "raw_emails_sensor"
JOB = "microbatch_job"
DAEMON_SEED = 101
FLOOR_SEED = 202
ANALYTICS_OFF = {
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}
# QueuedRunCoordinator as in production, dequeued every second (default 5 s); threaded sensor
# ticks; daemons this project does not use (declarative automation, freshness) are off so they
# do not compete for the CPU. The sensor daemon loop itself runs every 5 s (fixed in Dagster).
INSTANCE_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {max_runs}
    dequeue_interval_seconds: 1
sensors:
  use_threads: true
  num_workers: 2
auto_materialize:
  enabled: false
  use_sensors: false
freshness:
  enabled: false
"""
WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: aios_dagster.definitions
      working_directory: {root}
      executable_path: {python}
"""
# ----------------------------------------------------------------------------- the daemon


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Daemon:
    """``dagster-daemon run`` in its own process group, stopped by that group's id."""

    def __init__(self, env: dict[str, str], workspace: Path, log: Path) -> None:
        self.env, self.workspace, self.log = env, workspace, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the daemon's pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        # The daemon's code server, run workers and step processes share its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None


def sensor_ticks(instance: dg.DagsterInstance, after: float) -> list[Any]:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == SENSOR:
            ticks = instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=after, limit=10_000
            )
            return sorted(ticks, key=lambda t: t.timestamp)
    return []


def wait_first_tick(instance: dg.DagsterInstance, daemon: Daemon, after: float) -> Any:
    deadline = time.time() + 180
    while time.time() < deadline:
        if not daemon.alive():
            raise BenchFailure(f"dagster-daemon exited:\n{tail(daemon.log)}")
        done = [t for t in sensor_ticks(instance, after) if t.is_completed]
        if done:
            return done[0]
        time.sleep(0.5)
    raise BenchFailure(f"no {SENSOR} tick within 180 s:\n{tail(daemon.log)}")


def wait_runs_idle(instance: dg.DagsterInstance, timeout_s: float = 120) -> None:
    active = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    deadline = time.time() + timeout_s
    while instance.get_runs(filters=dg.RunsFilter(job_name=JOB, statuses=active), limit=1):
        if time.time() > deadline:
            raise BenchFailure(f"a {JOB} run is still active after {timeout_s:.0f} s")
        time.sleep(0.5)


def integrity(settings: Settings, results: dict[str, Any]) -> dict[str, Any]:
    """Exactly once: one current prediction and one decision-log entry per delivered email."""
    delivered = set()
    for part in ("daemon", "floor"):
        if part in results:
            delivered |= set(results[part]["phase"].delivered)
    preds = pq.read_table(settings.lake_dir / PREDICTIONS, columns=["record_id"])
    ids = preds.column("record_id").to_pylist()
    log = pq.read_table(settings.lake_dir / DECISION_LOG, columns=["record_id"])
    logged: dict[str, int] = defaultdict(int)
    for rid in log.column("record_id").to_pylist():
        if rid in delivered:
            logged[rid] += 1
    out = {
        "prediction_ids_unique": len(ids) == len(set(ids)),
        "delivered_with_one_prediction": len(delivered & set(ids)),
        "delivered_with_one_decision_log_entry": sum(1 for v in logged.values() if v == 1),
        "delivered_logged_more_than_once": sorted(k for k, v in logged.items() if v > 1),
    }
    if not out["prediction_ids_unique"] or out["delivered_logged_more_than_once"]:
        raise BenchFailure(f"an email was scored more than once: {out}")
    return out


# ----------------------------------------------------------------------------- setup


@dataclass
class Bench:
    """Everything one benchmark run holds: its folders, the served model and the pipeline."""

    args: argparse.Namespace
    tmp: Path
    settings: Settings
    server: LocalTritonServer
    instance: dg.DagsterInstance | None = None
    daemon: Daemon | None = None
    defs: dg.Definitions | None = None
    generated: Any = None
    triage: dict[str, Any] = field(default_factory=dict)
    triage_s: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.tmp / "dagster_home"

    @property
    def workspace(self) -> Path:
        return self.tmp / "workspace.yaml"

    @property
    def daemon_log(self) -> Path:
        return self.tmp / "daemon.log"

    @property
    def job(self) -> Any:
        assert self.defs is not None
        return self.defs.resolve_job_def(JOB)

    def sensor_requests(self) -> int:
        """How many runs the connector's sensor would request now (evaluated here)."""
        assert self.defs is not None
        sensor = self.defs.resolve_sensor_def(SENSOR)
        ctx = dg.build_sensor_context(instance=self.instance, resources=self.defs.resources)
        return len(sensor(ctx).run_requests or [])


def new_bench(args: argparse.Namespace) -> Bench:
    """A temporary folder with a Dagster home (production-like run queue) and a workspace."""
    tmp = Path(tempfile.mkdtemp(prefix="aios_microbatch_bench_"))
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp / "data")})
    server = LocalTritonServer(settings.model_repository, settings.triton_work_dir)
    bench = Bench(args, tmp, settings, server)
    bench.home.mkdir()
    (bench.home / "dagster.yaml").write_text(INSTANCE_YAML.format(max_runs=args.max_runs))
    bench.workspace.write_text(WORKSPACE_YAML.format(root=ROOT, python=sys.executable))
    return bench


def serve_model(bench: Bench) -> None:
    """Reference data, Triton, one triage run: a model is published and served."""
    settings = bench.settings
    print(f"setup in {bench.tmp}", flush=True)
    bench.generated = generate_reference_data(
        settings.sources_dir, start_date=settings.start_date, **SMALL
    )
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True)
    bench.instance = dg.DagsterInstance.from_config(str(bench.home))
    bench.server.start()
    started = time.time()
    bench.triage = run_triage(
        settings,
        triton_url=bench.server.grpc_url,
        metrics_url=bench.server.metrics_url,
        instance=bench.instance,
    )
    bench.triage_s = time.time() - started
    print(
        f"triage run: {bench.triage['predictions']} predictions in {bench.triage_s:.0f} s",
        flush=True,
    )
    served = replace(
        settings, triton_grpc_url=bench.server.grpc_url, triton_metrics_url=bench.server.metrics_url
    )
    bench.defs = build_definitions(served)
    if bench.sensor_requests():
        raise BenchFailure(f"{SENSOR} sees a backlog after the triage run")


# ----------------------------------------------------------------------------- phases


def daemon_env(bench: Bench) -> dict[str, str]:
    return {
        **os.environ,
        **ANALYTICS_OFF,
        "AIOS_DATA_DIR": str(bench.settings.data_dir),
        "AIOS_TRITON_GRPC_URL": bench.server.grpc_url,
        "AIOS_TRITON_METRICS_URL": bench.server.metrics_url,
        "DAGSTER_HOME": str(bench.home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start_daemon(bench: Bench) -> Daemon:
    """Start the sensor and ``dagster-daemon``; wait for the sensor's first (empty) tick."""
    assert bench.instance is not None
    env = daemon_env(bench)
    subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", SENSOR, "-w", str(bench.workspace)],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    daemon = bench.daemon = Daemon(env, bench.workspace, bench.daemon_log)
    started = time.time()
    daemon.start()
    first = wait_first_tick(bench.instance, daemon, started - 60)
    if first.run_ids:
        raise BenchFailure(f"the first {SENSOR} tick launched {first.run_ids}: a backlog")
    print(
        f"daemon up; first {SENSOR} tick {first.timestamp - started:.1f} s after start "
        f"({first.skip_reason})",
        flush=True,
    )
    return daemon


def phase_runs(instance: dg.DagsterInstance, after: float) -> tuple[list[str], list[str]]:
    """Ids of the connector's ``JOB`` runs created after ``after``, and of those that failed."""
    created_after = datetime.fromtimestamp(after, UTC)
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=JOB, tags={"aios/connector": "raw_emails"}, created_after=created_after
        )
    )
    ids = [r.run_id for r in runs]
    failed = [
        r.run_id
        for r in instance.get_runs(filters=dg.RunsFilter(run_ids=ids))
        if r.status != dg.DagsterRunStatus.SUCCESS
    ]
    return ids, failed


def daemon_phase(bench: Bench, staged: list[Path]) -> dict[str, Any]:
    """What production does: the sensor under ``dagster-daemon`` launches queued runs."""
    instance = bench.instance
    assert instance is not None
    daemon = start_daemon(bench)

    def alive() -> None:
        if not daemon.alive():
            raise BenchFailure(f"dagster-daemon exited:\n{tail(bench.daemon_log)}")

    def diagnosis() -> str:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB), limit=5)
        states = ", ".join(f"{r.run_id[:8]} {r.status.value}" for r in runs)
        return f"latest {JOB} runs: {states}\ndaemon log tail:\n{tail(bench.daemon_log)}"

    args = bench.args
    print(f"daemon path: {args.emails} emails, one every {args.interval} s ...", flush=True)
    started = time.time()
    phase = run_phase(
        "daemon",
        staged,
        bench.settings,
        interval_s=args.interval,
        timeout_s=args.timeout,
        stall_s=args.stall,
        tick=alive,
        diagnose=diagnosis,
    )
    wait_runs_idle(instance)
    ticks = sensor_ticks(instance, started - 1)
    run_ids, failed = phase_runs(instance, started - 1)
    daemon.stop()
    return {
        "phase": phase,
        "analysis": analyse(instance, phase, run_ids, step_dependencies(bench.job)),
        "ticks": tick_stats(ticks),
        "failed_runs": failed,
    }


def floor_phase(bench: Bench, staged: list[Path]) -> dict[str, Any]:
    """The floor: same delivery, the job run in this process as soon as mail is new."""
    assert bench.instance is not None
    job = bench.job
    run_ids: list[str] = []

    def run_when_new() -> None:
        if bench.sensor_requests():
            result = job.execute_in_process(
                instance=bench.instance,
                tags={"aios/connector": "raw_emails", "aios/bench": "in_process"},
                raise_on_error=False,
            )
            run_ids.append(result.run_id)
            if not result.success:
                raise BenchFailure(f"in-process {JOB} run {result.run_id} failed")

    args = bench.args
    print(f"in-process floor: {args.floor_emails} emails ...", flush=True)
    phase = run_phase(
        "in_process",
        staged,
        bench.settings,
        interval_s=args.interval,
        timeout_s=args.timeout,
        stall_s=args.stall,
        tick=run_when_new,
        diagnose=lambda: f"in-process runs so far: {len(run_ids)}",
    )
    return {
        "phase": phase,
        "analysis": analyse(bench.instance, phase, run_ids, step_dependencies(job)),
    }


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=160, help="emails, daemon path")
    parser.add_argument("--floor-emails", type=int, default=100, help="emails, in-process floor")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between emails")
    parser.add_argument("--max-runs", type=int, default=1, help="QueuedRunCoordinator limit")
    parser.add_argument("--timeout", type=float, default=240, help="s after the last delivery")
    parser.add_argument("--stall", type=float, default=150, help="s without progress = stall")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    add_output_argument(parser, "microbatch_latency", flag="--out")
    return parser.parse_args()


def _raise_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_bench(bench: Bench) -> None:
    """Serve a model, then time the daemon path and (unless skipped) the in-process floor."""
    args, settings = bench.args, bench.settings
    bench.results["load_at_start"] = os.getloadavg()[0]
    serve_model(bench)
    # Staged before either phase so that generating mail is not timed by either.
    staged_daemon = stage_emails(
        settings, bench.tmp / "staged_daemon", count=args.emails, seed=DAEMON_SEED
    )
    staged_floor = stage_emails(
        settings, bench.tmp / "staged_floor", count=args.floor_emails, seed=FLOOR_SEED
    )
    bench.results["daemon"] = daemon_phase(bench, staged_daemon)
    if not args.skip_floor:
        bench.results["floor"] = floor_phase(bench, staged_floor)
    bench.results["integrity"] = integrity(settings, bench.results)


def prepare_process() -> None:
    """Signals become SystemExit (also when started with them ignored); analytics off."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_on_term)
    for key, value in ANALYTICS_OFF.items():
        os.environ.setdefault(key, value)


def close_bench(bench: Bench) -> None:
    """Stop the daemon and Triton, close the instance, remove the folder unless kept."""
    if bench.daemon is not None:
        bench.daemon.stop()
    bench.server.stop()
    if bench.instance is not None:
        bench.instance.dispose()
    if bench.args.keep:
        print(f"kept {bench.tmp}")
    else:
        shutil.rmtree(bench.tmp, ignore_errors=True)


def main() -> None:
    args = parse_args()
    prepare_process()
    started = time.time()
    bench = new_bench(args)
    try:
        run_bench(bench)
        results = build_results(bench, time.time() - started)
        results.write(args.out, digits=3)
        print_summary(bench.results, results.ratios)
        print(f"\nwrote {args.out}")
    except BenchFailure as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        if bench.daemon_log.exists():
            print(f"daemon log: {bench.daemon_log}", file=sys.stderr)
        args.keep = True
        raise SystemExit(1) from None
    finally:
        close_bench(bench)


if __name__ == "__main__":
    main()
