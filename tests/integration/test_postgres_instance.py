"""The production instance storage (deploy/dagster.yaml) works against a real PostgreSQL.

The storage and run-coordinator sections are taken from the deployment file itself, so a typo
there fails here; only the Kubernetes run launcher is left out (no cluster in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import generate_reference_data
from aios_dagster.settings import Settings
from tests.postgres import scratch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_db() -> Iterator[str]:
    with scratch("database", "aios_dagster") as name:
        yield name


def test_runs_and_materialisations_are_stored_in_postgres(
    tmp_path: Path, dagster_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    home = tmp_path / "home"
    home.mkdir()
    config = {k: deployed[k] for k in ("storage", "run_coordinator", "telemetry")}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    for key, value in {
        "AIOS_PG_HOST": "127.0.0.1",
        "AIOS_PG_USER": "postgres",
        "AIOS_PG_PASSWORD": "",
        "AIOS_PG_DAGSTER_DB": dagster_db,
    }.items():
        monkeypatch.setenv(key, value)

    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    generate_reference_data(
        settings.sources_dir, emails_per_week=40, customers=30, weeks=1, bad_records=False
    )
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = defs.resolve_job_def("ingest_raw_customers_job").execute_in_process(
            instance=instance
        )
        assert result.success
        run_id = result.run_id

    # A fresh instance (another process, in production) sees the run and its materialisation.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.is_success
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_customers"))
        assert event is not None and event.run_id == run_id
        meta = event.asset_materialization.metadata
        assert meta["rows_landed"].value == 30
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{dagster_db}") as conn:
        (runs,) = conn.execute("select count(*) from runs").fetchone()
    assert runs == 1
