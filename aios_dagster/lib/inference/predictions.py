"""Batch inference: daily partitions of emails scored by the router on Triton.

A run may cover a range of days (single-run backfill): each day is written as its own lake part
keyed by (day, model, version), so re-running a day replaces its rows instead of duplicating
them, and a newer model version writes alongside the old one for comparison.
"""

import contextlib
from datetime import date

import dagster as dg
import pyarrow.parquet as pq

from aios_dagster.lib.inference.batch import score
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.partitions import days_in
from aios_dagster.lib.serving.metrics import read_counters, summarize
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource

DECISION_LOG = "decision_log"


def predictions_part(day: date, model: str, version: str) -> str:
    return f"date={day.isoformat()}__model={model}__v={version}"


class PredictionConfig(dg.Config):
    """Rows scored per Arrow batch: memory stays flat however many emails a day has."""

    batch_rows: int = 50_000


def build_prediction_asset(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{spec.name}_predictions",
        group_name="inference",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(spec.feature_table), dg.AssetKey(f"{spec.name}_published")],
        kinds={"triton", "parquet"},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
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
        triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
        counters_before = (
            read_counters(triton.metrics_url, spec.triton_model) if triton.metrics_url else None
        )
        cols = ", ".join((spec.id_column, *spec.feature_columns))
        dataset = f"{spec.name}_predictions"
        totals = {"rows": 0, "needs_review": 0, "requests": 0, "retries": 0, "failovers": 0}
        versions: set[str] = set()
        latencies: list[float] = []
        for day in days_in(context.partition_time_window):
            batches = warehouse.query_batches(
                f"select {cols} from {spec.feature_table} "
                f"where cast({spec.time_column} at time zone 'UTC' as date) = ? "
                f"order by {spec.id_column}",
                [day],
                batch_rows=config.batch_rows,
            )
            day_rows = 0
            with contextlib.ExitStack() as parts:
                writers: list[pq.ParquetWriter] = []
                part = ""
                pinned = ""
                for batch in batches:
                    if not batch.num_rows:
                        continue
                    decisions, result = score(
                        spec, batch, triton, context.run_id, model_version=pinned
                    )
                    if not writers:
                        # The first batch fixes the version: one day, one model version.
                        pinned = result.model_version
                        part = predictions_part(day, spec.triton_model, pinned)
                        # The decision log is append-only: one part per (run, day), never
                        # rewritten, so a re-run adds its decisions instead of erasing them.
                        writers = [
                            parts.enter_context(lake.part_writer(ds, name, decisions.schema))
                            for ds, name in (
                                (dataset, part),
                                (DECISION_LOG, f"run={context.run_id}__{part}"),
                            )
                        ]
                    for writer in writers:
                        writer.write_table(decisions)
                    day_rows += decisions.num_rows
                    totals["needs_review"] += int(decisions["needs_review"].to_numpy().sum())
                    totals["requests"] += result.requests
                    totals["retries"] += result.retries
                    totals["failovers"] += result.failovers
                    versions.add(result.model_version)
                    latencies += result.latencies_ms
            # One current decision per email and day: a re-run with another model version
            # replaces the earlier version's part (history stays in the decision log).
            lake.remove_parts(dataset, f"date={day.isoformat()}__", keep=part or None)
            totals["rows"] += day_rows
            context.log.info(f"{day}: scored {day_rows} emails")
        latencies.sort()

        def pct(p: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

        server = (
            summarize(read_counters(triton.metrics_url, spec.triton_model).minus(counters_before))
            if triton.metrics_url and counters_before
            else {}
        )
        return dg.MaterializeResult(
            metadata={
                **server,
                "dagster/row_count": totals["rows"],
                "needs_review": totals["needs_review"],
                "requests": totals["requests"],
                "retries": totals["retries"],
                "failovers": totals["failovers"],
                "replicas": dg.MetadataValue.json(
                    [
                        {"url": h.url, "state": h.state, "failures": h.transient_failures}
                        for h in triton.replica_health()
                    ]
                ),
                "model_name": spec.triton_model,
                "model_version": ",".join(sorted(versions)),
                "policy": spec.policy.name,
                "min_confidence": spec.policy.min_confidence,
                **(
                    {
                        "latency_ms_p50": pct(0.5),
                        "latency_ms_p95": pct(0.95),
                        "latency_ms_p99": pct(0.99),
                    }
                    if latencies
                    else {}
                ),
            }
        )

    return _predictions
