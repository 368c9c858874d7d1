"""A small feature table in a real DuckDB file, and the catalog entry that scores it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np

from aios_dagster.lib.inference.catalog import DecisionPolicy, HeadSpec, ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.warehouse import WarehouseResource

N_FEATURES = 16
TABLE = "feats"


def spec_for(model: str) -> ModelSpec:
    return ModelSpec(
        name=model,
        triton_model=model,
        feature_table=TABLE,
        training_table="unused",
        id_column="id",
        time_column="ts",
        numeric_features=tuple(f"x{i}" for i in range(N_FEATURES)),
        vector_features=(),
        heads=(HeadSpec("team", "team"), HeadSpec("urgency", "urgency")),
        policy=DecisionPolicy("team-or-review", 0.4, "needs_a_person"),
    )


def write_features(path: Path, times: dict[str, datetime], seed: int = 3) -> None:
    """One feature row per id at its timestamp (TIMESTAMPTZ, as dbt builds it)."""
    rng = np.random.default_rng(seed)
    cols = ", ".join(f"x{i} double" for i in range(N_FEATURES))
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"create or replace table {TABLE} (id varchar, ts timestamptz, {cols})")
        for rid, ts in times.items():
            values = [float(v) for v in rng.normal(0.0, 2.0, N_FEATURES)]
            conn.execute(
                f"insert into {TABLE} values (?, ?, {', '.join('?' * N_FEATURES)})",
                [rid, ts, *values],
            )


def set_feature(path: Path, record_id: str, value: float) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"update {TABLE} set x3 = ? where id = ?", [value, record_id])


def daily_ids(counts: dict[date, int]) -> dict[str, datetime]:
    """``counts[day]`` ids spread over each UTC day, named by day and index."""
    return {
        f"R-{day:%m%d}-{i:03d}": datetime.combine(day, time(0, 30), tzinfo=UTC)
        + timedelta(minutes=37 * i)
        for day, n in counts.items()
        for i in range(n)
    }


def resources(tmp: Path, triton: object) -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(duckdb_path=str(tmp / "wh.duckdb"), data_dir=str(tmp)),
        "lake": LakeResource(root=str(tmp / "lake")),
        "triton": triton,
    }
