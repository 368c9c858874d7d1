"""The rows a monitoring window covers: features from the warehouse, decisions from the lake.

Only the windows leave the warehouse and only the window's day parts are read from the lake,
so the cost of a report follows the window, never the length of history.
"""

from __future__ import annotations

import contextlib
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.monitoring.drift_config import prediction_columns
from aios_dagster.lib.warehouse import WarehouseResource


class WindowEmpty(ValueError):
    """A window has no rows: there is nothing to compare, and a retry would not change that."""


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _day_sql(spec: ModelSpec) -> str:
    return f"cast({spec.time_column} at time zone 'UTC' as date)"


def feature_window(
    warehouse: WarehouseResource, spec: ModelSpec, window: tuple[date, date], side: str
) -> pd.DataFrame:
    """The model's numeric features of the rows received in ``window`` (inclusive)."""
    table = warehouse.query_arrow(
        f"select {', '.join(spec.numeric_features)} from {spec.feature_table} "
        f"where {_day_sql(spec)} between ? and ?",
        list(window),
    )
    if table.num_rows == 0:
        raise WindowEmpty(
            f"{spec.feature_table}: the {side} window {window[0]}..{window[1]} has no rows"
        )
    return table.to_pandas()


def decisions_window(
    lake: LakeResource, spec: ModelSpec, window: tuple[date, date], columns: list[str]
) -> pa.Table:
    """The current decisions of each day in ``window`` (the day's scoring parts), or empty."""
    dataset = f"{spec.name}_predictions"
    tables = []
    for day in _days(*window):
        with contextlib.suppress(FileNotFoundError):  # a day nobody scored
            tables.append(lake.read(dataset, prefix=f"date={day.isoformat()}__", columns=columns))
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(tables, promote_options="default")


def prediction_window(
    lake: LakeResource, spec: ModelSpec, window: tuple[date, date], side: str
) -> pd.DataFrame:
    """Each head's predicted label and confidence for the decisions of ``window``."""
    columns = prediction_columns([h.name for h in spec.heads])
    table = decisions_window(lake, spec, window, columns)
    if table.num_rows == 0:
        raise WindowEmpty(
            f"{spec.name}_predictions: the {side} window {window[0]}..{window[1]} has no "
            "scored days (score them first: scoring_job for those partitions)"
        )
    return table.to_pandas()


def labelled_decisions(
    warehouse: WarehouseResource,
    lake: LakeResource,
    spec: ModelSpec,
    window: tuple[date, date],
) -> tuple[pd.DataFrame, int]:
    """Decisions of ``window`` joined with the agents' labels that have arrived; and how many
    decisions there were in all (labels come days later, so the labelled share grows)."""
    heads = [h.name for h in spec.heads]
    decisions = decisions_window(lake, spec, window, ["record_id", *heads])
    total = decisions.num_rows
    labels = [h.label_column for h in spec.heads]
    truth = warehouse.query_arrow(
        f"select {spec.id_column} as record_id, {', '.join(labels)} from {spec.training_table} "
        f"where {_day_sql(spec)} between ? and ?",
        list(window),
    )
    if total == 0 or truth.num_rows == 0:
        return pd.DataFrame(columns=["record_id", *heads, *(f"{h}_label" for h in heads)]), total
    truth = truth.rename_columns(["record_id", *(f"{h}_label" for h in heads)])
    decisions = decisions.cast(
        pa.schema([pa.field("record_id", pa.string()), *(decisions.schema.field(h) for h in heads)])
    )
    joined = decisions.join(truth, "record_id", join_type="inner")
    complete = joined[f"{heads[0]}_label"].is_valid()
    for head in heads[1:]:
        complete = pc.and_(complete, joined[f"{head}_label"].is_valid())
    return joined.filter(complete).to_pandas(), total
