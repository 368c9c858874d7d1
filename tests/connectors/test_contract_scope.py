"""What a connector's check and sensor judge: the run's own landing; a source that is down."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.connectors.component import (
    connector_definitions,
    load_connector,
    settings_scope,
)
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.connectors.definitions import build_connector_sensor
from aios_dagster.lib.connectors.spec import ConnectorSpec
from aios_dagster.lib.generator.customers import make_customers, write_customers_csv
from aios_dagster.settings import Settings


def _evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_clean_export_passes_after_a_bad_one(tmp_path: Path) -> None:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    crm = settings.sources_dir / "crm"
    crm.mkdir(parents=True)
    customers = make_customers(random.Random(7), 60, date(2026, 11, 9))
    # An export with a third of its rows missing the join key: quarantined, check fails.
    bad = [replace(c, customer_id="") if i % 3 == 0 else c for i, c in enumerate(customers[:30])]
    write_customers_csv(crm / "customers_1.csv", bad)
    defs = build_definitions(settings)
    job = defs.resolve_job_def("ingest_raw_customers_job")
    with dg.instance_for_test() as instance:
        first = _evaluation(job.execute_in_process(instance=instance, raise_on_error=False))
        assert not first.passed
        assert first.metadata["records_quarantined"].value == 10

        # The next export is clean: its run passes, judged on its own 30 rows.
        write_customers_csv(crm / "customers_2.csv", customers[30:])
        second = _evaluation(job.execute_in_process(instance=instance, raise_on_error=False))
        assert second.passed, second.metadata
        assert second.metadata["rows_landed"].value == 30
        assert second.metadata["records_quarantined"].value == 0
        assert second.metadata["scope"].value == "1 parts of this run"

        # Launched on its own, the check re-validates the whole dataset (history included).
        spec = load_connector(
            settings.connectors_dir / "raw_customers" / "defs.yaml", settings_scope(settings)
        )
        declared = connector_definitions(spec)
        alone = dg.materialize(
            [*declared.assets, *declared.asset_checks],
            instance=instance,
            resources=defs.resources,
            selection=dg.AssetSelection.checks_for_assets("raw_customers"),
            raise_on_error=False,
        )
        whole = _evaluation(alone)
        assert whole.metadata["scope"].value == "whole dataset"
        assert whole.metadata["rows_landed"].value == 50 and not whole.passed


def test_a_sensor_skips_while_its_source_is_down(tmp_path: Path) -> None:
    """An unreachable API is a skipped tick saying why, not an error; the next tick retries."""
    spec = ConnectorSpec.model_validate(
        {
            "name": "raw_tickets",
            "kind": "http",
            "contract": "helpdesk_tickets",
            "source": {
                "url": "http://127.0.0.1:9/v1/tickets",  # nothing listens on the discard port
                "records_path": "items",
                "max_retries": 1,
                "backoff_s": 0.05,
                "retry_total_s": 0.5,
            },
            "trigger": {"sensor": {"minimum_interval_s": 30}},
            "schema": {"id": "string"},
        }
    )
    sensor = build_connector_sensor(spec, "ingest_raw_tickets_job")
    cursors = CursorStore(root=str(tmp_path / "cursors"))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"cursors": cursors})
        result = sensor(context)
    assert not result.run_requests
    assert "unavailable" in (result.skip_reason.skip_message or "")
    assert "127.0.0.1:9" in (result.skip_reason.skip_message or "")
