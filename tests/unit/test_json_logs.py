"""Run logs as JSON lines, through the instance's ``python_logs`` handler config.

The same configuration as ``deploy/dagster.yaml``: a real run on a real (temporary) instance,
its output parsed line by line.
"""

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_the_chart_values_configure_the_same_handler() -> None:
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["python_logs"]
    chart = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["pythonLogs"]
    assert chart["dagsterHandlerConfig"] == instance["dagster_handler_config"]


def test_every_line_of_a_run_is_json_with_run_step_and_asset(
    capfd: pytest.CaptureFixture[str],
) -> None:
    python_logs = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["python_logs"]

    @dg.asset
    def landed(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        context.log.info("landed 3 rows")
        return dg.MaterializeResult(metadata={"rows": 3})

    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = dg.materialize([landed], instance=instance)
    assert result.success
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert len(records) >= 5
    assert {r["run_id"] for r in records} == {result.run_id}
    ours = [r for r in records if r["message"] == "landed 3 rows"]
    assert ours and ours[0]["step"] == "landed" and ours[0]["level"] == "INFO"
    materialized = [r for r in records if r.get("event") == "ASSET_MATERIALIZATION"]
    assert materialized and materialized[0]["asset_key"] == "landed"
