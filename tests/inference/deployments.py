"""Serve a champion and a challenger as the registry projection does, and a feature table.

``deploy`` projects the versions with ``project_versions`` (the config lists exactly the
champion and the challenger, with the deployment parameters) and reloads the model on the real
server. ``serve_as_before`` writes a config without deployment parameters, as models published
before the lifecycle have. Parameter names are spelt out here, not imported, so a rename in the
scorer that breaks the contract fails these tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import CONFIG_FILE, render_config
from aios_dagster.lib.serving.projection import project_versions
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.features import N_FEATURES, TABLE


def deploy(
    repository: Path,
    name: str,
    models: Mapping[int, LinearHeadsModel],
    triton: TritonResource,
    *,
    champion: int,
    challenger: int | None = None,
    share: float = 0.0,
) -> None:
    """Serve ``champion`` (and ``challenger``, with ``share``) of ``name`` from ``models``."""
    listed = [champion] + ([] if challenger is None else [challenger])
    project_versions(
        repository,
        name,
        {v: models[v] for v in listed},
        parameters={
            "aios_champion_version": str(champion),
            "aios_challenger_version": "" if challenger is None else str(challenger),
            "aios_canary_share": str(share),
        },
        max_batch_size=1024,
        input_name="features",
    )
    triton.load_model(name)


def serve_as_before(
    repository: Path,
    name: str,
    model: LinearHeadsModel,
    triton: TritonResource,
    versions: list[int],
) -> None:
    """Serve ``versions`` (already in the repository) with no deployment parameters."""
    config = render_config(name, model, max_batch_size=1024, versions=versions)
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
