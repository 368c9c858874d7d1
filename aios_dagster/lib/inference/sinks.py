"""Sinks: the day's decisions delivered where people act on them.

Confident decisions go to the routing queue (what the contact-centre system picks up), the rest
to the human-review queue with the reason. Each day is one part per sink, rewritten on re-run;
each day's materialization counts that day's rows.
"""

import dagster as dg
import pyarrow.compute as pc

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.partitions import partition_days

SINK_COLUMNS = ("record_id", "decision", "model_name", "model_version", "policy", "scored_at")


def build_sink_assets(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    routed_key = dg.AssetKey(f"{spec.name}_routed_tickets")
    review_key = dg.AssetKey(f"{spec.name}_review_queue")
    heads = [h.name for h in spec.heads]

    def sink_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
        return dg.AssetSpec(
            key,
            deps=[dg.AssetKey(f"{spec.name}_predictions")],
            group_name="inference",
            kinds={"parquet"},
            partitions_def=partitions,
            description=description,
        )

    @dg.multi_asset(
        name=f"{spec.name}_sinks",
        specs=[
            sink_spec(routed_key, "Tickets routed automatically: queue, priority and confidence."),
            sink_spec(
                review_key,
                f"Tickets below the {spec.policy.name} confidence threshold, waiting for a "
                "person, with the model's suggestion and why.",
            ),
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _sinks(context: dg.AssetExecutionContext, lake: LakeResource):
        for key, day in partition_days(context, f"{spec.name}_sinks"):
            prefix = f"date={day.isoformat()}__"
            routed_n = review_n = 0
            if lake.parts(f"{spec.name}_predictions", prefix):
                table = lake.read(f"{spec.name}_predictions", prefix=prefix)
                keep = [*SINK_COLUMNS, *heads, *(f"{h}_confidence" for h in heads)]
                review_mask = table.column("needs_review")
                routed = table.filter(pc.invert(review_mask)).select(keep)
                review = table.filter(review_mask).select([*keep, "min_confidence"])
                lake.write(routed_key.path[-1], routed, part=f"date={day.isoformat()}")
                lake.write(review_key.path[-1], review, part=f"date={day.isoformat()}")
                routed_n, review_n = routed.num_rows, review.num_rows
            for asset_key, rows in ((routed_key, routed_n), (review_key, review_n)):
                context.add_asset_metadata(
                    {"dagster/row_count": rows}, asset_key=asset_key, partition_key=key
                )
        yield dg.MaterializeResult(asset_key=routed_key)
        yield dg.MaterializeResult(asset_key=review_key)

    return _sinks
