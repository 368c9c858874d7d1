"""The two whole-flow runs (clean, and with the fraud wave) that the integration modules share.

Package scope: ``test_triage_e2e`` checks what the flow produced, ``test_triage_loop`` then
drives the drift-to-retrain loop on the drifted run, so each costs one pipeline run. The clean
run is made on both warehouses (DuckDB embedded, the real PostgreSQL in a scratch database), so
every check of ``test_triage_e2e`` that takes it holds on each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from aios_dagster.cli import ensure_manifest, run_triage
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.settings import Settings
from tests.integration.pipeline import PipelineRun, generate, settings_for
from tests.postgres import scratch
from tests.triton_fixtures import start_or_fail


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this package runs on a whole-flow run or a real server: marked slow."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.slow)


def _run(tmp: Path, *, drift: bool, warehouse: str = "duckdb") -> Iterator[PipelineRun]:
    if warehouse == "postgres":
        with scratch("database", "aios_e2e") as database:
            settings = settings_for(tmp / "data")
            settings = replace(settings, warehouse="postgres", pg_database=database)
            yield from _run_with(tmp, settings, drift=drift)
    else:
        yield from _run_with(tmp, settings_for(tmp / "data"), drift=drift)


def _run_with(tmp: Path, settings: Settings, *, drift: bool) -> Iterator[PipelineRun]:
    generated = generate(settings, drift=drift)
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True)
    (tmp / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(
        str(tmp / "dagster_home"), overrides={"telemetry": {"enabled": False}}
    )
    server = start_or_fail(LocalTritonServer(settings.model_repository, settings.triton_work_dir))
    try:
        summary = run_triage(
            settings, triton_url=server.grpc_url, metrics_url=server.metrics_url, instance=instance
        )
        yield PipelineRun(settings, generated, summary, instance, server)
    finally:
        server.stop()
        instance.dispose()


@pytest.fixture(scope="package", params=["duckdb", "postgres"])
def clean_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PipelineRun]:
    warehouse = request.param
    yield from _run(tmp_path_factory.mktemp(f"clean_{warehouse}"), drift=False, warehouse=warehouse)


@pytest.fixture(scope="package")
def drift_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    yield from _run(tmp_path_factory.mktemp("drift"), drift=True)
