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
``bench/results/microbatch_latency.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from dagster._core.scheduler.instigation import InstigatorType

from aios_dagster.cli import ensure_manifest, run_triage
from aios_dagster.definitions import build_definitions
from aios_dagster.lib.contracts.landing import quarantine_dataset
from aios_dagster.lib.generator import deliver_new_emails, generate_reference_data
from aios_dagster.lib.inference.predictions import DECISION_LOG
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "microbatch_latency.json"
BIN = Path(sys.executable).parent
SENSOR = "raw_emails_sensor"
JOB = "microbatch_job"
PREDICTIONS = "email_router_predictions"
SMALL = {"emails_per_week": 1_200, "customers": 300, "weeks": 2, "seed": 11}
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
STAGES = {
    "ingest": ("raw_",),
    "features": ("email_text_features",),
    "dbt": ("triage_dbt_models",),
    "scoring": ("email_router_microbatch",),
}


class BenchFailure(RuntimeError):
    """The pipeline stalled or failed: the message carries the evidence."""


# ----------------------------------------------------------------------------- delivery


def stage_emails(settings: Settings, folder: Path, *, count: int, seed: int) -> list[Path]:
    """Generate ``count`` new emails dated today (UTC) outside the inbox, in time order."""
    (folder / "crm").mkdir(parents=True)
    shutil.copy(settings.crm_csv, folder / "crm" / "customers.csv")
    return deliver_new_emails(folder, count=count, seed=seed, day=datetime.now(UTC).date())


class Delivery(threading.Thread):
    """Moves staged emails into the inbox at a steady rate; records each delivery time."""

    def __init__(self, staged: list[Path], inbox: Path, interval_s: float) -> None:
        super().__init__(name="delivery", daemon=True)
        self.staged, self.inbox, self.interval_s = staged, inbox, interval_s
        self.delivered: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.started_at = 0.0

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            for i, src in enumerate(self.staged):
                due = self.started_at + i * self.interval_s
                if self.stop_event.wait(max(0.0, due - time.monotonic())):
                    return
                tmp = self.inbox / f".{src.name}.part"  # not *.eml: the connector ignores it
                tmp.write_bytes(src.read_bytes())
                tmp.replace(self.inbox / src.name)
                self.delivered[src.stem] = time.time()
        except BaseException as exc:  # reported by the waiting loop
            self.error = exc

    @property
    def done(self) -> bool:
        return len(self.delivered) == len(self.staged)


class Watcher(threading.Thread):
    """Reads each new predictions part once: first-seen part mtime and run of every record."""

    def __init__(self, lake_dir: Path, poll_s: float = 0.25) -> None:
        super().__init__(name="watcher", daemon=True)
        self.pred_dir = lake_dir / PREDICTIONS
        self.quarantine_dir = lake_dir / quarantine_dataset("emails")
        self.poll_s = poll_s
        self.lock = threading.Lock()
        self.persisted: dict[str, tuple[float, str]] = {}
        self.quarantined: set[str] = set()
        self.seen: set[tuple[str, int]] = set()
        self.stop_event = threading.Event()
        self.last_change = time.time()
        self.error: BaseException | None = None

    @staticmethod
    def _parts(folder: Path) -> list[tuple[Path, os.stat_result]]:
        if not folder.exists():
            return []
        found = []
        for path in folder.rglob("*.parquet"):
            if path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                found.append((path, path.stat()))
        return found

    def prime(self) -> None:
        """What is there already is not this phase's: never read it."""
        for folder in (self.pred_dir, self.quarantine_dir):
            self.seen |= {(str(p), st.st_mtime_ns) for p, st in self._parts(folder)}

    def poll(self) -> None:
        for path, st in self._parts(self.pred_dir):
            key = (str(path), st.st_mtime_ns)
            if key in self.seen:
                continue
            try:
                table = pq.read_table(path, columns=["record_id", "run_id"])
            except (FileNotFoundError, OSError):
                continue  # replaced between listing and reading: the next poll sees it
            self.seen.add(key)
            with self.lock:
                for rid, run_id in zip(
                    table.column("record_id").to_pylist(),
                    table.column("run_id").to_pylist(),
                    strict=True,
                ):
                    if rid not in self.persisted:
                        self.persisted[rid] = (st.st_mtime, run_id)
                        self.last_change = time.time()
        for path, st in self._parts(self.quarantine_dir):
            key = (str(path), st.st_mtime_ns)
            if key in self.seen:
                continue
            try:
                ids = pq.read_table(path, columns=["record_id"]).column(0).to_pylist()
            except (FileNotFoundError, OSError):
                continue
            self.seen.add(key)
            with self.lock:
                self.quarantined |= {i for i in ids if i}
                self.last_change = time.time()

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.poll_s):
                self.poll()
        except BaseException as exc:  # reported by the waiting loop
            self.error = exc


@dataclass
class PhaseResult:
    name: str
    delivered: dict[str, float]
    persisted: dict[str, tuple[float, str]]
    quarantined: set[str]
    wall_s: float
    latencies: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latencies = {
            rid: self.persisted[rid][0] - t
            for rid, t in self.delivered.items()
            if rid in self.persisted
        }


def run_phase(
    name: str,
    staged: list[Path],
    settings: Settings,
    *,
    interval_s: float,
    timeout_s: float,
    stall_s: float,
    tick: Callable[[], None],
    diagnose: Callable[[], str],
) -> PhaseResult:
    """Deliver ``staged`` and wait until each email is persisted or quarantined.

    ``tick`` is called in the waiting loop (the floor runs its jobs there; the daemon path
    checks the daemon is alive). ``diagnose`` gives the evidence a stall is reported with.
    """
    watcher = Watcher(settings.lake_dir)
    watcher.prime()
    delivery = Delivery(staged, settings.mailbox_dir, interval_s)
    started = time.time()
    watcher.start()
    delivery.start()
    deadline = started + len(staged) * interval_s + timeout_s
    try:
        while True:
            for thread in (delivery, watcher):
                if thread.error is not None:
                    raise BenchFailure(f"{name}: {thread.name} thread failed") from thread.error
            tick()
            with watcher.lock:
                done = set(watcher.persisted) | watcher.quarantined
                last_change = watcher.last_change
            pending = sorted(set(delivery.delivered) - done)
            if delivery.done and not pending:
                break
            now = time.time()
            quiet_since = max(last_change, max(delivery.delivered.values(), default=started))
            stalled = bool(pending) and now - quiet_since > stall_s
            if stalled or now > deadline:
                why = f"no progress for {stall_s:.0f} s" if stalled else "timed out"
                raise BenchFailure(
                    f"{name}: {why}; {len(pending)} of {len(delivery.delivered)} delivered "
                    f"emails have no prediction (first: {pending[:3]})\n{diagnose()}"
                )
            time.sleep(0.2)
    finally:
        delivery.stop_event.set()
        watcher.stop_event.set()
        delivery.join(timeout=5)
        watcher.join(timeout=5)
    watcher.poll()
    return PhaseResult(
        name,
        dict(delivery.delivered),
        {k: v for k, v in watcher.persisted.items() if k in delivery.delivered},
        watcher.quarantined & set(delivery.delivered),
        time.time() - started,
    )


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


# ----------------------------------------------------------------------------- analysis


def pct(values: list[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def stage_of(step_key: str) -> str:
    for stage, prefixes in STAGES.items():
        if step_key.startswith(prefixes):
            return stage
    return "other"


def step_dependencies(job: Any) -> dict[str, set[str]]:
    """Step key -> the step keys it waits for, from the job's execution plan."""
    from dagster._core.execution.api import create_execution_plan

    plan = create_execution_plan(job)
    return {
        s.key: set(s.get_execution_dependency_keys()) for s in plan.get_all_steps_in_topo_order()
    }


def run_breakdown(
    instance: dg.DagsterInstance, run_id: str, deps: dict[str, set[str]]
) -> dict[str, Any]:
    """Where one run's time went, from its event log (seconds).

    ``queue_s``: created (QUEUED) -> RUN_STARTING, when the run coordinator dequeues and launches
    it; ``launch_s``: -> the run worker's RUN_START (a subprocess that loads the code location).
    Then the critical path: from the last step back through, at each step, the dependency that
    finished last. Per step on it, ``wait_s`` (its last dependency's success, or the run start ->
    STEP_WORKER_STARTING: executor slot and polling), ``process_s`` (STEP_WORKER_STARTING ->
    STEP_START: the step's subprocess booting and loading the code location; 0 in-process) and
    ``compute_s`` (STEP_START -> STEP_SUCCESS: resources, imports done lazily in the step, and the
    work). ``finish_s``: last step success -> RUN_SUCCESS. The parts add up to ``run_s`` (created
    -> RUN_SUCCESS).
    """
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    created = record.create_timestamp.timestamp()
    run_marks: dict[str, float] = {}
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    kinds = dg.DagsterEventType
    run_kinds = (kinds.RUN_STARTING, kinds.RUN_START, kinds.RUN_SUCCESS, kinds.RUN_FAILURE)
    step_kinds = (kinds.STEP_WORKER_STARTING, kinds.STEP_START, kinds.STEP_SUCCESS)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type in run_kinds:
            run_marks.setdefault(event.event_type.name, entry.timestamp)
        elif event.event_type in step_kinds and event.step_key:
            marks[event.step_key].setdefault(event.event_type.name, entry.timestamp)
    start = run_marks.get("RUN_START", created)
    ended = run_marks.get("RUN_SUCCESS", run_marks.get("RUN_FAILURE", start))
    steps: dict[str, dict[str, float]] = {}
    for key, m in marks.items():
        begin = m.get("STEP_START", start)
        steps[key] = {
            "worker_starting": m.get("STEP_WORKER_STARTING", begin) - created,
            "start": begin - created,
            "end": m.get("STEP_SUCCESS", begin) - created,
        }
    path: list[dict[str, Any]] = []
    key = max(steps, key=lambda k: steps[k]["end"]) if steps else None
    while key is not None:
        before = [d for d in deps.get(key, ()) if d in steps]
        prev = max(before, key=lambda d: steps[d]["end"]) if before else None
        ready = steps[prev]["end"] if prev else start - created
        s = steps[key]
        path.append(
            {
                "step": key,
                "stage": stage_of(key),
                "wait_s": s["worker_starting"] - ready,
                "process_s": s["start"] - s["worker_starting"],
                "compute_s": s["end"] - s["start"],
            }
        )
        key = prev
    path.reverse()
    last_end = steps[path[-1]["step"]]["end"] if path else start - created
    out: dict[str, Any] = {
        "run_id": run_id,
        "created": created,
        "ended": ended,
        "run_s": ended - created,
        "queue_s": run_marks.get("RUN_STARTING", created) - created,
        "launch_s": start - run_marks.get("RUN_STARTING", created),
        "critical_path": path,
        "finish_s": ended - created - last_end,
        "steps": dict(sorted(steps.items(), key=lambda kv: kv[1]["start"])),
    }
    for part in ("wait_s", "process_s", "compute_s"):
        out[f"path_{part}"] = sum(p[part] for p in path)
    by_stage: dict[str, float] = defaultdict(float)
    for p in path:
        by_stage[p["stage"]] += p["wait_s"] + p["process_s"] + p["compute_s"]
    out["path_by_stage_s"] = dict(by_stage)
    return out


BREAKDOWN_FIELDS = {  # field of a run's breakdown -> its name in the measurements
    "run_s": "total",
    "queue_s": "queue",
    "launch_s": "worker_launch",
    "path_wait_s": "path_slot_wait",
    "path_process_s": "path_step_process_start",
    "path_compute_s": "path_step_compute",
    "finish_s": "finish",
}


def median_breakdown(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the runs, field by field (so the parts need not add up exactly)."""
    if not runs:
        return {}
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in BREAKDOWN_FIELDS}
    stages = sorted({s for r in runs for s in r["path_by_stage_s"]})
    out["path_by_stage_s"] = {
        s: statistics.median(r["path_by_stage_s"].get(s, 0.0) for r in runs) for s in stages
    }
    out["runs"] = len(runs)
    return out


def analyse(
    instance: dg.DagsterInstance,
    phase: PhaseResult,
    run_ids: list[str],
    deps: dict[str, set[str]],
) -> dict[str, Any]:
    """Per-run breakdowns, and each email's latency split around the run that scored it.

    ``behind_run_s``: delivered -> the end of the run before the scoring one, when the email
    arrived while that run was going (the sensor launches nothing while a run is active);
    ``pickup_s``: from then (or delivery) -> the scoring run's creation (sensor interval, tick);
    ``run_to_persisted_s``: the scoring run's creation -> the part holding the email written.
    """
    runs = sorted(
        (run_breakdown(instance, rid, deps) for rid in run_ids), key=lambda r: r["created"]
    )
    by_id = {r["run_id"]: r for r in runs}
    previous_end = {
        r["run_id"]: (runs[i - 1]["ended"] if i else float("-inf")) for i, r in enumerate(runs)
    }
    behind, pickup, own = [], [], []
    per_run_emails: dict[str, int] = defaultdict(int)
    for rid, delivered in phase.delivered.items():
        if rid not in phase.persisted:
            continue
        persisted, run_id = phase.persisted[rid]
        per_run_emails[run_id] += 1
        run = by_id.get(run_id)
        if run is None:
            continue
        free = max(delivered, min(previous_end[run_id], run["created"]))
        behind.append(free - delivered)
        pickup.append(run["created"] - free)
        own.append(persisted - run["created"])
    scoring = [r for r in runs if r["run_id"] in per_run_emails]
    origin = min(phase.delivered.values(), default=0.0)
    return {
        "runs": len(runs),
        "runs_detail": [
            {
                "created_after_first_delivery_s": r["created"] - origin,
                "run_s": r["run_s"],
                "emails_scored": per_run_emails.get(r["run_id"], 0),
                "created_after_previous_run_end_s": r["created"] - previous_end[r["run_id"]]
                if i
                else None,
            }
            for i, r in enumerate(runs)
        ],
        "runs_that_scored": len(scoring),
        "emails_per_run": summary([float(v) for v in per_run_emails.values()])
        if per_run_emails
        else {},
        "behind_run_s": summary(behind) if behind else {},
        "pickup_s": summary(pickup) if pickup else {},
        "run_to_persisted_s": summary(own) if own else {},
        "run_duration_s": summary([r["run_s"] for r in scoring]) if scoring else {},
        "median_run": median_breakdown(scoring),
        "typical_run": _typical(scoring),
    }


def _typical(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median duration, with its critical path and step timeline."""
    if not runs:
        return {}
    run = dict(sorted(runs, key=lambda r: r["run_s"])[len(runs) // 2])
    run.pop("created")
    run.pop("ended")
    return run


def tick_stats(ticks: list[Any]) -> dict[str, Any]:
    starts = [t.timestamp for t in ticks]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    evals = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
    return {
        "ticks": len(ticks),
        "ticks_with_run": sum(1 for t in ticks if t.run_ids),
        "skipped_run_in_progress": sum(
            1 for t in ticks if t.skip_reason and "in progress" in t.skip_reason
        ),
        "skipped_nothing_new": sum(
            1 for t in ticks if t.skip_reason and "nothing new" in t.skip_reason
        ),
        "tick_gap_s": summary(gaps) if gaps else {},
        "tick_evaluation_s": summary(evals) if evals else {},
    }


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
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def _raise_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    args = parse_args()
    for signum in (signal.SIGTERM, signal.SIGINT):  # also when started with them ignored
        signal.signal(signum, _raise_on_term)
    for key, value in ANALYTICS_OFF.items():
        os.environ.setdefault(key, value)
    t_start = time.time()
    results: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
    tmp = Path(tempfile.mkdtemp(prefix="aios_microbatch_bench_"))
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(max_runs=args.max_runs))
    workspace = tmp / "workspace.yaml"
    workspace.write_text(WORKSPACE_YAML.format(root=ROOT, python=sys.executable))
    daemon_log = tmp / "daemon.log"
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp / "data")})
    server = LocalTritonServer(settings.model_repository, settings.triton_work_dir)
    instance: dg.DagsterInstance | None = None
    daemon: Daemon | None = None
    try:
        # 1. reference data, Triton, one triage run: a model is published and served.
        print(f"setup in {tmp}", flush=True)
        generated = generate_reference_data(
            settings.sources_dir, start_date=settings.start_date, **SMALL
        )
        ensure_manifest(settings)
        settings.model_repository.mkdir(parents=True)
        instance = dg.DagsterInstance.from_config(str(home))
        server.start()
        served = replace(
            settings, triton_grpc_url=server.grpc_url, triton_metrics_url=server.metrics_url
        )
        t0 = time.time()
        triage = run_triage(
            settings, triton_url=server.grpc_url, metrics_url=server.metrics_url, instance=instance
        )
        triage_s = time.time() - t0
        print(f"triage run: {triage['predictions']} predictions in {triage_s:.0f} s", flush=True)
        defs = build_definitions(served)
        sensor = defs.resolve_sensor_def(SENSOR)
        job = defs.resolve_job_def(JOB)
        deps = step_dependencies(job)

        def sensor_requests() -> int:
            ctx = dg.build_sensor_context(instance=instance, resources=defs.resources)
            return len(sensor(ctx).run_requests or [])

        if sensor_requests():
            raise BenchFailure(f"{SENSOR} sees a backlog after the triage run")
        staged_daemon = stage_emails(
            settings, tmp / "staged_daemon", count=args.emails, seed=DAEMON_SEED
        )
        staged_floor = stage_emails(
            settings, tmp / "staged_floor", count=args.floor_emails, seed=FLOOR_SEED
        )

        # 2. the daemon path.
        env = {
            **os.environ,
            **ANALYTICS_OFF,
            "AIOS_DATA_DIR": str(settings.data_dir),
            "AIOS_TRITON_GRPC_URL": server.grpc_url,
            "AIOS_TRITON_METRICS_URL": server.metrics_url,
            "DAGSTER_HOME": str(home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        subprocess.run(
            [str(BIN / "dagster"), "sensor", "start", SENSOR, "-w", str(workspace)],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        daemon = Daemon(env, workspace, daemon_log)
        t_daemon = time.time()
        daemon.start()
        first = wait_first_tick(instance, daemon, t_daemon - 60)
        if first.run_ids:
            raise BenchFailure(f"the first {SENSOR} tick launched {first.run_ids}: a backlog")
        print(
            f"daemon up; first {SENSOR} tick {first.timestamp - t_daemon:.1f} s after start "
            f"({first.skip_reason})",
            flush=True,
        )
        phase_start = time.time()

        def daemon_alive() -> None:
            if not daemon.alive():
                raise BenchFailure(f"dagster-daemon exited:\n{tail(daemon_log)}")

        def daemon_diagnosis() -> str:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB), limit=5)
            states = ", ".join(f"{r.run_id[:8]} {r.status.value}" for r in runs)
            return f"latest {JOB} runs: {states}\ndaemon log tail:\n{tail(daemon_log)}"

        print(
            f"daemon path: {args.emails} emails, one every {args.interval} s ...",
            flush=True,
        )
        ours = run_phase(
            "daemon",
            staged_daemon,
            settings,
            interval_s=args.interval,
            timeout_s=args.timeout,
            stall_s=args.stall,
            tick=daemon_alive,
            diagnose=daemon_diagnosis,
        )
        wait_runs_idle(instance)
        ticks = sensor_ticks(instance, phase_start - 1)
        daemon_runs = [
            r.run_id
            for r in instance.get_runs(
                filters=dg.RunsFilter(
                    job_name=JOB,
                    tags={"aios/connector": "raw_emails"},
                    created_after=datetime.fromtimestamp(phase_start - 1, UTC),
                )
            )
        ]
        failed = [
            r.run_id
            for r in instance.get_runs(filters=dg.RunsFilter(run_ids=daemon_runs))
            if r.status != dg.DagsterRunStatus.SUCCESS
        ]
        daemon.stop()
        results["daemon"] = {
            "phase": ours,
            "analysis": analyse(instance, ours, daemon_runs, deps),
            "ticks": tick_stats(ticks),
            "failed_runs": failed,
        }

        # 3. the in-process floor: same delivery, the job run here as soon as mail is new.
        floor: PhaseResult | None = None
        if not args.skip_floor:
            floor_runs: list[str] = []

            def run_when_new() -> None:
                if sensor_requests():
                    result = job.execute_in_process(
                        instance=instance,
                        tags={"aios/connector": "raw_emails", "aios/bench": "in_process"},
                        raise_on_error=False,
                    )
                    floor_runs.append(result.run_id)
                    if not result.success:
                        raise BenchFailure(f"in-process {JOB} run {result.run_id} failed")

            print(f"in-process floor: {args.floor_emails} emails ...", flush=True)
            floor = run_phase(
                "in_process",
                staged_floor,
                settings,
                interval_s=args.interval,
                timeout_s=args.timeout,
                stall_s=args.stall,
                tick=run_when_new,
                diagnose=lambda: f"in-process runs so far: {len(floor_runs)}",
            )
            results["floor"] = {
                "phase": floor,
                "analysis": analyse(instance, floor, floor_runs, deps),
            }

        results["integrity"] = integrity(settings, results)
        report(args, results, generated, triage_s, triage, time.time() - t_start)
    except BenchFailure as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        if daemon_log.exists():
            print(f"daemon log: {daemon_log}", file=sys.stderr)
        args.keep = True
        raise SystemExit(1) from None
    finally:
        if daemon is not None:
            daemon.stop()
        server.stop()
        if instance is not None:
            instance.dispose()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(
    args: argparse.Namespace,
    results: dict[str, Any],
    generated: Any,
    triage_s: float,
    triage: dict[str, Any],
    total_s: float,
) -> None:
    ours: PhaseResult = results["daemon"]["phase"]
    ours_an = results["daemon"]["analysis"]
    lat = summary(list(ours.latencies.values()))
    m: dict[str, dict[str, Any]] = {}

    def put(label: str, value: float, unit: str = "s") -> None:
        m[label] = {"value": round(value, 2) if isinstance(value, float) else value, "unit": unit}

    for k, v in lat.items():
        put(f"daemon_latency_{k}", v)
    put("daemon_emails_timed", len(ours.latencies), "emails")
    put("daemon_runs_launched", ours_an["runs"], "runs")
    for key in ("behind_run_s", "pickup_s", "run_to_persisted_s"):
        for q in ("p50", "p95"):
            if ours_an[key]:
                put(f"daemon_{key[:-2]}_{q}", ours_an[key][q])
    for key, value in ours_an["median_run"].items():
        if key in BREAKDOWN_FIELDS:
            put(f"daemon_run_{BREAKDOWN_FIELDS[key]}_median", value)
    ratios: dict[str, float] = {}
    floor_lat: dict[str, float] = {}
    if "floor" in results:
        floor: PhaseResult = results["floor"]["phase"]
        floor_an = results["floor"]["analysis"]
        floor_lat = summary(list(floor.latencies.values()))
        for k, v in floor_lat.items():
            put(f"in_process_latency_{k}", v)
        put("in_process_emails_timed", len(floor.latencies), "emails")
        put("in_process_runs", floor_an["runs"], "runs")
        for key in ("run_s", "path_compute_s"):
            if floor_an["median_run"]:
                put(f"in_process_run_{BREAKDOWN_FIELDS[key]}_median", floor_an["median_run"][key])
        ratios["vs_in_process_trigger"] = round(floor_lat["p50"] / lat["p50"], 3)
        ratios["vs_in_process_trigger_p95"] = round(floor_lat["p95"] / lat["p95"], 3)

    def phase_params(phase: PhaseResult) -> dict[str, Any]:
        return {
            "delivered": len(phase.delivered),
            "quarantined_by_contract": len(phase.quarantined),
            "timed": len(phase.latencies),
            "wall_s": round(phase.wall_s, 1),
        }

    floor_part = results.get("floor")
    doc = {
        "benchmark": "microbatch_latency",
        "params": {
            "emails_daemon": args.emails,
            "emails_in_process": args.floor_emails if floor_part else 0,
            "interval_s": args.interval,
            "arrival": "steady, one email per interval, temp name then rename into the inbox",
            "latency": "mtime of the first predictions part holding the email - delivery time",
            "reference_data": {**SMALL, "emails_generated": generated.emails},
            "triage_run_s": round(triage_s, 1),
            "model": f"{triage['model_name']} v{triage['model_version']}",
            "sensor_minimum_interval_s": 10,
            "sensor_daemon_loop_s": 5,
            "run_coordinator": f"QueuedRunCoordinator max_concurrent_runs={args.max_runs}, "
            "dequeue_interval_seconds=1",
            "run_launcher": "DefaultRunLauncher (a run worker subprocess per run)",
            "executor": "job default multi_or_in_process_executor: multiprocess (a subprocess "
            "per step, 2 at a time) under the daemon, in-process for the floor",
            "storage": "sqlite (DAGSTER_HOME)",
            "daemon_phase": phase_params(ours),
            "in_process_phase": phase_params(floor_part["phase"]) if floor_part else None,
            "daemon_sensor_ticks": results["daemon"]["ticks"],
            "daemon_failed_runs": results["daemon"]["failed_runs"],
            "exactly_once": results["integrity"],
            "daemon_breakdown": ours_an,
            "in_process_breakdown": floor_part["analysis"] if floor_part else None,
            "total_bench_s": round(total_s, 1),
            "dagster": dg.__version__,
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_start_and_end": [results["load_at_start"], os.getloadavg()[0]],
            "python": platform.python_version(),
        },
        "measurements": m,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_rounded(doc), indent=2) + "\n")
    print_table(lat, floor_lat, results, ratios)
    print(f"\nwrote {args.out}")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def print_table(
    lat: dict[str, float],
    floor_lat: dict[str, float],
    results: dict[str, Any],
    ratios: dict[str, float],
) -> None:
    ours_an = results["daemon"]["analysis"]
    print(f"\n{'latency (s)':<34}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'n':>6}")
    rows = [("daemon + sensor", lat, len(results["daemon"]["phase"].latencies))]
    if floor_lat:
        rows.append(("in-process trigger", floor_lat, len(results["floor"]["phase"].latencies)))
    for label, s, n in rows:
        print(f"{label:<34}{s['p50']:>8.1f}{s['p95']:>8.1f}{s['p99']:>8.1f}{s['max']:>8.1f}{n:>6}")
    print("daemon latency split per email:")
    for key, label in (
        ("behind_run_s", "  behind the run in progress"),
        ("pickup_s", "  until the sensor's run created"),
        ("run_to_persisted_s", "  run created -> persisted"),
    ):
        if ours_an[key]:
            s = ours_an[key]
            print(f"{label:<34}{s['p50']:>8.1f}{s['p95']:>8.1f}{s['p99']:>8.1f}{s['max']:>8.1f}")
    ticks = results["daemon"]["ticks"]
    print(
        f"\ndaemon: {ours_an['runs']} runs launched ({ours_an['runs_that_scored']} scored, "
        f"{ours_an['emails_per_run'].get('p50', 0):.0f} emails per run p50); "
        f"{ticks['ticks']} sensor ticks, {ticks['skipped_run_in_progress']} skipped for a run "
        f"in progress; tick gap p50 {ticks['tick_gap_s'].get('p50', 0):.1f} s"
    )
    columns = [("daemon", ours_an["median_run"])]
    if "floor" in results:
        columns.append(("in-process", results["floor"]["analysis"]["median_run"]))
    columns = [(name, run) for name, run in columns if run]
    if not columns:
        return
    print(f"\n{'median run (s)':<34}" + "".join(f"{name:>12}" for name, _ in columns))
    for key, label in (
        ("queue_s", "queued -> starting (dequeued)"),
        ("launch_s", "starting -> run worker started"),
        ("path_wait_s", "critical path: waiting for slot"),
        ("path_process_s", "critical path: step process start"),
        ("path_compute_s", "critical path: step compute"),
        ("finish_s", "last step -> run success"),
        ("run_s", "total"),
    ):
        print(f"{label:<34}" + "".join(f"{run[key]:>12.1f}" for _, run in columns))
    stages = sorted({s for _, run in columns for s in run["path_by_stage_s"]})
    for stage in stages:
        values = "".join(f"{run['path_by_stage_s'].get(stage, 0.0):>12.1f}" for _, run in columns)
        print(f"{'  on path: ' + stage:<34}{values}")
    for label, value in ratios.items():
        print(f"{label}: {value}")
    print(f"exactly once: {results['integrity']}; failed runs: {results['daemon']['failed_runs']}")


if __name__ == "__main__":
    main()
