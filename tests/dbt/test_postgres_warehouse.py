"""The production warehouse: the lake loaded into the real PostgreSQL, dbt-postgres building the
same models, and the same features as DuckDB from the same lake.

One small generated bank lands for real; DuckDB is built by dbt in process, Postgres through the
project's own dbt asset (lake load, then ``dbt build --target postgres``) into a scratch
database. Then new mail lands and both build again, incrementally. The loader's own rules
(re-landed, removed and widened parts, a type that cannot join) are checked on hand-made parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import deliver_new_emails, generate_reference_data
from aios_dagster.lib.lake_load import LakeLoadError, load_lake
from aios_dagster.lib.warehouse import WarehouseResource, normalized
from aios_dagster.settings import Settings
from tests.dbt.lake_history import LINEAGE, LakeHistory, comparable
from tests.postgres import scratch

pytestmark = pytest.mark.slow

SMALL = {"emails_per_week": 80, "customers": 20, "weeks": 2, "seed": 5, "bad_records": False}
FEATURE_TABLES = ("email_features", "training_set", "stg_customers", "stg_transactions")


@dataclass
class TwoWarehouses:
    history: LakeHistory  # DuckDB, built by dbt in process
    postgres: Settings  # the same data folder, warehouse=postgres
    instance: dg.DagsterInstance
    logs: list[str]

    def build_postgres(self) -> None:
        defs = build_definitions(self.postgres)
        dbt_models = defs.resolve_assets_def(dg.AssetKey("email_features")).keys
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance,
            asset_selection=list(dbt_models),
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        self.logs += [  # the dbt asset logs what the lake load did
            r.user_message
            for r in self.instance.all_logs(result.run_id)
            if "new or rewritten lake parts" in r.user_message
        ]

    def warehouse(self, settings: Settings) -> WarehouseResource:
        return WarehouseResource(
            duckdb_path=str(settings.warehouse_path),
            data_dir=str(settings.data_dir),
            dbt_target=settings.warehouse,
            pg_database=settings.pg_database,
        )

    def query(self, settings: Settings, sql: str, params: list | None = None) -> pa.Table:
        if settings.warehouse == "postgres":
            return self.warehouse(settings).query_arrow(sql, params)
        # In-process dbt still holds the DuckDB file: open it as dbt did (not read-only).
        with self.history.connect() as conn:
            return normalized(conn.sql(sql, params=params).to_arrow_table())

    def table(self, settings: Settings, name: str) -> pd.DataFrame:
        frame = self.query(settings, f"select * from {name}").to_pandas()
        return comparable(frame.drop(columns=[c for c in LINEAGE if c in frame.columns]))

    def assert_same_features(self) -> None:
        for name in FEATURE_TABLES:
            duck = self.table(self.history.settings, name)
            pg = self.table(self.postgres, name)
            assert len(duck) > 0, name
            assert list(pg.columns) == list(duck.columns), name
            # Same values and the same Arrow types (a model scored from either sees one table).
            for column in duck.columns:
                assert pg[column].dtype == duck[column].dtype, (name, column)
            pd.testing.assert_frame_equal(pg, duck, check_exact=True, obj=name)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoWarehouses]:
    root = tmp_path_factory.mktemp("two_warehouses")
    settings = Settings.from_env({"AIOS_DATA_DIR": str(root / "data")})
    generate_reference_data(settings.sources_dir, start_date=settings.start_date, **SMALL)
    with scratch("database", "aios_wh") as database, dg.instance_for_test() as instance:
        history = LakeHistory(settings, instance, root / "dbt_target")
        history.land()
        history.build()
        postgres = replace(settings, warehouse="postgres", pg_database=database)
        pair = TwoWarehouses(history, postgres, instance, [])
        pair.build_postgres()
        yield pair


def test_postgres_builds_the_same_features_as_duckdb(both: TwoWarehouses) -> None:
    assert both.logs and "loaded" in both.logs[0]
    assert " 0 already current" in both.logs[0]  # the first load took every part
    both.assert_same_features()


def test_new_mail_is_loaded_incrementally_and_both_still_agree(both: TwoWarehouses) -> None:
    settings = both.history.settings
    day = settings.start_date + timedelta(days=14)
    new = deliver_new_emails(settings.sources_dir, count=9, seed=8, day=day)
    both.history.land()
    both.history.build()
    both.build_postgres()
    latest = both.logs[-1]
    # Only the new mail batch and its text features: every other part was already current.
    assert "from 2 new or rewritten lake parts" in latest, latest
    assert "removed 0" in latest
    features = both.table(both.postgres, "email_features")
    assert {p.stem for p in new} <= set(features["email_id"])
    both.assert_same_features()


def test_scoring_reads_the_same_day_from_either_warehouse(both: TwoWarehouses) -> None:
    """The readers' portable SQL (``?`` placeholders, the day in UTC) on both warehouses."""
    day = both.history.settings.start_date + timedelta(days=3)
    sql = (
        "select email_id, tenure_years, text_vec from email_features "
        "where cast(received_at at time zone 'UTC' as date) = ? order by email_id"
    )
    duck = both.query(both.history.settings, sql, [day])
    pg_rows = list(both.warehouse(both.postgres).query_batches(sql, [day], batch_rows=7))
    pg = pa.Table.from_batches(pg_rows)
    assert duck.num_rows > 7 and all(b.num_rows <= 7 for b in pg_rows)
    assert pg.schema == duck.schema
    assert pg.to_pylist() == duck.to_pylist()


# The loader alone, on hand-made parts in a scratch database.


@pytest.fixture
def pg_warehouse() -> Iterator[WarehouseResource]:
    with scratch("database", "aios_load") as database:
        yield WarehouseResource(
            duckdb_path="", data_dir="", dbt_target="postgres", pg_database=database
        )


def _part(root: Path, name: str, table: pa.Table) -> Path:
    path = root / "raw_things" / "ingest_date=2026-11-10" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _rows(warehouse: WarehouseResource) -> list[dict]:
    table = warehouse.query_arrow("select * from lake.raw_things order by thing_id")
    return [{k: v for k, v in r.items() if k != "filename"} for r in table.to_pylist()]


def test_loader_replaces_relanded_parts_drops_removed_ones_and_adds_columns(
    tmp_path: Path, pg_warehouse: WarehouseResource
) -> None:
    first = _part(tmp_path, "b1", pa.table({"thing_id": ["a", "b"], "n": [1, 2]}))
    second = _part(tmp_path, "b2", pa.table({"thing_id": ["c"], "n": [3]}))
    with pg_warehouse.connect_postgres() as conn:
        report = load_lake(conn, tmp_path, ["raw_things"])
        assert (report.parts_loaded, report.rows_loaded) == (2, 3)
        assert load_lake(conn, tmp_path, ["raw_things"]).parts_current == 2  # nothing to do
        # A re-landed batch rewrites its part: its rows are replaced, never doubled.
        pq.write_table(pa.table({"thing_id": ["a", "b"], "n": [10, 20]}), first)
        report = load_lake(conn, tmp_path, ["raw_things"])
        assert (report.parts_loaded, report.parts_current) == (1, 1)
        assert [r["n"] for r in _rows(pg_warehouse)] == [10, 20, 3]
        # A part that is gone takes its rows with it; a wider part adds its column.
        second.unlink()
        _part(tmp_path, "b3", pa.table({"thing_id": ["d"], "n": [4], "note": ["new"]}))
        report = load_lake(conn, tmp_path, ["raw_things"])
        assert (report.parts_removed, report.columns_added) == (1, ["raw_things.note"])
    assert _rows(pg_warehouse) == [
        {"thing_id": "a", "n": 10, "note": None},
        {"thing_id": "b", "n": 20, "note": None},
        {"thing_id": "d", "n": 4, "note": "new"},
    ]


def test_loader_refuses_a_part_whose_type_cannot_join_its_table(
    tmp_path: Path, pg_warehouse: WarehouseResource
) -> None:
    _part(tmp_path, "b1", pa.table({"thing_id": ["a"], "n": [1]}))
    with pg_warehouse.connect_postgres() as conn:
        load_lake(conn, tmp_path, ["raw_things"])
        bad = _part(tmp_path, "b2", pa.table({"thing_id": ["b"], "n": ["one"]}))
        with pytest.raises(LakeLoadError) as caught:
            load_lake(conn, tmp_path, ["raw_things"])
    message = str(caught.value)
    assert str(bad) in message and "column n" in message and "bigint" in message
    assert [r["thing_id"] for r in _rows(pg_warehouse)] == ["a"]  # nothing half-loaded
