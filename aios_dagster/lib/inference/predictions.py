"""Batch inference: daily partitions of emails scored by the router on Triton.

A run may cover a range of days (single-run backfill); ``scoring.score_day`` scores each day
into its own lake part, and each day's materialization reports that day's own figures.

Errors: Triton's transient errors are retried inside ``TritonResource``, so the asset has no
retry policy of its own (retries would multiply). What cannot succeed on a retry (no partition,
bad config, features that are not finite, a served model that disagrees with the catalog or is
not loaded) fails the step at once with a ``Failure`` naming the asset, the day and the rule.
"""

import dagster as dg
from pydantic import Field

from aios_dagster.lib import tracing
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.failures import permanent_errors_fail_at_once
from aios_dagster.lib.inference.scoring import predictions_part, score_day
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.partitions import partition_days
from aios_dagster.lib.serving.metrics import read_counters, summarize
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource

__all__ = ["PredictionConfig", "build_prediction_asset", "predictions_part"]


class PredictionConfig(dg.Config):
    """Rows scored per Arrow batch: memory stays flat however many emails a day has."""

    batch_rows: int = Field(default=50_000, gt=0)


def build_prediction_asset(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    name = f"{spec.name}_predictions"

    @dg.asset(
        name=name,
        group_name="inference",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(spec.feature_table), dg.AssetKey(f"{spec.name}_published")],
        kinds={"triton", "parquet"},
        description=f"Routing decisions from {spec.triton_model} on Triton for each day's emails,"
        " with model version, input hash and policy for audit.",
    )
    def _predictions(
        context: dg.AssetExecutionContext,
        config: PredictionConfig,
        warehouse: WarehouseResource,
        triton: TritonResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        with tracing.step_span(context, **{"aios.model": spec.name}):
            days = partition_days(context, name)
            triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
            for key, day in days:
                before = (
                    read_counters(triton.metrics_url, spec.triton_model)
                    if triton.metrics_url
                    else None
                )
                with permanent_errors_fail_at_once(f"{name} {day}"):
                    scored = score_day(
                        spec,
                        day,
                        warehouse=warehouse,
                        triton=triton,
                        lake=lake,
                        run_id=context.run_id,
                        batch_rows=config.batch_rows,
                    )
                server = (
                    summarize(read_counters(triton.metrics_url, spec.triton_model).minus(before))
                    if triton.metrics_url and before
                    else {}
                )
                context.add_asset_metadata({**scored.metadata(), **server}, partition_key=key)
                context.log.info(f"{day}: scored {scored.rows} emails")
        return dg.MaterializeResult(
            metadata={
                "replicas": dg.MetadataValue.json(
                    [
                        {"url": h.url, "state": h.state, "failures": h.transient_failures}
                        for h in triton.replica_health()
                    ]
                ),
                "model_name": spec.triton_model,
                "policy": spec.policy.name,
                "min_confidence": spec.policy.min_confidence,
            }
        )

    return _predictions
