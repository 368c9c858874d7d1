"""Sinks: the day's decisions delivered where people act on them.

Confident decisions go to the routing queue (what the contact-centre system picks up), the rest
to the human-review queue with the reason. Each day is one part per sink, rewritten on re-run.
"""

from datetime import timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.lake import LakeResource
from aios_dagster.lib.inference.catalog import ModelSpec

SINK_COLUMNS = ("record_id", "decision", "model_name", "model_version", "policy", "scored_at")


def build_sink_assets(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    routed_key = dg.AssetKey(f"{spec.name}_routed_tickets")
    review_key = dg.AssetKey(f"{spec.name}_review_queue")
    heads = [h.name for h in spec.heads]

    @dg.multi_asset(
        name=f"{spec.name}_sinks",
        specs=[
            dg.AssetSpec(
                routed_key,
                deps=[dg.AssetKey(f"{spec.name}_predictions")],
                group_name="inference",
                kinds={"parquet"},
                partitions_def=partitions,
                description="Tickets routed automatically: queue, priority and confidence.",
            ),
            dg.AssetSpec(
                review_key,
                deps=[dg.AssetKey(f"{spec.name}_predictions")],
                group_name="inference",
                kinds={"parquet"},
                partitions_def=partitions,
                description=f"Tickets below the {spec.policy.name} confidence threshold, "
                "waiting for a person, with the model's suggestion and why.",
            ),
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _sinks(context: dg.AssetExecutionContext, lake: LakeResource):
        window = context.partition_time_window
        day = window.start.date()
        routed_n = review_n = 0
        while day < window.end.date():
            prefix = f"date={day.isoformat()}__"
            parts = sorted(lake.dataset_dir(f"{spec.name}_predictions").glob(f"{prefix}*.parquet"))
            if parts:
                table = pa.concat_tables(
                    [lake.read(f"{spec.name}_predictions", p.stem) for p in parts]
                )
                keep = [*SINK_COLUMNS, *heads, *(f"{h}_confidence" for h in heads)]
                review_mask = table.column("needs_review")
                routed = table.filter(pc.invert(review_mask)).select(keep)
                review = table.filter(review_mask).select([*keep, "min_confidence"])
                lake.write(routed_key.path[-1], routed, part=f"date={day.isoformat()}")
                lake.write(review_key.path[-1], review, part=f"date={day.isoformat()}")
                routed_n += routed.num_rows
                review_n += review.num_rows
            day += timedelta(days=1)
        yield dg.MaterializeResult(asset_key=routed_key, metadata={"dagster/row_count": routed_n})
        yield dg.MaterializeResult(asset_key=review_key, metadata={"dagster/row_count": review_n})

    return _sinks
