"""Score one day of a feature table on Triton into the lake: the body of daily batch scoring.

A plain function (no Dagster context) so a day can be scored, and tested, on its own; the
prediction asset loops over the days of its partition range and reports each day's figures
on that day's materialization.

Each day is one predictions part keyed by (day, model, champion version): re-scoring a day
replaces its rows instead of duplicating them; canary rows sit in the same part, each naming
the version that decided it. The day's decisions are also appended to the decision log,
and only once the predictions part is in place, so every logged decision is one that took
effect (see ``decision_log``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.inference.batch import Deployment, score
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.decision_log import DECISION_LOG, log_part
from aios_dagster.lib.inference.log_chain import HEAD_KEY, PART_KEY, Link, seal
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource


def predictions_part(day: date, model: str, version: str) -> str:
    """The day's part, named by the champion version (canary rows name theirs in the rows)."""
    return f"date={day.isoformat()}__model={model}__v={version}"


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 of per-request latencies (nearest rank); empty when nothing was sent."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return {}

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"latency_ms_p50": pct(0.5), "latency_ms_p95": pct(0.95), "latency_ms_p99": pct(0.99)}


def day_batches(
    spec: ModelSpec,
    day: date,
    warehouse: WarehouseResource,
    batch_rows: int,
    *,
    limit: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """The day's (UTC) feature rows in id order, in Arrow batches of at most ``batch_rows``.

    ``limit`` keeps the first rows only (a sample, e.g. for a latency measurement).
    """
    cols = ", ".join((spec.id_column, *spec.feature_columns))
    for batch in warehouse.query_batches(
        f"select {cols} from {spec.feature_table} "
        f"where cast({spec.time_column} at time zone 'UTC' as date) = ? "
        f"order by {spec.id_column}" + ("" if limit is None else f" limit {int(limit)}"),
        [day],
        batch_rows=batch_rows,
    ):
        if batch.num_rows:
            yield batch


@dataclass
class DayScore:
    """What scoring one day did: the figures its partition's materialization reports."""

    day: date
    rows: int = 0
    needs_review: int = 0
    requests: int = 0
    retries: int = 0
    failovers: int = 0
    deployment: Deployment | None = None  # pinned by the first batch
    canary_rows: int = 0
    part: str | None = None
    log_link: Link | None = None  # the day's decision-log part as sealed in the chain
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def model_version(self) -> str:
        """The champion version of the day."""
        return self.deployment.champion if self.deployment else ""

    def metadata(self) -> dict[str, Any]:
        deployment = self.deployment or Deployment()
        return {
            "dagster/row_count": self.rows,
            "needs_review": self.needs_review,
            "requests": self.requests,
            "retries": self.retries,
            "failovers": self.failovers,
            "model_version": self.model_version,
            "challenger_version": deployment.challenger,
            "canary_share": deployment.canary_share if deployment.canary else 0.0,
            "canary_rows": self.canary_rows,
            **latency_percentiles(self.latencies_ms),
            **(
                {PART_KEY: self.log_link.part, HEAD_KEY: self.log_link.head}
                if self.log_link
                else {}
            ),
        }


def score_day(
    spec: ModelSpec,
    day: date,
    *,
    warehouse: WarehouseResource,
    triton: TritonResource,
    lake: LakeResource,
    run_id: str,
    batch_rows: int = 50_000,
) -> DayScore:
    """Score every feature row of ``day`` (UTC) and make it the day's current predictions.

    Rows stream in Arrow batches of ``batch_rows`` so memory stays flat however busy the day.
    The first batch fixes the versions (champion, challenger, canary share) for the whole day.
    Nothing is visible until the whole day has been scored: a failure part-way leaves the
    previous predictions in place and logs no decision.
    """
    dataset = f"{spec.name}_predictions"
    result = DayScore(day)
    log_name: str | None = None
    with contextlib.ExitStack() as parts:
        writers: list[pq.ParquetWriter] = []
        for batch in day_batches(spec, day, warehouse, batch_rows):
            decisions, inference = score(spec, batch, triton, run_id, deployment=result.deployment)
            if not writers:
                result.deployment = inference.deployment
                result.part = predictions_part(day, spec.triton_model, result.model_version)
                # Writers close in reverse order: the predictions part is renamed into place
                # first, the log part after it, so the log never holds a decision that did not
                # become current.
                log_name = log_part(run_id, result.part)
                writers = [
                    parts.enter_context(lake.part_writer(ds, name, decisions.schema))
                    for ds, name in ((DECISION_LOG, log_name), (dataset, result.part))
                ]
            for writer in writers:
                writer.write_table(decisions)
            result.rows += decisions.num_rows
            result.needs_review += int(decisions["needs_review"].to_numpy().sum())
            result.requests += inference.requests
            result.retries += inference.retries
            result.failovers += inference.failovers
            result.canary_rows += inference.canary_rows
            result.latencies_ms += inference.latencies_ms
    if log_name is not None:
        result.log_link = seal(lake.dataset_dir(DECISION_LOG), spec.triton_model, log_name)
    # One current decision per email and day: a re-run with another model version (or a
    # micro-batch part of the day) is replaced; history stays in the decision log.
    lake.remove_parts(dataset, f"date={day.isoformat()}__", keep=result.part)
    return result
