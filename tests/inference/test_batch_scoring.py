"""Daily batch scoring on a real Triton server and a real DuckDB feature table.

What an operator sees: each day's materialization carries that day's own figures, errors that
cannot succeed on a retry fail at once with a clear message, and the decision log says which
decision counts after a failed run and its re-execution.
"""

from __future__ import annotations

import math
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.inference.audit import decisions_for, explain, explain_record
from aios_dagster.lib.inference.decision_log import in_effect
from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.sinks import build_sink_assets
from aios_dagster.lib.serving.triton import TritonResource
from tests.inference.features import (
    daily_ids,
    resources,
    set_feature,
    spec_for,
    write_features,
)

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
COUNTS = {date(2026, 11, 2): 5, date(2026, 11, 3): 8, date(2026, 11, 4): 3}
RANGE = {
    "dagster/asset_partition_range_start": "2026-11-02",
    "dagster/asset_partition_range_end": "2026-11-04",
}


@pytest.fixture
def scoring(tmp_path: Path, publish_random_model, triton_resource: TritonResource):
    published = publish_random_model(n_features=16, heads={"team": 4, "urgency": 3})
    triton_resource.load_model(published.name)
    spec = spec_for(published.name)
    write_features(tmp_path / "wh.duckdb", daily_ids(COUNTS))
    assets = [build_prediction_asset(spec, PARTITIONS), build_sink_assets(spec, PARTITIONS)]
    return spec, assets, resources(tmp_path, triton_resource)


def _partition_meta(instance: dg.DagsterInstance, asset: str, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    assert records, f"no materialization of {asset} for {key}"
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1
    # A dg.Failure (what Dagster never retries), with a description for the operator.
    failure = failures[0].step_failure_data.user_failure_data
    assert failure is not None and failure.description
    return failure.description


def _fail_one_day(
    assets: list, res: dict, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Run ``assets`` for 2026-11-03 in a throwaway instance; it must fail, without a retry."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets,
            resources=res,
            instance=instance,
            partition_key="2026-11-03",
            run_config=run_config,
            raise_on_error=False,
        )
    assert not result.success
    assert _retries(result) == 0
    return result


def test_a_range_run_reports_each_days_own_figures(scoring) -> None:
    spec, assets, res = scoring
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=res, instance=instance, tags=RANGE)
        assert result.success
        for day, rows in COUNTS.items():
            key = day.isoformat()
            meta = _partition_meta(instance, f"{spec.name}_predictions", key)
            assert meta["dagster/row_count"] == rows, key
            assert meta["requests"] >= 1 and meta["model_version"] == "1"
            routed = _partition_meta(instance, f"{spec.name}_routed_tickets", key)
            review = _partition_meta(instance, f"{spec.name}_review_queue", key)
            assert routed["dagster/row_count"] + review["dagster/row_count"] == rows, key


def test_a_run_without_a_partition_fails_at_once_and_says_why(scoring) -> None:
    spec, assets, res = scoring
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        result = dg.materialize(assets[:1], resources=res, instance=instance, raise_on_error=False)
        elapsed = time.monotonic() - started
    assert not result.success
    assert _retries(result) == 0
    message = _failure_message(result)
    assert f"{spec.name}_predictions is partitioned by day" in message
    assert "partition" in message and "CheckError" not in message
    assert elapsed < 20


def test_features_that_are_not_finite_fail_at_once_naming_table_and_column(scoring) -> None:
    _, assets, res = scoring
    set_feature(Path(res["warehouse"].duckdb_path), "R-1103-004", math.nan)
    result = _fail_one_day(assets[:1], res)
    message = _failure_message(result)
    assert "2026-11-03" in message and "feats" in message and "['x3']" in message


def test_a_model_that_disagrees_with_the_catalog_fails_at_once(
    scoring, publish_random_model, triton_resource: TritonResource
) -> None:
    spec, _, res = scoring
    narrow = publish_random_model(
        n_features=12, heads={"team": 4, "urgency": 3}, model_name=f"{spec.name}_narrow"
    )
    triton_resource.load_model(narrow.name)
    asset = build_prediction_asset(spec_for(narrow.name), PARTITIONS)
    result = _fail_one_day([asset], res)
    message = _failure_message(result)
    assert f"{narrow.name}_predictions 2026-11-03" in message and "dims [12]" in message


def test_a_model_that_is_not_served_fails_at_once(scoring) -> None:
    spec, _, res = scoring
    asset = build_prediction_asset(spec_for(f"{spec.name}_absent"), PARTITIONS)
    result = _fail_one_day([asset], res)
    assert f"{spec.name}_absent" in _failure_message(result)


def test_bad_config_fails_at_once_naming_the_field(scoring) -> None:
    spec, assets, res = scoring
    result = _fail_one_day(
        assets[:1], res, {"ops": {f"{spec.name}_predictions": {"config": {"batch_rows": 0}}}}
    )
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert failure is not None and failure.cause is not None
    assert "batch_rows" in failure.cause.message and "greater than 0" in failure.cause.message


def test_the_decision_log_says_which_decision_counts_after_a_failed_run(scoring) -> None:
    """A range run fails on its last day (after committing the first two); re-executed once the
    feature is fixed, its decisions are in effect and the failed run's are marked superseded."""
    spec, assets, res = scoring
    db = Path(res["warehouse"].duckdb_path)
    log_dir = Path(res["lake"].root) / "decision_log"
    set_feature(db, "R-1104-001", math.inf)
    with dg.instance_for_test() as instance:
        failed = dg.materialize(
            assets[:1], resources=res, instance=instance, tags=RANGE, raise_on_error=False
        )
        assert not failed.success
        set_feature(db, "R-1104-001", 0.5)
        rerun = dg.materialize(assets[:1], resources=res, instance=instance, tags=RANGE)
        assert rerun.success

    history = decisions_for(log_dir, "R-1102-000")
    assert [d["run_id"] for d in history] == [failed.run_id, rerun.run_id]
    assert [d["in_effect"] for d in history] == [False, True]
    assert history[0]["superseded_by_run"] == rerun.run_id
    assert f"Superseded by run {rerun.run_id}" in explain(history[0], spec)
    assert "Superseded" not in explain(history[1], spec)
    assert explain(history[1], spec).startswith("R-1102-000 -> ")
    specs = {spec.name: spec}
    [current] = explain_record(log_dir, "R-1102-000", specs=specs)
    assert current.endswith("In effect.") and f"run {rerun.run_id}" in current
    shown = explain_record(log_dir, "R-1102-000", specs=specs, show_all=True)
    assert len(shown) == 2 and f"Superseded by run {rerun.run_id}" in shown[0]
    # The failed run never committed the last day: only the re-execution's decision is there.
    last_day = decisions_for(log_dir, "R-1104-001")
    assert [(d["run_id"], d["in_effect"]) for d in last_day] == [(rerun.run_id, True)]
    # The whole log keeps both runs' committed days; one decision per email is in effect.
    assert pq.read_table(log_dir).num_rows == sum(COUNTS.values()) + 5 + 8
    effective = in_effect(log_dir)
    assert effective.num_rows == sum(COUNTS.values())
    assert set(effective.column("run_id").to_pylist()) == {rerun.run_id}
