"""Feature tables: hashed text features in Python, then the dbt project joins everything."""

from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster_dbt import DbtCliResource, dbt_assets

from aios_dagster.lib.dbt import build_args, lake_sources, translator
from aios_dagster.lib.features.text import TEXT_DIM, hash_text, vectors_to_arrow
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lake_load import load_lake
from aios_dagster.lib.warehouse import WarehouseResource

TEXT_FEATURES = "email_text_features"


@dg.asset(
    group_name="features",
    deps=["raw_emails"],
    kinds={"python", "parquet"},
    description=f"Hashed bag-of-words ({TEXT_DIM} dims) of each masked subject and body; one "
    "part per landed batch, so a run hashes only batches landed (or re-landed) since the last.",
)
def email_text_features(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    report = refresh_text_features(lake)
    context.log.info(
        f"hashed {report.rows_hashed} emails from {report.parts_hashed} new or re-landed "
        f"batches; {report.parts_current} batches already current"
    )
    return dg.MaterializeResult(metadata={**asdict(report), "dims": TEXT_DIM})


@dataclass
class TextFeatureRefresh:
    rows_hashed: int = 0
    parts_hashed: int = 0
    parts_current: int = 0
    parts_removed: int = 0


def refresh_text_features(lake: LakeResource) -> TextFeatureRefresh:
    """Hash the batches of ``raw_emails`` that have no current feature part.

    A feature part mirrors its raw part's path and is current when it is not older than it (a
    re-landed batch rewrites its raw part, so its features are recomputed). Feature parts whose
    raw part is gone are removed. Work follows what was landed, not the size of the history.
    """
    report = TextFeatureRefresh()
    raw_root = lake.dataset_dir("raw_emails")
    out_root = lake.dataset_dir(TEXT_FEATURES)
    wanted = set()
    for raw_part in lake.parts("raw_emails"):
        rel = raw_part.relative_to(raw_root)
        wanted.add(rel)
        target = out_root / rel
        if target.exists() and target.stat().st_mtime >= raw_part.stat().st_mtime:
            report.parts_current += 1
            continue
        landed = pq.read_table(raw_part, columns=[*_KEYS, "subject", "body"])
        text = pc.binary_join_element_wise(
            pc.fill_null(landed.column("subject"), ""),
            pc.fill_null(landed.column("body"), ""),
            "\n",
        )
        vectors = hash_text(pd.Series(text.to_pylist(), dtype=object))
        table = landed.select(_KEYS).append_column("text_vec", vectors_to_arrow(vectors))
        lake.write(TEXT_FEATURES, table, part=str(rel.with_suffix("")))
        report.parts_hashed += 1
        report.rows_hashed += table.num_rows
    for part in lake.parts(TEXT_FEATURES):
        if part.relative_to(out_root) not in wanted:
            part.unlink()
            report.parts_removed += 1
    return report


_KEYS = ["email_id", "_ingested_at", "_batch_id"]


def build_dbt_assets(manifest: Path) -> dg.AssetsDefinition:
    sources = lake_sources(manifest)

    @dbt_assets(manifest=manifest, dagster_dbt_translator=translator(), name="triage_dbt_models")
    def _dbt(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: WarehouseResource,
        lake: LakeResource,
    ):
        if warehouse.is_postgres:
            # Postgres cannot read the Parquet parts: bring its lake schema up to date first.
            with warehouse.connect_postgres() as conn:
                loaded = load_lake(conn, Path(lake.root), sources)
            context.log.info(f"warehouse {warehouse.pg_database}: {loaded.describe()}")
        else:
            Path(warehouse.duckdb_path).parent.mkdir(parents=True, exist_ok=True)
        args = build_args(
            "build",
            Path(warehouse.data_dir),
            target=warehouse.dbt_target,
            extra_vars=warehouse.dbt_vars(),
        )
        yield from dbt.cli(args, context=context).stream()

    return _dbt
