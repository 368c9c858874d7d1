"""Feature tables: hashed text features in Python, then the dbt project joins everything."""

from pathlib import Path

import dagster as dg
import pyarrow as pa
from dagster_dbt import DbtCliResource, dbt_assets

from aios_dagster.lib.connectors.dedup import latest_records
from aios_dagster.lib.dbt import build_args, translator
from aios_dagster.lib.features.text import TEXT_DIM, hash_text, vectors_to_arrow
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.warehouse import WarehouseResource


@dg.asset(
    group_name="features",
    deps=["raw_emails"],
    kinds={"python", "parquet"},
    description=f"Hashed bag-of-words ({TEXT_DIM} dims) of each masked subject and body.",
)
def email_text_features(lake: LakeResource) -> dg.MaterializeResult:
    landed = lake.read("raw_emails").select(["email_id", "subject", "body", "_ingested_at"])
    emails = latest_records(landed.to_pandas(), "email_id")
    vectors = hash_text(emails["subject"].fillna("") + "\n" + emails["body"].fillna(""))
    table = pa.table({"email_id": emails["email_id"], "text_vec": vectors_to_arrow(vectors)})
    path = lake.write("email_text_features", table)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": len(table), "dims": TEXT_DIM, "path": str(path)}
    )


def build_dbt_assets(manifest: Path) -> dg.AssetsDefinition:
    @dbt_assets(manifest=manifest, dagster_dbt_translator=translator(), name="triage_dbt_models")
    def _dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        Path(warehouse.duckdb_path).parent.mkdir(parents=True, exist_ok=True)
        args = build_args("build", Path(warehouse.data_dir), target=warehouse.dbt_target)
        yield from dbt.cli(args, context=context).stream()

    return _dbt
