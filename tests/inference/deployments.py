"""Serve a champion and a challenger the way the registry projection does, and a feature table.

The projection (``model_repository.project_versions``) writes one config listing the served
versions and the deployment parameters; until tests use it, ``deploy`` writes the same config
with ``render_config`` and reloads the model on the real server. Parameter names are spelt out
here, not imported, so a rename in the scorer that breaks the contract fails these tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import CONFIG_FILE, render_config
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.features import N_FEATURES, TABLE


def deploy(
    repository: Path,
    name: str,
    model: LinearHeadsModel,
    triton: TritonResource,
    *,
    versions: list[int],
    champion: int | None = None,
    challenger: int | None = None,
    share: float = 0.0,
) -> None:
    """Serve ``versions`` of ``name``; with ``champion`` set, announce the deployment."""
    parameters = (
        {
            "aios_champion_version": str(champion),
            "aios_challenger_version": "" if challenger is None else str(challenger),
            "aios_canary_share": str(share),
        }
        if champion is not None
        else {}
    )
    config = render_config(
        name, model, max_batch_size=1024, versions=versions, extra_parameters=parameters
    )
    (repository / name / CONFIG_FILE).write_text(config)
    triton.load_model(name)


def feature_rows(day: date, n: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """``n`` feature rows spread over ``day`` (ids in time order) and their float32 matrix."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, size=(n, N_FEATURES)).astype(np.float32)
    start = datetime.combine(day, time(0, 0), tzinfo=UTC)
    step = 86_000 / max(n, 1)
    table = pa.table(
        {
            "id": [f"E-{day:%m%d}-{i:06d}" for i in range(n)],
            "ts": pa.array(
                [start + timedelta(seconds=i * step) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            **{f"x{j}": x[:, j].astype(np.float64) for j in range(N_FEATURES)},
        }
    )
    return table, x


def write_days(
    path: Path, days: dict[date, int], seed: int = 7
) -> dict[date, tuple[pa.Table, np.ndarray]]:
    """The feature table ``feats`` holding ``days[day]`` rows per day; each day's rows back."""
    written = {day: feature_rows(day, n, seed + i) for i, (day, n) in enumerate(days.items())}
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"drop table if exists {TABLE}")
        for i, (table, _) in enumerate(written.values()):
            conn.register("rows", table)
            verb = f"create table {TABLE} as" if i == 0 else f"insert into {TABLE}"
            conn.execute(f"{verb} select * from rows")
            conn.unregister("rows")
    return written
