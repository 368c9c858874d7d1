"""The drift-to-retrain loop: a failed drift check requests the model's retraining job.

Retraining goes through the lifecycle as any candidate does: registered in MLflow, evaluated
against the champion on the newest labelled rows, held by the blocking gate, and, if it passes,
published as the *challenger* (shadow, or canary when the model declares a share). It never
replaces the champion: promotion stays a person's or the promote job's decision.

The sensor reads the latest evaluation of each watched check from the instance and remembers
(in its cursor) the last evaluation it acted on, so each failing evaluation requests one run,
and a daemon restart neither loses nor repeats one (the run key is the evaluation's id).
"""

from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.lib.monitoring.assets import DRIFT_CHECK, feature_kind, prediction_kind

RETRAIN_TAG = "aios/retrain-because"


def retrain_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_retrain"


def retrain_job(spec: ModelSpec) -> Any:
    """Train, register, evaluate, gate and publish one candidate (as challenger)."""
    return dg.define_asset_job(
        retrain_job_name(spec),
        selection=dg.AssetSelection.assets(
            dg.AssetKey(f"{spec.name}_candidate"),
            dg.AssetKey(f"{spec.name}_evaluation"),
            dg.AssetKey(f"{spec.name}_published"),
        ),
        tags=k8s_job_tags(retrain_job_name(spec)),
        description=f"Retrain {spec.name} on the labelled history; a candidate that passes the "
        "gate becomes the challenger (shadow), never the champion.",
    )


def watched_checks(spec: ModelSpec) -> list[dg.AssetCheckKey]:
    retrain = spec.monitoring.retrain
    kinds = [
        k
        for k, on in (
            (feature_kind(spec), retrain.on_feature_drift),
            (prediction_kind(spec), retrain.on_prediction_drift),
        )
        if on
    ]
    return [dg.AssetCheckKey(dg.AssetKey(f"{spec.name}_{k.suffix}"), DRIFT_CHECK) for k in kinds]


def drift_retrain_sensor(spec: ModelSpec) -> dg.SensorDefinition | None:
    checks = watched_checks(spec)
    if not checks:
        return None

    @dg.sensor(
        name=f"{spec.name}_drift_retrain",
        job_name=retrain_job_name(spec),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests {retrain_job_name(spec)} when a drift check of {spec.name} "
        f"fails ({', '.join(c.to_user_string() for c in checks)}).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = int(context.cursor) if context.cursor else 0
        latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(checks)
        requests: list[dg.RunRequest] = []
        newest = seen
        for key in checks:
            record = latest.get(key)
            if record is None or record.id <= seen:
                continue
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                continue  # still running: judge it when it has a verdict
            newest = max(newest, record.id)
            if record.status != AssetCheckExecutionRecordStatus.FAILED:
                continue
            partition = _partition(record)
            requests.append(
                dg.RunRequest(
                    run_key=f"{key.to_user_string()}#{record.id}",
                    tags={
                        RETRAIN_TAG: key.to_user_string(),
                        "aios/drift-partition": partition,
                        "aios/drift-run": record.run_id,
                    },
                )
            )
            context.log.info(
                f"{key.to_user_string()} failed for {partition} in run {record.run_id}: "
                f"requesting {retrain_job_name(spec)}"
            )
        # One retraining answers every check that failed on the same data.
        return dg.SensorResult(run_requests=requests[:1], cursor=str(newest))

    return _sensor


def _partition(record: Any) -> str:
    event = record.event.dagster_event if record.event else None
    evaluation = getattr(event, "event_specific_data", None)
    metadata = getattr(evaluation, "metadata", {}) or {}
    value = metadata.get("partition")
    return str(getattr(value, "value", value) or "")
