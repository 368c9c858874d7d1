"""Shadow scoring: the challenger scores the same days as the champion, and nobody acts on it.

``<name>_shadow_predictions`` scores every feature row of a day with the challenger version
that Triton's model config names (``aios_challenger_version``) into its own lake dataset, one
part per (day, version), replaced on re-run. It never writes the predictions dataset, the
decision log or a sink: a shadow row changes no ticket. With no challenger it writes nothing and
says so. ``<name>_shadow_comparison`` then compares the two per day (``shadow_comparison``):
that, aggregated by ``read_shadow_summary``, is what the approver and the promote step read.
"""

import contextlib
import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from aios_dagster.lib import tracing
from aios_dagster.lib.inference.batch import ROUTE_SHADOW, Deployment, score_version
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.failures import permanent_errors_fail_at_once
from aios_dagster.lib.inference.predictions import PredictionConfig
from aios_dagster.lib.inference.scoring import day_batches, latency_percentiles
from aios_dagster.lib.inference.shadow_comparison import (
    DayComparison,
    compare,
    comparison_dataset,
    comparison_part,
    measure_latency,
    read_shadow_summary,
)
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.partitions import partition_days
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource

__all__ = [
    "ShadowDay",
    "build_shadow_assets",
    "compare_day",
    "read_shadow_summary",
    "score_shadow_day",
]


def shadow_dataset(spec: ModelSpec) -> str:
    return f"{spec.name}_shadow_predictions"


def shadow_part(day: date, model: str, version: str) -> str:
    return f"date={day.isoformat()}__model={model}__v={version}"


@dataclass
class ShadowDay:
    """What shadow-scoring one day did (nothing when Triton names no challenger)."""

    day: date
    challenger_version: str = ""
    rows: int = 0
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    part: str | None = None
    latencies_ms: list[float] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        if not self.challenger_version:
            return {
                "dagster/row_count": 0,
                "challenger_version": "",
                "written": False,
                "note": "no challenger on Triton (aios_challenger_version is empty or absent): "
                "nothing scored in shadow",
            }
        return {
            "dagster/row_count": self.rows,
            "challenger_version": self.challenger_version,
            "written": self.part is not None,
            "requests": self.requests,
            "retries": self.retries,
            "elapsed_s": round(self.elapsed_s, 3),
            **latency_percentiles(self.latencies_ms),
        }


def score_shadow_day(
    spec: ModelSpec,
    day: date,
    *,
    warehouse: WarehouseResource,
    triton: TritonResource,
    lake: LakeResource,
    run_id: str,
    batch_rows: int = 50_000,
) -> ShadowDay:
    """Score every feature row of ``day`` with the challenger into the shadow dataset.

    The challenger is read once, before the first batch, and kept for the whole day. The
    day's part appears only when the whole day is scored (a failure leaves the previous one).
    """
    started = time.perf_counter()
    config = triton.get_model_config(spec.triton_model)
    challenger = Deployment.from_config(spec.triton_model, config).challenger
    result = ShadowDay(day, challenger_version=challenger)
    if not challenger:
        return result
    dataset = shadow_dataset(spec)
    part = shadow_part(day, spec.triton_model, challenger)
    with contextlib.ExitStack() as stack:
        writer: pq.ParquetWriter | None = None
        for batch in day_batches(spec, day, warehouse, batch_rows):
            rows, inference = score_version(
                spec, batch, triton, run_id, challenger, route=ROUTE_SHADOW
            )
            if writer is None:
                writer = stack.enter_context(lake.part_writer(dataset, part, rows.schema))
                result.part = part
            writer.write_table(rows)
            result.rows += rows.num_rows
            result.requests += inference.requests
            result.retries += inference.retries
            result.latencies_ms += inference.latencies_ms
    if result.part is None:
        lake.remove_part(dataset, part)  # the day has no rows (any more)
    result.elapsed_s = time.perf_counter() - started
    return result


def compare_day(
    spec: ModelSpec,
    day: date,
    *,
    warehouse: WarehouseResource,
    triton: TritonResource,
    lake: LakeResource,
    run_id: str,
) -> DayComparison:
    """Compare ``day`` for the challenger Triton names now, and keep it in the dataset.

    Missing inputs cannot succeed on a retry and say what to materialize (``ValueError``).
    """
    config = triton.get_model_config(spec.triton_model)
    deployment = Deployment.from_config(spec.triton_model, config)
    if not deployment.challenger:
        return DayComparison(day, "")
    shadow_name = shadow_dataset(spec)
    part = shadow_part(day, spec.triton_model, deployment.challenger)
    if not lake.exists(shadow_name, part):
        raise ValueError(
            f"no shadow predictions of {spec.triton_model} v{deployment.challenger} for {day}: "
            f"materialize {shadow_name} for this day first"
        )
    predictions_name = f"{spec.name}_predictions"
    prefix = f"date={day.isoformat()}__"
    if not lake.parts(predictions_name, prefix):
        raise ValueError(f"no predictions for {day}: materialize {predictions_name} first")
    heads = [h.name for h in spec.heads]
    columns = ["record_id", "model_version", "decision", *heads]
    columns += [f"{h}_confidence" for h in heads]
    compared = compare(
        spec,
        day,
        lake.read(predictions_name, prefix=prefix, columns=columns),
        lake.read(shadow_name, part, columns=columns),
        deployment.challenger,
    )
    dataset = comparison_dataset(spec.name)
    kept = comparison_part(day, deployment.challenger)
    if not compared.rows_compared:
        lake.remove_part(dataset, kept)
        return compared
    sample = next(
        day_batches(spec, day, warehouse, triton.max_batch_rows, limit=triton.max_batch_rows),
        None,
    )
    if sample is not None:
        latency = measure_latency(spec, triton, spec.build_matrix(sample), deployment)
        compared = replace(compared, latency_ms=latency)
    lake.write(dataset, compared.to_table(spec.name, run_id), part=kept)
    return compared


def build_shadow_assets(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """``<name>_shadow_predictions`` and ``<name>_shadow_comparison``, partitioned by day."""
    shadow_name = shadow_dataset(spec)
    comparison_name = comparison_dataset(spec.name)

    @dg.asset(
        name=shadow_name,
        group_name="inference",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(spec.feature_table), dg.AssetKey(f"{spec.name}_published")],
        kinds={"triton", "parquet"},
        description=f"{spec.triton_model}'s challenger version scoring each day's emails in "
        "shadow: stored apart, never in the decision log or a sink. Nothing when no challenger.",
    )
    def _shadow(
        context: dg.AssetExecutionContext,
        config: PredictionConfig,
        warehouse: WarehouseResource,
        triton: TritonResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        days = partition_days(context, shadow_name)
        triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
        for key, day in days:
            with (
                tracing.step_span(context, **{"aios.model": spec.name, "aios.route": "shadow"}),
                permanent_errors_fail_at_once(f"{shadow_name} {day}"),
            ):
                scored = score_shadow_day(
                    spec,
                    day,
                    warehouse=warehouse,
                    triton=triton,
                    lake=lake,
                    run_id=context.run_id,
                    batch_rows=config.batch_rows,
                )
            context.add_asset_metadata(scored.metadata(), partition_key=key)
            context.log.info(
                f"{day}: {scored.rows} emails scored in shadow by v{scored.challenger_version}"
                if scored.challenger_version
                else f"{day}: no challenger, nothing scored in shadow"
            )
        return dg.MaterializeResult(metadata={"model_name": spec.triton_model})

    @dg.asset(
        name=comparison_name,
        group_name="inference",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(f"{spec.name}_predictions"), dg.AssetKey(shadow_name)],
        kinds={"parquet"},
        description=f"Champion against challenger per day: agreement, confusion, confidence "
        f"shift and latency difference; kept in the {comparison_name} dataset for approvers.",
    )
    def _compare(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        triton: TritonResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        days = partition_days(context, comparison_name)
        triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
        for key, day in days:
            with permanent_errors_fail_at_once(f"{comparison_name} {day}"):
                compared = compare_day(
                    spec, day, warehouse=warehouse, triton=triton, lake=lake, run_id=context.run_id
                )
            context.add_asset_metadata(compared.metadata(), partition_key=key)
        return dg.MaterializeResult(metadata={"model_name": spec.triton_model})

    return [_shadow, _compare]
