"""Where a micro-batch run's time goes, read from its event log, and each email's latency split.

Part of ``bench/microbatch_latency.py`` (see its docstring for what is measured and why).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from typing import Any

import dagster as dg
from _common import summary
from _microbatch_delivery import PhaseResult

STAGES = {
    "ingest": ("raw_",),
    "features": ("email_text_features",),
    "dbt": ("triage_dbt_models",),
    "scoring": ("email_router_microbatch",),
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
