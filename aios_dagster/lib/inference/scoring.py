"""Score one day of a feature table on Triton into the lake: the body of daily batch scoring.

A plain function (no Dagster context) so a day can be scored, and tested, on its own; the
prediction asset loops over the days of its partition range and reports each day's figures
on that day's materialization.

Each day is one predictions part keyed by (day, model, version): re-scoring a day replaces its
rows instead of duplicating them. The day's decisions are also appended to the decision log,
and only once the predictions part is in place, so every logged decision is one that took
effect (see ``decision_log``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow.parquet as pq

from aios_dagster.lib.inference.batch import score
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.decision_log import DECISION_LOG, log_part
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource


def predictions_part(day: date, model: str, version: str) -> str:
    return f"date={day.isoformat()}__model={model}__v={version}"


@dataclass
class DayScore:
    """What scoring one day did: the figures its partition's materialization reports."""

    day: date
    rows: int = 0
    needs_review: int = 0
    requests: int = 0
    retries: int = 0
    failovers: int = 0
    model_version: str = ""
    part: str | None = None
    latencies_ms: list[float] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        latencies = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

        return {
            "dagster/row_count": self.rows,
            "needs_review": self.needs_review,
            "requests": self.requests,
            "retries": self.retries,
            "failovers": self.failovers,
            "model_version": self.model_version,
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
    The first batch fixes the model version for the whole day. Nothing is visible until the
    whole day has been scored: a failure part-way leaves the previous predictions in place and
    logs no decision.
    """
    dataset = f"{spec.name}_predictions"
    cols = ", ".join((spec.id_column, *spec.feature_columns))
    batches = warehouse.query_batches(
        f"select {cols} from {spec.feature_table} "
        f"where cast({spec.time_column} at time zone 'UTC' as date) = ? "
        f"order by {spec.id_column}",
        [day],
        batch_rows=batch_rows,
    )
    result = DayScore(day)
    with contextlib.ExitStack() as parts:
        writers: list[pq.ParquetWriter] = []
        for batch in batches:
            if not batch.num_rows:
                continue
            decisions, inference = score(
                spec, batch, triton, run_id, model_version=result.model_version
            )
            if not writers:
                result.model_version = inference.model_version
                result.part = predictions_part(day, spec.triton_model, result.model_version)
                # Writers close in reverse order: the predictions part is renamed into place
                # first, the log part after it, so the log never holds a decision that did not
                # become current.
                writers = [
                    parts.enter_context(lake.part_writer(ds, name, decisions.schema))
                    for ds, name in (
                        (DECISION_LOG, log_part(run_id, result.part)),
                        (dataset, result.part),
                    )
                ]
            for writer in writers:
                writer.write_table(decisions)
            result.rows += decisions.num_rows
            result.needs_review += int(decisions["needs_review"].to_numpy().sum())
            result.requests += inference.requests
            result.retries += inference.retries
            result.failovers += inference.failovers
            result.latencies_ms += inference.latencies_ms
    # One current decision per email and day: a re-run with another model version (or a
    # micro-batch part of the day) is replaced; history stays in the decision log.
    lake.remove_parts(dataset, f"date={day.isoformat()}__", keep=result.part)
    return result
