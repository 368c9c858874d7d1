"""Pick every resource for the active profile from one Settings object.

The embedded profile needs nothing configured (local folders, DuckDB, a local Triton); production
overrides come only from environment variables (``dg.EnvVar`` for secrets), never code edits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.pii import PiiMasker
from aios_dagster.lib.contracts.store import ContractStore
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.lifecycle.store import ModelStore
from aios_dagster.lib.monitoring.store import ReportStore
from aios_dagster.lib.realtime.online_store import OnlineStoreResource
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource
from aios_dagster.settings import Settings

EMBEDDED_PII_KEY = "embedded-demo-key-not-a-secret"


def triton_resource(settings: Settings) -> TritonResource:
    """The Triton client of ``settings`` (also what the rollout commands use, outside a run)."""
    return TritonResource(
        url=settings.triton_grpc_url,
        ready_timeout_s=settings.triton_ready_timeout_s,
        retry_total_s=settings.triton_retry_total_s,
        metrics_url=settings.triton_metrics_url,
        shared_memory=settings.triton_shared_memory,
        urls=[settings.triton_grpc_url, *settings.triton_replica_urls]
        if settings.triton_replica_urls
        else None,
    )


def require_pii_key(settings: Settings) -> None:
    """A known key makes tokens reversible by dictionary attack: never outside embedded."""
    if settings.profile != "embedded" and not settings.pii_key:
        raise ValueError(f"AIOS_PROFILE={settings.profile} requires AIOS_PII_KEY to be set")


def build_resources(settings: Settings) -> dict[str, Any]:
    require_pii_key(settings)
    pii_key: Any = dg.EnvVar("AIOS_PII_KEY") if settings.pii_key else EMBEDDED_PII_KEY
    if settings.profile != "embedded" and not (
        settings.mlflow_tracking_uri and settings.mlflow_artifact_location
    ):
        # An SQLite registry inside one pod would lose every version and approval with it.
        raise ValueError(
            f"AIOS_PROFILE={settings.profile} requires AIOS_MLFLOW_TRACKING_URI (PostgreSQL) "
            "and AIOS_MLFLOW_ARTIFACT_LOCATION (object storage) to be set"
        )
    # The tracking URI carries the database password in production: never shown as config.
    tracking_uri: Any = (
        dg.EnvVar("AIOS_MLFLOW_TRACKING_URI")
        if settings.mlflow_tracking_uri
        else settings.registry_tracking_uri
    )
    data = settings.data_dir
    return {
        "lake": LakeResource(root=str(settings.lake_dir)),
        "cursors": CursorStore(root=str(settings.cursors_dir)),
        "pii": PiiMasker(hmac_key=pii_key),
        "contracts": ContractStore(directory=str(settings.expectations_dir)),
        "dbt": DbtCliResource(
            project_dir=str(settings.dbt_project_dir),
            profiles_dir=str(settings.dbt_project_dir),
            target=settings.warehouse,
            # the dbt of this interpreter's environment, whatever PATH the caller has
            dbt_executable=str(Path(sys.executable).with_name("dbt")),
        ),
        "warehouse": WarehouseResource(
            duckdb_path=str(settings.warehouse_path),
            data_dir=str(data),
            dbt_target=settings.warehouse,
            pg_host=settings.pg_host,
            pg_port=settings.pg_port,
            pg_user=settings.pg_user,
            # never a value in run config: read from the environment where the run executes
            pg_password=dg.EnvVar("AIOS_PG_PASSWORD") if settings.pg_password_set else "",
            pg_database=settings.pg_database,
        ),
        "models": ModelStore(
            repository=str(settings.model_repository),
            mirror_url=settings.model_repository_url,
        ),
        "registry": ModelRegistry(
            tracking_uri=tracking_uri,
            artifact_location=settings.registry_artifact_location,
        ),
        "triton": triton_resource(settings),
        "online_store": OnlineStoreResource(url=settings.online_store),
        "reports": ReportStore(
            root=str(settings.reports_dir),
            workspace=str(settings.drift_workspace_dir),
            ui_url=settings.drift_ui_url,
        ),
    }
