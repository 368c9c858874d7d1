"""A model's drift assets: feature drift and prediction drift, one verdict per partition day.

Each day is judged on windows anchored on that day (``drift.window`` in the model's YAML), with
the model's per-column methods and thresholds. A run over several days evaluates each of them
(each partition gets its own metadata); the check reports the newest day of the run, which is
what a daily schedule evaluates. A day whose windows have no rows yet (the first week of
history, a reference week nobody scored) is recorded as not evaluated, with the reason.
"""

from datetime import date

import dagster as dg
import pandas as pd

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.monitoring.drift_config import prediction_columns
from aios_dagster.lib.monitoring.drift_day import DayDrift, DriftKind, Frames, evaluate_day
from aios_dagster.lib.monitoring.store import ReportStore
from aios_dagster.lib.monitoring.window_data import feature_window, prediction_window
from aios_dagster.lib.partitions import partition_days
from aios_dagster.lib.warehouse import WarehouseResource

DRIFT_CHECK = "drift_within_threshold"


def feature_kind(spec: ModelSpec) -> DriftKind:
    return DriftKind(
        "feature_drift", "features", "feature", spec.monitoring.features, spec.numeric_features
    )


def prediction_kind(spec: ModelSpec) -> DriftKind:
    columns = prediction_columns([h.name for h in spec.heads])
    return DriftKind(
        "prediction_drift", "predictions", "prediction", spec.monitoring.predictions, tuple(columns)
    )


def _check(kind: DriftKind, key: dg.AssetKey, newest: DayDrift) -> dg.AssetCheckResult:
    result = newest.result
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        asset_key=key,
        passed=result is None or not result.dataset_drift,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{newest.windows.day}: {newest.describe(kind.noun)}",
        metadata={
            "partition": newest.windows.day.isoformat(),
            "evaluated": result is not None,
            "drift_share": result.share if result else 0.0,
            "share_threshold": kind.settings.drift_share,
            "drifted": newest.drifted,
            "drifted_detail": newest.describe(kind.noun),
        },
    )


def _materialize(
    context: dg.AssetExecutionContext,
    spec: ModelSpec,
    kind: DriftKind,
    key: dg.AssetKey,
    frames: Frames,
    reports: ReportStore,
) -> dg.MaterializeResult:
    days: list[tuple[str, date]] = partition_days(context, key.to_user_string())
    newest: DayDrift | None = None
    for partition, day in days:
        evaluated = evaluate_day(spec, kind, spec.monitoring.windows(day), frames, reports)
        context.add_asset_metadata(evaluated.metadata(reports, spec.name), partition_key=partition)
        context.log.info(f"{key.to_user_string()} {day}: {evaluated.describe(kind.noun)}")
        newest = evaluated
    assert newest is not None  # partition_days never returns an empty list
    return dg.MaterializeResult(check_results=[_check(kind, key, newest)])


def _check_spec(kind: DriftKind, key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        DRIFT_CHECK,
        asset=key,
        description=f"Fails when the share of drifted {kind.noun} columns of the run's newest "
        f"day reaches {kind.settings.drift_share} (Evidently's dataset-drift rule with the "
        "model's per-column methods and thresholds); names the drifted columns, their test and "
        "score.",
    )


def build_drift_assets(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    features, predictions = feature_kind(spec), prediction_kind(spec)
    feature_key = dg.AssetKey(f"{spec.name}_{features.suffix}")
    prediction_key = dg.AssetKey(f"{spec.name}_{predictions.suffix}")
    window = spec.monitoring.window
    windows = f"the {window.current_days} days ending on the partition's day against " + (
        f"the {window.reference_days} days before them"
        if window.reference == "sliding"
        else f"the baseline {window.reference_start}..{window.reference_end}"
    )

    @dg.asset(
        key=feature_key,
        group_name="monitoring",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(spec.feature_table)],
        kinds={"evidently"},
        check_specs=[_check_spec(features, feature_key)],
        description=f"Drift of {spec.name}'s features: {windows}. Evidently report per day in "
        "the reports folder and the model's Evidently workspace project.",
    )
    def _feature_drift(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportStore
    ) -> dg.MaterializeResult:
        def frames(span: tuple[date, date], side: str) -> pd.DataFrame:
            return feature_window(warehouse, spec, span, side)

        return _materialize(context, spec, features, feature_key, frames, reports)

    @dg.asset(
        key=prediction_key,
        group_name="monitoring",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(f"{spec.name}_predictions")],
        kinds={"evidently"},
        check_specs=[_check_spec(predictions, prediction_key)],
        description=f"Drift of {spec.name}'s decisions (each head's label and confidence): "
        f"{windows}, from the logged predictions of those days.",
    )
    def _prediction_drift(
        context: dg.AssetExecutionContext, lake: LakeResource, reports: ReportStore
    ) -> dg.MaterializeResult:
        def frames(span: tuple[date, date], side: str) -> pd.DataFrame:
            return prediction_window(lake, spec, span, side)

        return _materialize(context, spec, predictions, prediction_key, frames, reports)

    return [_feature_drift, _prediction_drift]
