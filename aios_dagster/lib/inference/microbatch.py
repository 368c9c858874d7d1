"""Micro-batch inference: score new emails minutes after they land, not the next morning.

The mailbox connector's sensor launches ``microbatch_job`` when new mail arrives (one run at a
time). The run lands the mail, rebuilds the features it needs and then this asset scores only
the feature rows that have no current prediction yet. The predictions dataset itself is the
cursor: a run that fails after scoring but before writing scores the same rows again next time,
and a run that wrote its part and then failed finds nothing left to score. So each email gets
exactly one current prediction whichever run scored it; every scoring is in the decision log.

The part name is derived from the ids it holds (``...__mb=<hash>``), so a retried run that
scored the same rows rewrites the same part, and a later daily batch run of that day replaces
micro-batch parts with its own (same ``date=`` prefix). Canary routing is the batch scorer's
(``batch.score``): by record id, so an email goes to the same version whichever run scores it.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pydantic import Field

from aios_dagster.lib import tracing
from aios_dagster.lib.inference.batch import score
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.failures import permanent_errors_fail_at_once
from aios_dagster.lib.inference.log_chain import CHAIN_KEY
from aios_dagster.lib.inference.new_decisions import write_new_decisions
from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.orchestration import PREDICTIONS_WRITER_TAG
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource


class MicrobatchConfig(dg.Config):
    """How far back "new" reaches, and how much one run may take on."""

    # Late mail (an old Date header) is still new to us.
    lookback_hours: int = Field(default=7 * 24, gt=0)
    max_rows: int = Field(default=5_000, gt=0)


def unscored(
    candidates: pa.Table, id_column: str, lake: LakeResource, dataset: str, first_day: date
) -> pa.Table:
    """The candidate rows that have no current prediction, in their order.

    An anti-join against the prediction parts of the window's days only: parts are per email
    day (``date=YYYY-MM-DD__...``) and no candidate is older than ``first_day``, so older parts
    cannot hold its prediction and the cost follows the window, not the history.
    """
    since = f"date={first_day.isoformat()}"
    parts = [str(p) for p in lake.parts(dataset, "date=") if p.stem >= since]
    if not parts or not candidates.num_rows:
        return candidates
    done = ds.dataset(parts, format="parquet").to_table(columns=["record_id"]).column(0)
    ids = pc.cast(candidates.column(id_column), pa.string())
    return candidates.filter(pc.invert(pc.is_in(ids, value_set=done.combine_chunks())))


def build_microbatch_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    dataset = f"{spec.name}_predictions"

    @dg.asset(
        name=f"{spec.name}_microbatch",
        group_name="microbatch",
        deps=[dg.AssetKey(spec.feature_table)],
        kinds={"triton", "parquet"},
        description=f"Scores {spec.feature_table} rows that have no prediction yet with "
        f"{spec.triton_model} on Triton; written into {dataset} with full audit.",
    )
    def _microbatch(
        context: dg.AssetExecutionContext,
        config: MicrobatchConfig,
        warehouse: WarehouseResource,
        triton: TritonResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        since = datetime.now(UTC) - timedelta(hours=config.lookback_hours)
        cols = ", ".join((spec.id_column, spec.time_column, *spec.feature_columns))
        candidates = warehouse.query_arrow(
            f"select {cols} from {spec.feature_table} where {spec.time_column} >= ? "
            f"order by {spec.time_column}, {spec.id_column}",
            [since],
        )
        new = unscored(candidates, spec.id_column, lake, dataset, since.date())
        table = new.slice(0, config.max_rows)
        if not table.num_rows:
            return dg.MaterializeResult(
                metadata={"dagster/row_count": 0, "candidates": candidates.num_rows}
            )
        triton.wait_until_ready(timeout_s=triton.ready_timeout_s)
        with (
            tracing.step_span(context, **{"aios.model": spec.name, "aios.rows": table.num_rows}),
            permanent_errors_fail_at_once(f"{spec.name}_microbatch"),
        ):
            decisions, result = score(spec, table, triton, context.run_id)
        written = write_new_decisions(
            lake,
            dataset=dataset,
            model=spec.triton_model,
            version=result.model_version,
            decisions=decisions,
            times=table.column(spec.time_column),
            run_id=context.run_id,
            tag="mb",
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": decisions.num_rows,
                "candidates": candidates.num_rows,
                "already_scored": candidates.num_rows - new.num_rows,
                "days": [d.isoformat() for d in written.days],
                "needs_review": int(pc.sum(decisions.column("needs_review")).as_py() or 0),
                "model_version": result.model_version,
                "challenger_version": result.challenger_version,
                "canary_rows": result.canary_rows,
                "requests": result.requests,
                "retries": result.retries,
                # The chain heads in Dagster's event log: an independent copy (``log_chain``).
                CHAIN_KEY: dg.MetadataValue.json({link.part: link.head for link in written.sealed}),
            }
        )

    return _microbatch


def microbatch_job() -> Any:
    """New mail to persisted predictions: the mailbox, the dbt models the scorer reads, scoring.

    Latency is the point, so (measured in bench/microbatch_latency.py) the job runs its steps
    in one process (a process per step cost ~40 of a 58 s run: each re-imports the code
    location and Great Expectations) and lands only the mailbox; customers and transactions
    keep their own triggers and the features read what they last landed.
    """
    return dg.define_asset_job(
        "microbatch_job",
        selection=dg.AssetSelection.groups("microbatch").upstream()
        - (dg.AssetSelection.groups("ingest") - dg.AssetSelection.assets("raw_emails")),
        executor_def=dg.in_process_executor,
        tags={
            "aios/inference": "microbatch",
            PREDICTIONS_WRITER_TAG: "true",
            **k8s_job_tags("microbatch_job"),
        },
        description="Land new mail, refresh its features and score only emails not yet scored.",
    )
