"""Micro-batch scoring reads only the prediction parts of its look-back window.

Real Triton and DuckDB. A predictions part of an old day is replaced by bytes that are not
Parquet: a run that opened it (as a scan of every prediction ever made would) fails. Results
must be what a full scan gives: each email scored once, never twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from aios_dagster.lib.inference.microbatch import build_microbatch_asset
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.features import N_FEATURES, TABLE, resources, spec_for, write_features


def test_new_rows_are_scored_once_reading_only_the_windows_parts(
    tmp_path: Path, publish_random_model, triton_resource: TritonResource
) -> None:
    published = publish_random_model(n_features=N_FEATURES, heads={"team": 4, "urgency": 3})
    triton_resource.load_model(published.name)
    spec = spec_for(published.name)
    now = datetime.now(UTC)
    old = now - timedelta(days=30)
    times = {f"NEW-{i}": now - timedelta(hours=5 + 20 * i) for i in range(4)}
    write_features(tmp_path / "wh.duckdb", {**times, "OLD-0": old, "OLD-1": old})
    res = resources(tmp_path, triton_resource)
    dataset = Path(res["lake"].root) / f"{spec.name}_predictions"
    dataset.mkdir(parents=True)
    # History outside the window: never read, so a damaged old part cannot matter.
    (dataset / f"date={old.date().isoformat()}__model={spec.name}__v=1.parquet").write_bytes(
        b"not parquet"
    )
    asset = build_microbatch_asset(spec)

    def run() -> int:
        result = dg.materialize([asset], resources=res)
        assert result.success
        meta = result.asset_materializations_for_node(asset.key.path[-1])[0].metadata
        return meta["dagster/row_count"].value

    assert run() == len(times)
    assert run() == 0  # nothing new: nothing scored again
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as conn:
        conn.execute(
            f"insert into {TABLE} select 'NEW-late', ?, * exclude (id, ts) from {TABLE} "
            "where id = 'NEW-0'",
            [now - timedelta(minutes=3)],
        )
    assert run() == 1

    preds = pq.read_table(
        [p for p in dataset.glob("*.parquet") if not p.name.startswith(f"date={old.date()}")]
    )
    ids = preds.column("record_id").to_pylist()
    assert sorted(ids) == sorted([*times, "NEW-late"])
    log = pq.read_table(Path(res["lake"].root) / "decision_log").column("record_id").to_pylist()
    assert sorted(log) == sorted(ids)
